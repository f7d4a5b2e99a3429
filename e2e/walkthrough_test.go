package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// The reference walkthrough's outputs, which Vigil must reproduce (see
// ../shared/seed/WALKTHROUGH.md). The image of the no-match denial is the
// tag as written: Vigil does not resolve tags to digests
// (docs/compatibility.md).
const (
	walkthroughNoMatchDenial = `Error from server (BadRequest): admission webhook "policy.sigstore.dev" denied the request: validation failed: no matching policies: spec.containers[0].image` +
		"\ncgr.dev/chainguard/nginx:latest"
	walkthroughCIPCreated     = "clusterimagepolicy.policy.sigstore.dev/non-default-capabilities-cue created"
	walkthroughDenialLine1    = `Error from server (BadRequest): error when creating "config/samples/pod-net-admin.yaml": admission webhook "policy.sigstore.dev" denied the request: validation failed: failed policy: non-default-capabilities-cue: spec.containers[0].image`
	walkthroughDenialLine2    = "docker.io/ubuntu failed evaluating cue policy for ClusterImagePolicy: failed to evaluate the policy with error: spec.containers.0.securityContext.capabilities.add.0: "
	walkthroughCUEDisjunction = "errors in empty disjunction"
)

// waitTimeout bounds how long the verify path may take to catch up with a
// change (reports, status, events, metrics). It takes well under a second;
// the deadline is for a 2-core machine that go test ./... loads with other
// packages' control planes, and costs nothing when the change comes.
const waitTimeout = 3 * time.Minute

// TestWalkthrough replays ../shared/seed/WALKTHROUGH.md with real kubectl
// against `vigil dev`, with the files of config/samples/, then goes on where
// the guide stops: the verify path judges a pod that is already running when
// a stricter policy appears, and again when the policy is relaxed.
func TestWalkthrough(t *testing.T) {
	testenv.EndToEnd(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(filepath.Dir(root), "shared", "seed")
	if _, err := os.Stat(seed); err == nil {
		for _, name := range []string{"cip.yaml", "pod-net-admin.yaml", "pod-fixed.yaml"} {
			want, err1 := os.ReadFile(filepath.Join(seed, name))
			got, err2 := os.ReadFile(filepath.Join(root, "config", "samples", name))
			if err1 != nil || err2 != nil || !bytes.Equal(want, got) {
				t.Errorf("config/samples/%s is not the walkthrough's %s byte for byte (%v, %v)", name, name, err1, err2)
			}
		}
	} else {
		t.Logf("no %s beside this checkout; not comparing config/samples with it", seed)
	}

	d := startDev(t)
	t.Logf("vigil dev ready after %s", d.ReadyAfter.Round(100*time.Millisecond))

	// Each step depends on the one before: a failure stops the replay.
	t.Run("1 namespace default is opted in", func(t *testing.T) {
		r := d.run(t, "", "get", "ns", "-l", "policy.sigstore.dev/include=true")
		r.mustSucceed(t)
		header, rows := table(r.Stdout)
		if !slices.Equal(header, []string{"NAME", "STATUS", "AGE"}) || len(rows) != 1 || rows[0][0] != "default" || rows[0][1] != "Active" {
			t.Fatalf("want exactly namespace default listed, got:\n%s", r.Stdout)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("2 no policy: kubectl run is denied", func(t *testing.T) {
		r := d.run(t, "", "run", "--image", "cgr.dev/chainguard/nginx:latest", "nginx")
		r.mustFail(t)
		if got := strings.TrimSuffix(r.Stderr, "\n"); got != walkthroughNoMatchDenial {
			t.Fatalf("stderr:\n%s\nwant:\n%s", got, walkthroughNoMatchDenial)
		}
		if r.Stdout != "" {
			t.Errorf("stdout %q, want nothing", r.Stdout)
		}
		if out, err := d.Kubectl("get", "pod", "nginx"); err == nil {
			t.Errorf("pod nginx exists although it was denied:\n%s", out)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("3 kubectl apply the policy", func(t *testing.T) {
		r := d.run(t, "", "apply", "-f", "config/samples/cip.yaml")
		r.mustSucceed(t)
		if got := strings.TrimSuffix(r.Stdout, "\n"); got != walkthroughCIPCreated || r.Stderr != "" {
			t.Fatalf("stdout %q, stderr %q; want stdout %q", r.Stdout, r.Stderr, walkthroughCIPCreated)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("4 the NET_ADMIN pod is denied", func(t *testing.T) {
		// The policy store sees the new policy a moment after the API server
		// stored it; until then the pod is denied for want of a policy.
		var r kubectlResult
		waitFor(t, waitTimeout, "the denial to name non-default-capabilities-cue", func() (bool, string) {
			r = d.run(t, "", "apply", "-f", "config/samples/pod-net-admin.yaml")
			return r.Code != 0 && !strings.Contains(r.Stderr, "no matching policies"), r.String()
		})
		r.mustFail(t)
		lines := strings.Split(strings.TrimSuffix(r.Stderr, "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("want 2 lines on stderr, got %d:\n%s", len(lines), r.Stderr)
		}
		if lines[0] != walkthroughDenialLine1 {
			t.Errorf("first line:\n%s\nwant:\n%s", lines[0], walkthroughDenialLine1)
		}
		if !strings.HasPrefix(lines[1], walkthroughDenialLine2) || !strings.Contains(lines[1], walkthroughCUEDisjunction) {
			t.Errorf("second line:\n%s\nwant it to start with:\n%s\nand to contain %q", lines[1], walkthroughDenialLine2, walkthroughCUEDisjunction)
		}
		if r.Stdout != "" {
			t.Errorf("stdout %q, want nothing", r.Stdout)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("5 the fixed pod is created", func(t *testing.T) {
		r := d.run(t, "", "apply", "-f", "config/samples/pod-fixed.yaml")
		r.mustSucceed(t)
		if got := strings.TrimSuffix(r.Stdout, "\n"); got != "pod/yolo created" || r.Stderr != "" {
			t.Fatalf("stdout %q, stderr %q; want stdout %q", r.Stdout, r.Stderr, "pod/yolo created")
		}
		uid := podUID(t, d, "default", "yolo")
		rep := waitReport(t, d, "default", uid, "the fixed pod's report to pass", func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, "non-default-capabilities-cue") == reportsv1alpha2.ResultPass
		})
		if rep.Summary != (reportsv1alpha2.PolicyReportSummary{Pass: 1}) {
			t.Errorf("summary %+v, want 1 pass", rep.Summary)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("6 kubectl delete pod yolo", func(t *testing.T) {
		r := d.run(t, "", "delete", "pod", "yolo")
		r.mustSucceed(t)
		if !strings.HasPrefix(r.Stdout, `pod "yolo" deleted`) {
			t.Fatalf("stdout %q, want it to say pod \"yolo\" deleted", r.Stdout)
		}
	})
	if t.Failed() {
		return
	}

	// The continuation: what the enforce path cannot see.
	var uid string
	t.Run("7 a NET_ADMIN pod admitted under a permissive policy passes", func(t *testing.T) {
		d.run(t, "", "delete", "-f", "config/samples/cip.yaml").mustSucceed(t)
		r := d.run(t, "", "apply", "-f", "config/samples/cip-permissive.yaml")
		r.mustSucceed(t)
		if got := strings.TrimSuffix(r.Stdout, "\n"); got != "clusterimagepolicy.policy.sigstore.dev/allow-all created" {
			t.Fatalf("stdout %q", r.Stdout)
		}
		// Until the store drops the seed policy, the pod is still denied.
		waitFor(t, waitTimeout, "pod-net-admin.yaml to be admitted", func() (bool, string) {
			r = d.run(t, "", "apply", "-f", "config/samples/pod-net-admin.yaml")
			return r.Code == 0, r.String()
		})
		if got := strings.TrimSuffix(r.Stdout, "\n"); got != "pod/yolo created" || r.Stderr != "" {
			t.Fatalf("stdout %q, stderr %q; want stdout %q", r.Stdout, r.Stderr, "pod/yolo created")
		}
		uid = podUID(t, d, "default", "yolo")
		rep := waitReport(t, d, "default", uid, "the report to pass", func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, "allow-all") == reportsv1alpha2.ResultPass
		})
		checkReportShape(t, rep, "yolo", uid)
		if rep.Summary != (reportsv1alpha2.PolicyReportSummary{Pass: 1}) || len(rep.Results) != 1 {
			t.Errorf("summary %+v with %d results, want 1 pass and nothing else", rep.Summary, len(rep.Results))
		}
		waitPolicyReportTable(t, d, "default", map[string]string{uid: "Pod yolo 1 0 0 0 0"})
		waitCIPTable(t, d, map[string]string{"allow-all": "enforce True 1 0 0"})
	})
	if t.Failed() {
		return
	}

	t.Run("8 the seed policy arrives: the report turns fail", func(t *testing.T) {
		r := d.run(t, "", "apply", "-f", "config/samples/cip.yaml")
		r.mustSucceed(t)
		if got := strings.TrimSuffix(r.Stdout, "\n"); got != walkthroughCIPCreated {
			t.Fatalf("stdout %q, want %q", r.Stdout, walkthroughCIPCreated)
		}
		rep := waitReport(t, d, "default", uid, "the report to turn fail", func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, "non-default-capabilities-cue") == reportsv1alpha2.ResultFail
		})
		checkReportShape(t, rep, "yolo", uid)
		if rep.Summary != (reportsv1alpha2.PolicyReportSummary{Pass: 1, Fail: 1}) {
			t.Errorf("summary %+v, want 1 pass (allow-all) and 1 fail", rep.Summary)
		}
		res := findResult(rep, "non-default-capabilities-cue")
		for _, want := range []string{`"app"`, "docker.io/ubuntu", "NET_ADMIN"} {
			if !strings.Contains(res.Description, want) {
				t.Errorf("the fail message %q does not name %s", res.Description, want)
			}
		}
		if res.Properties["mode"] != "enforce" {
			t.Errorf("properties %v, want mode enforce", res.Properties)
		}
		waitPolicyReportTable(t, d, "default", map[string]string{uid: "Pod yolo 1 1 0 0 0"})
		waitCIPTable(t, d, map[string]string{
			"allow-all":                    "enforce True 1 0 0",
			"non-default-capabilities-cue": "enforce True 0 1 0",
		})
		ev := waitEvent(t, d, "default", uid, "Warning", "PolicyViolation")
		if !strings.Contains(ev.Message, "non-default-capabilities-cue") || !strings.Contains(ev.Message, "NET_ADMIN") {
			t.Errorf("PolicyViolation event %q does not name the policy and NET_ADMIN", ev.Message)
		}
		out := d.MustKubectl(t, "get", "events", "--field-selector", "involvedObject.uid="+uid)
		if !regexp.MustCompile(`Warning\s+PolicyViolation\s+pod/yolo\s`).MatchString(out) {
			t.Errorf("kubectl get events does not show Warning PolicyViolation on pod/yolo:\n%s", out)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("9 the policy allows NET_ADMIN: the report passes again", func(t *testing.T) {
		r := d.run(t, "", "apply", "-f", "config/samples/cip-allow-net-admin.yaml")
		r.mustSucceed(t)
		if got := strings.TrimSuffix(r.Stdout, "\n"); got != "clusterimagepolicy.policy.sigstore.dev/non-default-capabilities-cue configured" {
			t.Fatalf("stdout %q", r.Stdout)
		}
		rep := waitReport(t, d, "default", uid, "the report to pass again", func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, "non-default-capabilities-cue") == reportsv1alpha2.ResultPass
		})
		if rep.Summary != (reportsv1alpha2.PolicyReportSummary{Pass: 2}) {
			t.Errorf("summary %+v, want 2 pass", rep.Summary)
		}
		waitPolicyReportTable(t, d, "default", map[string]string{uid: "Pod yolo 2 0 0 0 0"})
		waitCIPTable(t, d, map[string]string{
			"allow-all":                    "enforce True 1 0 0",
			"non-default-capabilities-cue": "enforce True 1 0 0",
		})
		waitEvent(t, d, "default", uid, "Normal", "PolicyCompliant")
	})
	if t.Failed() {
		return
	}

	t.Run("10 the pod is deleted: its report is gone", func(t *testing.T) {
		d.run(t, "", "delete", "pod", "yolo").mustSucceed(t)
		waitFor(t, waitTimeout, "the report to be gone", func() (bool, string) {
			r := d.run(t, "", "get", "policyreport", uid)
			return r.Code != 0 && strings.Contains(r.Stderr, "NotFound"), r.String()
		})
		r := d.run(t, "", "get", "policyreports")
		r.mustSucceed(t)
		if r.Stdout != "" || strings.TrimSpace(r.Stderr) != "No resources found in default namespace." {
			t.Errorf("kubectl get policyreports: stdout %q, stderr %q; want no resources", r.Stdout, r.Stderr)
		}
		waitCIPTable(t, d, map[string]string{
			"allow-all":                    "enforce True 0 0 0",
			"non-default-capabilities-cue": "enforce True 0 0 0",
		})
	})
}

// ---------------------------------------------------------------------------
// Helpers shared by the walkthrough, admission and verify tests.

// kubectlResult is one kubectl run, its streams apart.
type kubectlResult struct {
	Args           []string
	Stdout, Stderr string
	Code           int
}

func (r kubectlResult) String() string {
	return fmt.Sprintf("kubectl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

func (r kubectlResult) mustSucceed(t testing.TB) {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
}

func (r kubectlResult) mustFail(t testing.TB) {
	t.Helper()
	if r.Code == 0 {
		t.Fatalf("want a failure, got %s", r)
	}
}

// run runs bin/kubectl against the dev cluster in the repository's root (so
// that config/samples/... paths appear in messages as a person types them),
// with stdin, and returns stdout and stderr apart. It fails the test only if
// kubectl cannot run at all or does not answer in time.
func (d *devEnv) run(t testing.TB, stdin string, args ...string) kubectlResult {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"--kubeconfig", d.Kubeconfig, "--cache-dir", d.cacheDir, "--request-timeout", "30s"}, args...)
	cmd := exec.Command(d.kubectl, argv...)
	cmd.Dir = root
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubectl: %v", err)
	}
	wait := make(chan error, 1)
	go func() { wait <- cmd.Wait() }()
	select {
	case <-wait:
	case <-time.After(kubectlTimeout):
		_ = cmd.Process.Kill()
		<-wait
		t.Fatalf("kubectl %s: no answer within %s", strings.Join(args, " "), kubectlTimeout)
	}
	return kubectlResult{Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
}

// apply applies manifest (YAML) with kubectl apply -f - and fails on error.
func (d *devEnv) apply(t testing.TB, manifest string) string {
	t.Helper()
	r := d.run(t, manifest, "apply", "-f", "-")
	r.mustSucceed(t)
	return r.Stdout
}

// namespace creates namespace name, opted in to Vigil when included, in one
// request: the API server's webhook namespace selector then never sees it
// without its label.
func (d *devEnv) namespace(t testing.TB, name string, included bool) {
	t.Helper()
	labels := ""
	if included {
		labels = "\n  labels:\n    policy.sigstore.dev/include: \"true\""
	}
	d.apply(t, fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s%s\n", name, labels))
}

// deleteCIPs deletes cluster image policies at the end of a subtest, so the
// next subtests judge without them.
func (d *devEnv) deleteCIPsAtCleanup(t testing.TB, names ...string) {
	t.Helper()
	t.Cleanup(func() {
		args := append([]string{"delete", "cip", "--ignore-not-found"}, names...)
		if r := d.run(t, "", args...); r.Code != 0 {
			t.Errorf("cleanup: %s", r)
		}
	})
}

// table splits kubectl's table output into the header and rows of fields.
func table(out string) (header []string, rows [][]string) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		rows = append(rows, f)
	}
	return header, rows
}

// waitCIPTable waits until `kubectl get cip` shows, for each policy named in
// want, the columns MODE READY PASS FAIL WARN, and ERROR when want gives
// six, as want says (space-separated).
func waitCIPTable(t testing.TB, d *devEnv, want map[string]string) {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("kubectl get cip to show %v", want), func() (bool, string) {
		r := d.run(t, "", "get", "cip")
		header, rows := table(r.Stdout)
		if !slices.Equal(header, []string{"NAME", "MODE", "READY", "PASS", "FAIL", "WARN", "ERROR", "AGE"}) {
			return false, r.String()
		}
		got := map[string][]string{}
		for _, row := range rows {
			if len(row) == len(header) {
				got[row[0]] = row[1:7]
			}
		}
		for name, cols := range want {
			// MODE READY PASS FAIL WARN, and ERROR when given.
			n := len(strings.Fields(cols))
			if row := got[name]; len(row) < n || strings.Join(row[:n], " ") != cols {
				return false, r.Stdout
			}
		}
		return true, ""
	})
}

// waitPolicyReportTable waits until `kubectl get policyreports -n ns` shows
// exactly the reports of want (report name, that is pod UID, to the columns
// KIND NAME PASS FAIL WARN ERROR SKIP).
func waitPolicyReportTable(t testing.TB, d *devEnv, ns string, want map[string]string) {
	t.Helper()
	waitFor(t, waitTimeout, fmt.Sprintf("kubectl get policyreports -n %s to show %v", ns, want), func() (bool, string) {
		r := d.run(t, "", "-n", ns, "get", "policyreports")
		header, rows := table(r.Stdout)
		if !slices.Equal(header, []string{"NAME", "KIND", "NAME", "PASS", "FAIL", "WARN", "ERROR", "SKIP", "AGE"}) {
			return false, r.String()
		}
		got := map[string]string{}
		for _, row := range rows {
			if len(row) == len(header) {
				got[row[0]] = strings.Join(row[1:8], " ")
			}
		}
		if len(got) != len(want) {
			return false, r.Stdout
		}
		for name, cols := range want {
			if got[name] != cols {
				return false, r.Stdout
			}
		}
		return true, ""
	})
}

// podUID is the UID of pod ns/name.
func podUID(t testing.TB, d *devEnv, ns, name string) string {
	t.Helper()
	r := d.run(t, "", "-n", ns, "get", "pod", name, "-o", "jsonpath={.metadata.uid}")
	r.mustSucceed(t)
	if r.Stdout == "" {
		t.Fatalf("pod %s/%s has no UID", ns, name)
	}
	return r.Stdout
}

// getReport reads the PolicyReport ns/name; nil when there is none.
func getReport(t testing.TB, d *devEnv, ns, name string) (*reportsv1alpha2.PolicyReport, string) {
	t.Helper()
	r := d.run(t, "", "-n", ns, "get", "policyreport", name, "-o", "json")
	if r.Code != 0 {
		return nil, r.String()
	}
	var rep reportsv1alpha2.PolicyReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("decode PolicyReport %s/%s: %v\n%s", ns, name, err, r.Stdout)
	}
	return &rep, r.Stdout
}

// waitReport waits until the report of the pod with uid satisfies ok.
func waitReport(t testing.TB, d *devEnv, ns, uid, what string, ok func(*reportsv1alpha2.PolicyReport) bool) *reportsv1alpha2.PolicyReport {
	t.Helper()
	return waitReportWithin(t, d, ns, uid, waitTimeout, what, ok)
}

// waitReportWithin is waitReport with a timeout of its own.
func waitReportWithin(t testing.TB, d *devEnv, ns, uid string, timeout time.Duration, what string, ok func(*reportsv1alpha2.PolicyReport) bool) *reportsv1alpha2.PolicyReport {
	t.Helper()
	var rep *reportsv1alpha2.PolicyReport
	waitFor(t, timeout, what, func() (bool, string) {
		var raw string
		rep, raw = getReport(t, d, ns, uid)
		return rep != nil && ok(rep), raw
	})
	return rep
}

// findResult is the result of policy in rep, or nil.
func findResult(rep *reportsv1alpha2.PolicyReport, policy string) *reportsv1alpha2.PolicyReportResult {
	for i := range rep.Results {
		if rep.Results[i].Policy == policy {
			return &rep.Results[i]
		}
	}
	return nil
}

// resultOf is the result word of policy in rep, empty when it has none.
func resultOf(rep *reportsv1alpha2.PolicyReport, policy string) reportsv1alpha2.Result {
	if r := findResult(rep, policy); r != nil {
		return r.Result
	}
	return ""
}

// checkReportShape checks what DESIGN.md promises of every report: named by
// and owned by its pod, labelled, scoped to the pod, every result from vigil
// about the pod with a mode, and a summary that counts the results.
func checkReportShape(t testing.TB, rep *reportsv1alpha2.PolicyReport, pod, uid string) {
	t.Helper()
	if rep.Name != uid {
		t.Errorf("report name %q, want the pod's UID %q", rep.Name, uid)
	}
	if rep.Labels["app.kubernetes.io/managed-by"] != "vigil" {
		t.Errorf("report labels %v, want app.kubernetes.io/managed-by=vigil", rep.Labels)
	}
	if len(rep.OwnerReferences) != 1 || rep.OwnerReferences[0].Kind != "Pod" || string(rep.OwnerReferences[0].UID) != uid {
		t.Errorf("report owners %+v, want the pod %s", rep.OwnerReferences, uid)
	}
	if rep.Scope == nil || rep.Scope.Kind != "Pod" || rep.Scope.Name != pod || string(rep.Scope.UID) != uid {
		t.Errorf("report scope %+v, want pod %s (%s)", rep.Scope, pod, uid)
	}
	var sum reportsv1alpha2.PolicyReportSummary
	for _, res := range rep.Results {
		switch res.Result {
		case reportsv1alpha2.ResultPass:
			sum.Pass++
		case reportsv1alpha2.ResultFail:
			sum.Fail++
		case reportsv1alpha2.ResultWarn:
			sum.Warn++
		case reportsv1alpha2.ResultError:
			sum.Error++
		case reportsv1alpha2.ResultSkip:
			sum.Skip++
		}
		if res.Source != "vigil" || res.Properties["mode"] == "" || res.Description == "" || res.Timestamp.Seconds == 0 {
			t.Errorf("result %+v: want source vigil, a mode property, a message and a timestamp", res)
		}
		if len(res.Subjects) != 1 || string(res.Subjects[0].UID) != uid {
			t.Errorf("result of %s is about %+v, want the pod %s", res.Policy, res.Subjects, uid)
		}
	}
	if sum != rep.Summary {
		t.Errorf("summary %+v does not count the results (%+v)", rep.Summary, sum)
	}
}

// podEvents lists the events about the object with uid in ns.
func podEvents(t testing.TB, d *devEnv, ns, uid string) ([]corev1.Event, string) {
	t.Helper()
	r := d.run(t, "", "-n", ns, "get", "events", "--field-selector", "involvedObject.uid="+uid, "-o", "json")
	if r.Code != 0 {
		return nil, r.String()
	}
	var list corev1.EventList
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("decode events: %v\n%s", err, r.Stdout)
	}
	return list.Items, r.Stdout
}

// waitEvent waits for an event of type and reason about the object with uid.
func waitEvent(t testing.TB, d *devEnv, ns, uid, typ, reason string) corev1.Event {
	t.Helper()
	var found corev1.Event
	waitFor(t, waitTimeout, fmt.Sprintf("a %s %s event", typ, reason), func() (bool, string) {
		events, raw := podEvents(t, d, ns, uid)
		for _, ev := range events {
			if ev.Type == typ && ev.Reason == reason {
				found = ev
				return true, ""
			}
		}
		return false, raw
	})
	return found
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape reads the manager's metrics over plain HTTP.
func scrape(t testing.TB, addr string) ([]sample, error) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s\n%s", resp.Status, body)
	}
	var out []sample
	for line := range strings.Lines(string(body)) {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[lp[1]] = lp[2]
		}
		out = append(out, s)
	}
	return out, nil
}

// metricSum adds the samples of name whose labels include want; found is
// false when there is none.
func metricSum(samples []sample, name string, want map[string]string) (sum float64, found bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			sum += s.value
			found = true
		}
	}
	return sum, found
}

// waitMetric waits until the sum of the samples of name with labels
// satisfies ok (called with 0 and false when there is no such sample).
func waitMetric(t testing.TB, d *devEnv, name string, labels map[string]string, what string, ok func(v float64, found bool) bool) float64 {
	t.Helper()
	var v float64
	waitFor(t, waitTimeout, fmt.Sprintf("%s%v %s", name, labels, what), func() (bool, string) {
		samples, err := scrape(t, d.MetricsAddr)
		if err != nil {
			return false, err.Error()
		}
		var found bool
		v, found = metricSum(samples, name, labels)
		return ok(v, found), fmt.Sprintf("value %v (found %v)", v, found)
	})
	return v
}
