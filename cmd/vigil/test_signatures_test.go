package main

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

const (
	testIssuer  = "https://token.actions.example.com"
	testSubject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
)

// signaturePolicyYAML is a ClusterImagePolicy with one authority.
func signaturePolicyYAML(t *testing.T, name string, a v1beta1.Authority) string {
	t.Helper()
	cip := v1beta1.ClusterImagePolicy{Spec: v1beta1.ClusterImagePolicySpec{
		Images: []v1beta1.ImagePattern{{Glob: "**"}}, Authorities: []v1beta1.Authority{a}}}
	cip.APIVersion, cip.Kind, cip.Name = "policy.sigstore.dev/v1beta1", "ClusterImagePolicy", name
	out, err := yaml.Marshal(cip)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// checkOneResult runs vigil test -o json with args and checks the exit
// code and its one result: the word, and a message containing message.
func checkOneResult(t *testing.T, args []string, code int, result, message string) {
	t.Helper()
	out, got, err := runVigil(t, append([]string{"test", "-o", "json"}, args...)...)
	if got != code {
		t.Fatalf("exit %d, want %d: %v\n%s", got, code, err, out)
	}
	var res struct{ Results []testResult }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Results) != 1 || res.Results[0].Result != result || !strings.Contains(res.Results[0].Message, message) {
		t.Fatalf("results %+v, want one %s containing %q", res.Results, result, message)
	}
}

// trustRootFile writes the TrustRoot ci-root holding vs's keys, for
// --trust-root.
func trustRootFile(t *testing.T, dir string, vs *ca.VirtualSigstore) string {
	t.Helper()
	tr := verifytest.SigstoreKeysOf(t, "ci-root", vs)
	tr.APIVersion, tr.Kind = "policy.sigstore.dev/v1alpha1", "TrustRoot"
	trYAML, err := yaml.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "trustroot.yaml", string(trYAML))
}

func podWith(image name.Digest) string {
	return "apiVersion: v1\nkind: Pod\nmetadata: {name: app}\nspec:\n  containers:\n  - {name: app, image: " + image.String() + "}\n"
}

// vigil test verifies key signatures written by cosign and keyless ones
// against a --trust-root file, with the local Docker configuration's
// credentials; what cannot be verified is an error result.
func TestVigilTestSignatures(t *testing.T) {
	cosign := verifytest.RegistryCosign(t)
	reg := verifytest.NewRegistry(t)
	key, pub := cosign.GenerateKey(t)
	privateSigs := reg.Host + "/private/sigs"
	signed := reg.PushImage(t, "app/signed")
	cosign.Sign(t, key, signed, false, "COSIGN_REPOSITORY="+privateSigs)
	unsigned := reg.PushImage(t, "app/unsigned")
	vs := verifytest.NewVirtualSigstore(t)
	keyless := reg.PushImage(t, "app/keyless")
	verifytest.SignKeylessLegacy(t, vs, keyless, testSubject, testIssuer)

	// The registry's credentials in a Docker configuration of its own.
	dockerDir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(verifytest.User + ":" + verifytest.Password))
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{reg.Host: map[string]string{"auth": auth}}})
	writeFile(t, dockerDir, "config.json", string(cfg))
	t.Setenv("DOCKER_CONFIG", dockerDir)

	dir := t.TempDir()
	keyPolicy := writeFile(t, dir, "key.yaml", signaturePolicyYAML(t, "signed-by-release-key", v1beta1.Authority{
		Key: &v1beta1.KeyRef{Data: string(pub)}, Sources: []v1beta1.Source{{OCI: privateSigs}}}))
	yes := true
	keylessAuthority := v1beta1.Authority{Keyless: &v1beta1.KeylessRef{URL: "https://fulcio.example",
		Identities: []v1beta1.Identity{{Issuer: testIssuer, Subject: testSubject}}, TrustRootRef: "ci-root", InsecureIgnoreSCT: &yes}}
	keylessPolicy := writeFile(t, dir, "keyless-policy.yaml", signaturePolicyYAML(t, "signed-by-ci", keylessAuthority))
	trustRoot := trustRootFile(t, dir, vs)
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		result  string
		message string
	}{
		{"key pass", []string{"--policy", keyPolicy, "--resource", writeFile(t, dir, "signed.yaml", podWith(signed))}, exitOK, "pass", ""},
		{"key fail", []string{"--policy", keyPolicy, "--resource", writeFile(t, dir, "unsigned.yaml", podWith(unsigned))}, exitDenied, "fail",
			"signature key validation failed for authority authority-0 for " + unsigned.String() + ": no signatures found"},
		{"keyless pass", []string{"--policy", keylessPolicy, "--trust-root", trustRoot, "--resource", writeFile(t, dir, "keyless-pod.yaml", podWith(keyless))}, exitOK, "pass", ""},
		{"keyless of another signer", []string{"--policy", keylessPolicy, "--trust-root", trustRoot, "--resource", writeFile(t, dir, "keyless-signed-by-key.yaml", podWith(signed))}, exitDenied, "fail",
			"signature keyless validation failed for authority authority-0 for " + signed.String()},
	} {
		t.Run(tc.name, func(t *testing.T) { checkOneResult(t, tc.args, tc.code, tc.result, tc.message) })
	}

	t.Run("without the Docker configuration's credentials: an error", func(t *testing.T) {
		t.Setenv("DOCKER_CONFIG", t.TempDir())
		out, code, _ := runVigil(t, "test", "-o", "json", "--policy", keyPolicy, "--resource", writeFile(t, dir, "signed2.yaml", podWith(signed)))
		if code != exitDenied || !strings.Contains(out, `"result": "error"`) || !strings.Contains(out, "access denied") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
	t.Run("a trustRootRef without its file is an error result naming it, as in a cluster without that TrustRoot", func(t *testing.T) {
		checkOneResult(t, []string{"--policy", keylessPolicy, "--resource", writeFile(t, dir, "keyless2.yaml", podWith(keyless))}, exitDenied, "error",
			`policy is not ready: spec.authorities[0].keyless.trustRootRef: trustroot "ci-root" is not among the --trust-root files`)
	})
	t.Run("a secretRef cannot be read offline", func(t *testing.T) {
		p := writeFile(t, dir, "secret.yaml", signaturePolicyYAML(t, "from-secret", v1beta1.Authority{
			Key: &v1beta1.KeyRef{SecretRef: &corev1.SecretReference{Name: "release-key"}}}))
		_, code, err := runVigil(t, "test", "--policy", p, "--resource", writeFile(t, dir, "signed3.yaml", podWith(signed)))
		if code != exitBadInput || err == nil || !strings.Contains(err.Error(), `secret "release-key" cannot be read`) {
			t.Fatalf("exit %d: %v", code, err)
		}
	})
	t.Run("registry down: an error, never a pass", func(t *testing.T) {
		reg.Server.Close()
		out, code, _ := runVigil(t, "test", "-o", "json", "--policy", keyPolicy, "--resource", writeFile(t, dir, "signed4.yaml", podWith(signed)))
		if code != exitDenied || !strings.Contains(out, `"result": "error"`) || !strings.Contains(out, "unreachable") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
}

// vigil test verifies ctlog and rfc3161timestamp against the --trust-root
// files: a key signature's log entry and a keyless signature's timestamp,
// both made by the VirtualSigstore the TrustRoot ci-root holds.
func TestVigilTestSignatureEvidence(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	vs := verifytest.NewVirtualSigstore(t)
	key, pub := verifytest.KeyPair(t)
	logged := reg.PushImage(t, "app/logged")
	verifytest.SignKeyLegacy(t, key, logged, verifytest.Evidence{Log: vs})
	unlogged := reg.PushImage(t, "app/unlogged")
	verifytest.SignKeyLegacy(t, key, unlogged, verifytest.Evidence{})
	timestamped := reg.PushImage(t, "app/timestamped")
	verifytest.SignKeylessLegacyWith(t, vs, timestamped, testSubject, testIssuer, verifytest.Evidence{TSA: vs})
	untimestamped := reg.PushImage(t, "app/untimestamped")
	verifytest.SignKeylessLegacy(t, vs, untimestamped, testSubject, testIssuer)

	dir := t.TempDir()
	trustRoot := trustRootFile(t, dir, vs)
	logPolicy := writeFile(t, dir, "ctlog.yaml", signaturePolicyYAML(t, "logged-release-key", v1beta1.Authority{
		Key: &v1beta1.KeyRef{Data: string(pub)}, CTLog: &v1beta1.TLog{TrustRootRef: "ci-root"}}))
	yes := true
	tsaPolicy := writeFile(t, dir, "tsa.yaml", signaturePolicyYAML(t, "timestamped-ci", v1beta1.Authority{
		Keyless: &v1beta1.KeylessRef{URL: "https://fulcio.example", Identities: []v1beta1.Identity{{Issuer: testIssuer, Subject: testSubject}},
			TrustRootRef: "ci-root", InsecureIgnoreSCT: &yes},
		RFC3161Timestamp: &v1beta1.RFC3161Timestamp{TrustRootRef: "ci-root"}}))
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		result  string
		message string
	}{
		{"ctlog: an entry of the TrustRoot's log", []string{"--policy", logPolicy, "--trust-root", trustRoot, "--resource", writeFile(t, dir, "logged.yaml", podWith(logged))}, exitOK, "pass", ""},
		{"ctlog: no entry", []string{"--policy", logPolicy, "--trust-root", trustRoot, "--resource", writeFile(t, dir, "unlogged.yaml", podWith(unlogged))}, exitDenied, "fail",
			"signature key validation failed for authority authority-0 for " + unlogged.String() + ": no matching signatures: offline verification failed"},
		{"rfc3161timestamp: a timestamp of the TrustRoot's TSA", []string{"--policy", tsaPolicy, "--trust-root", trustRoot, "--resource", writeFile(t, dir, "timestamped.yaml", podWith(timestamped))}, exitOK, "pass", ""},
		{"rfc3161timestamp: no timestamp", []string{"--policy", tsaPolicy, "--trust-root", trustRoot, "--resource", writeFile(t, dir, "untimestamped.yaml", podWith(untimestamped))}, exitDenied, "fail",
			"signature keyless validation failed for authority authority-0 for " + untimestamped.String() + ": no matching signatures: the signature carries no RFC 3161 timestamp"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkOneResult(t, tc.args, tc.code, tc.result, tc.message) })
	}
	// As in a cluster without that TrustRoot, where the webhook denies and
	// the report says error: the policy is not ready, its results error.
	t.Run("a ctlog.trustRootRef without its file is an error result naming it", func(t *testing.T) {
		checkOneResult(t, []string{"--policy", logPolicy, "--resource", writeFile(t, dir, "logged3.yaml", podWith(logged))}, exitDenied, "error",
			`policy is not ready: spec.authorities[0].ctlog.trustRootRef: trustroot "ci-root" is not among the --trust-root files`)
	})
	t.Run("an rfc3161timestamp.trustRootRef without its file is an error result naming it", func(t *testing.T) {
		p := writeFile(t, dir, "tsa-only.yaml", signaturePolicyYAML(t, "timestamped-key", v1beta1.Authority{
			Key: &v1beta1.KeyRef{Data: string(pub)}, RFC3161Timestamp: &v1beta1.RFC3161Timestamp{TrustRootRef: "tsa-root"}}))
		checkOneResult(t, []string{"--policy", p, "--trust-root", trustRoot, "--resource", writeFile(t, dir, "logged4.yaml", podWith(logged))}, exitDenied, "error",
			`policy is not ready: spec.authorities[0].rfc3161timestamp.trustRootRef: trustroot "tsa-root" is not among the --trust-root files`)
	})
}
