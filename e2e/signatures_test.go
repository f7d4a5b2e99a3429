package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/testenv"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// sigPassTTL is the --verification-pass-ttl of TestSignatures' vigil dev: a
// verified signature stands this long, then the image is verified again.
// What changes in a registry shows within sigRecheckTimeout: the TTL and a
// margin for a shared machine, far below the default TTL of an hour, so
// that only the flag can make it.
const (
	sigPassTTL        = 10 * time.Second
	sigRecheckTimeout = sigPassTTL + time.Minute
)

// TestSignatures is issue 15's end-to-end proof against `vigil dev`, with
// images pushed by the real crane and signed by the real cosign CLI: a
// signed image runs and an unsigned one is denied; the key is rotated in the
// policy and the running pod's report turns fail within seconds, with a
// PolicyViolation event and drift; the signature of another pod's image is
// deleted and its report turns fail once the pass TTL is over; a registry
// is stopped and the results of its images turn error, never pass. Then
// every signature case of the issue (key and keyless, pass and fail, pull
// secrets, registry errors, a missing trust root, KMS) is judged at
// admission, in reports and by `vigil test`, which must agree
// (signatures_agreement_test.go).
func TestSignatures(t *testing.T) {
	testenv.EndToEnd(t)
	tools := newSigningTools(t)
	d := startDev(t, "--verification-pass-ttl", sigPassTTL.String())
	reg := devRegistry(t, d)
	t.Logf("vigil dev ready after %s, its registry at %s", d.ReadyAfter.Round(100*time.Millisecond), reg)
	key1, pub1 := tools.cosign.GenerateKey(t)
	_, pub2 := tools.cosign.GenerateKey(t)

	t.Run("the key is rotated in the policy: the running pod's report turns fail within seconds", func(t *testing.T) {
		const ns, policy = "sig-rotate", "sig-rotate"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, policy)
		signed := tools.push(t, reg+"/sig-rotate/app:1", "signed")
		unsigned := tools.push(t, reg+"/sig-rotate/app:2", "unsigned")
		tools.cosign.Sign(t, key1, signed, false)
		d.apply(t, keyPolicy(policy, reg+"/sig-rotate/**", pub1))

		uid := runPassingPod(t, d, ns, "signed", signed.String(), policy)
		r := d.run(t, podManifest(ns, "unsigned", unsigned.String()), "apply", "-f", "-")
		r.mustFail(t)
		if !strings.Contains(r.Stderr, "failed policy: "+policy) || !strings.Contains(r.Stderr, "no signatures found") {
			t.Errorf("the unsigned pod's denial does not name the policy and the missing signature:\n%s", r.Stderr)
		}
		driftBefore := metricValue(t, d, "vigil_drift_total", map[string]string{"policy": policy})

		d.apply(t, keyPolicy(policy, reg+"/sig-rotate/**", pub2))
		rotated := time.Now()
		rep := waitReport(t, d, ns, uid, "the report to turn fail after the rotation", func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, policy) == reportsv1alpha2.ResultFail
		})
		t.Logf("the report turned fail %s after the rotated key was applied", time.Since(rotated).Round(100*time.Millisecond))
		if msg := findResult(rep, policy).Description; !strings.Contains(msg, signed.String()) || !strings.Contains(msg, "no matching signatures") {
			t.Errorf("result message %q: want the image and \"no matching signatures\"", msg)
		}
		ev := waitEvent(t, d, ns, uid, "Warning", "PolicyViolation")
		if !strings.Contains(ev.Message, policy) {
			t.Errorf("PolicyViolation event %q does not name %s", ev.Message, policy)
		}
		waitMetric(t, d, "vigil_drift_total", map[string]string{"policy": policy}, fmt.Sprintf("> %v", driftBefore),
			func(v float64, _ bool) bool { return v > driftBefore })
		waitMetric(t, d, "vigil_verifications_total", map[string]string{"outcome": "SignatureMismatch", "kind": "verdict"}, "> 0",
			func(v float64, _ bool) bool { return v > 0 })
		waitMetric(t, d, "vigil_policy_results", map[string]string{"policy": policy, "result": "fail"}, "= 1",
			func(v float64, _ bool) bool { return v == 1 })
	})

	t.Run("the key in a Secret is rotated: the running pod's report turns fail", func(t *testing.T) {
		const ns, policy, secret = "sig-secret", "sig-secret", "sig-secret-key"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, policy)
		img := tools.push(t, reg+"/sig-secret/app:1", "secret")
		tools.cosign.Sign(t, key1, img, false)
		d.apply(t, keySecret(secret, pub1))
		d.apply(t, secretKeyPolicy(policy, reg+"/sig-secret/**", secret))
		uid := runPassingPod(t, d, ns, "app", img.String(), policy)

		d.apply(t, keySecret(secret, pub2))
		rotated := time.Now()
		rep := waitReport(t, d, ns, uid, "the report to turn fail after the Secret's key was rotated", func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, policy) == reportsv1alpha2.ResultFail
		})
		t.Logf("the report turned fail %s after the Secret was changed", time.Since(rotated).Round(100*time.Millisecond))
		if msg := findResult(rep, policy).Description; !strings.Contains(msg, "no matching signatures") {
			t.Errorf("result message %q: want \"no matching signatures\"", msg)
		}
	})

	t.Run("a signature deleted from the registry turns the report fail within the pass TTL", func(t *testing.T) {
		const ns, policy = "sig-deleted", "sig-deleted"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, policy)
		img := tools.push(t, reg+"/sig-deleted/app:1", "deleted")
		tools.cosign.Sign(t, key1, img, false)
		d.apply(t, keyPolicy(policy, reg+"/sig-deleted/**", pub1))
		uid := runPassingPod(t, d, ns, "app", img.String(), policy)

		tools.crane(t, "delete", signatureTag(img))
		deleted := time.Now()
		rep := waitReportWithin(t, d, ns, uid, sigRecheckTimeout, "the report to turn fail once the pass expired", func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, policy) == reportsv1alpha2.ResultFail
		})
		t.Logf("the report turned fail %s after the signature was deleted (pass TTL %s)", time.Since(deleted).Round(100*time.Millisecond), sigPassTTL)
		if msg := findResult(rep, policy).Description; !strings.Contains(msg, "no signatures found") {
			t.Errorf("result message %q: want \"no signatures found\"", msg)
		}
		waitEvent(t, d, ns, uid, "Warning", "PolicyViolation")
	})

	t.Run("a stopped registry turns results error, never pass", func(t *testing.T) {
		const ns, policy = "sig-down", "sig-down"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, policy)
		down := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(down.Close)
		reg2 := down.Listener.Addr().String()
		img := tools.push(t, reg2+"/app:1", "down")
		tools.cosign.Sign(t, key1, img, false)
		d.apply(t, keyPolicy(policy, reg2+"/**", pub1))
		uid := runPassingPod(t, d, ns, "app", img.String(), policy)

		down.Close()
		stopped := time.Now()
		rep := waitReportWithin(t, d, ns, uid, sigRecheckTimeout, "the report to leave pass", func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, policy) != reportsv1alpha2.ResultPass
		})
		t.Logf("the report left pass %s after the registry stopped (pass TTL %s)", time.Since(stopped).Round(100*time.Millisecond), sigPassTTL)
		if res := findResult(rep, policy); res.Result != reportsv1alpha2.ResultError || !strings.Contains(res.Description, reg2) {
			t.Errorf("result %s %q: want error naming the registry %s", res.Result, res.Description, reg2)
		}
		// Later checks ask the registry again (the error backs off, it is
		// not a verdict) and stay error.
		unreachable := map[string]string{"outcome": "RegistryUnreachable", "kind": "error"}
		n := waitMetric(t, d, "vigil_verifications_total", unreachable, "> 0", func(v float64, _ bool) bool { return v > 0 })
		waitMetric(t, d, "vigil_verifications_total", unreachable, fmt.Sprintf("> %v", n), func(v float64, _ bool) bool { return v > n })
		if rep, raw := getReport(t, d, ns, uid); rep == nil || resultOf(rep, policy) != reportsv1alpha2.ResultError {
			t.Errorf("after another verification against the stopped registry, want error:\n%s", raw)
		}
		r := d.run(t, podManifest(ns, "another", img.String()), "apply", "-f", "-")
		r.mustFail(t)
		if !strings.Contains(r.Stderr, reg2) {
			t.Errorf("the denial does not name the stopped registry %s:\n%s", reg2, r.Stderr)
		}
	})

	t.Run("admission, reports and vigil test agree", func(t *testing.T) {
		testSignatureAgreement(t, d, tools, reg, key1, pub1, pub2)
	})
}

// runPassingPod creates pod ns/name running image (retrying while the
// webhook has not seen policy yet), waits until its report passes policy and
// returns its UID.
func runPassingPod(t testing.TB, d *devEnv, ns, name, image, policy string) string {
	t.Helper()
	waitFor(t, waitTimeout, "pod "+name+" to be admitted", func() (bool, string) {
		r := d.run(t, podManifest(ns, name, image), "apply", "-f", "-")
		return r.Code == 0, r.String()
	})
	uid := podUID(t, d, ns, name)
	waitReport(t, d, ns, uid, name+"'s report to pass "+policy, func(rep *reportsv1alpha2.PolicyReport) bool {
		return resultOf(rep, policy) == reportsv1alpha2.ResultPass
	})
	return uid
}

// vigilResult is one result of `vigil test -o json`.
type vigilResult struct {
	Policy, Result, Message string
}

// vigilTest runs `bin/vigil test -o json` with args, in the test's
// environment plus env, and returns its only result and its exit code: 0
// or 1, since 2 (bad input) or anything else fails the test.
func vigilTest(t testing.TB, env []string, args ...string) (vigilResult, int) {
	t.Helper()
	cmd := exec.Command(vigilBin(t), append([]string{"test", "-o", "json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := 0
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("vigil test %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		code = 1
	}
	var out struct{ Results []vigilResult }
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out.Results) != 1 {
		t.Fatalf("vigil test -o json: %v, want one result:\n%s%s", err, stdout.String(), stderr.String())
	}
	return out.Results[0], code
}

// signingTools are the real crane and cosign CLIs of bin/.
type signingTools struct {
	craneBin string
	cosign   *verifytest.Cosign
}

func newSigningTools(t testing.TB) *signingTools {
	return &signingTools{craneBin: binPath(t, "crane", "tools"), cosign: &verifytest.Cosign{Bin: binPath(t, "cosign", "tools")}}
}

// crane runs bin/crane (plain HTTP allowed) and returns its stdout.
func (s *signingTools) crane(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(s.craneBin, append(args, "--insecure")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// push pushes to tag an image of one layer, a file holding content (so that
// each content makes its own digest), and returns its digest reference.
func (s *signingTools) push(t testing.TB, tag, content string) name.Digest {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: "content", Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(flagSafeTempDir(t), "layer.tar")
	if err := os.WriteFile(file, layer.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out := strings.TrimSpace(s.crane(t, "append", "--new_layer", file, "--new_tag", tag))
	d, err := name.NewDigest(out)
	if err != nil {
		t.Fatalf("crane append printed %q, not a digest reference: %v", out, err)
	}
	return d
}

// flagSafeTempDir is a temporary directory whose path has no comma: crane
// and vigil test split list flags at commas, which subtest names put in
// t.TempDir's paths.
func flagSafeTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vigil-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// signatureTag is where cosign's legacy layout keeps d's signatures.
func signatureTag(d name.Digest) string {
	return d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig").String()
}

var devRegistryLine = regexp.MustCompile(`an OCI registry \(plain HTTP\) at (\S+),`)

// devRegistry is the address of vigil dev's registry, as it printed it.
func devRegistry(t testing.TB, d *devEnv) string {
	t.Helper()
	m := devRegistryLine.FindStringSubmatch(d.Output())
	if m == nil {
		t.Fatalf("vigil dev did not print its registry's address:\n%s", d.Output())
	}
	return m[1]
}

// keyPolicy is a ClusterImagePolicy that requires glob's images to be signed
// by the key pub (PEM).
func keyPolicy(policy, glob string, pub []byte) string {
	return keyAuthorityPolicy(policy, glob, "data: |\n"+indentLines(pub, "        "))
}

// secretKeyPolicy requires glob's images to be signed by the key in the
// Secret named secret (key.secretRef).
func secretKeyPolicy(policy, glob, secret string) string {
	return keyAuthorityPolicy(policy, glob, "secretRef:\n        name: "+secret+"\n")
}

// keyAuthorityPolicy is a ClusterImagePolicy of glob with one key authority
// whose key is keyYAML (the lines under key:, from the first one's field).
func keyAuthorityPolicy(policy, glob, keyYAML string) string {
	return fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: %s
spec:
  images: [glob: '%s']
  authorities:
  - name: release
    key:
      %s`, policy, glob, keyYAML)
}

// keySecret is a Secret of Vigil's namespace whose one entry is the key pub.
func keySecret(name string, pub []byte) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: %s
  namespace: vigil-system
stringData:
  cosign.pub: |
%s`, name, indentLines(pub, "    "))
}

// indentLines is pem's lines, each after prefix, ending with a newline.
func indentLines(pem []byte, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimSpace(string(pem)), "\n", "\n"+prefix) + "\n"
}

// podManifest is a pod of one container running image.
func podManifest(ns, pod, image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
spec:
  containers:
  - name: app
    image: %s
`, pod, ns, image)
}

// metricValue is the current sum of name's samples with labels (0 if none).
func metricValue(t testing.TB, d *devEnv, name string, labels map[string]string) float64 {
	t.Helper()
	samples, err := scrape(t, d.MetricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := metricSum(samples, name, labels)
	return v
}
