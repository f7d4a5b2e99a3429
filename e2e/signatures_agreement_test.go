package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// The three-way agreement's fixtures: its namespaces (the second has no
// pull Secret), the Secret, the TrustRoot, the identity the VirtualSigstore
// certifies, and what the cases' policies name.
const (
	agreeNS             = "sig-agree"
	agreeNoSecretNS     = "sig-agree-nosecret"
	agreePullSecret     = "regcred"
	agreeTrustRoot      = "sig-agree-root"
	agreeMissingRoot    = "sig-agree-no-such-root"
	agreeIssuer         = "https://token.actions.example.com"
	agreeSubject        = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
	agreeTagPrefix      = "agree-"
	agreeKMS            = "awskms:///alias/release"
	cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1" // a bundle of this statement type is a signature
)

// agreementCase is one case of testSignatureAgreement: a pod of ns running
// image, judged by the policy sig-agree-<name> (authority, for the image's
// repository only), the result admission, the report and vigil test must
// all give, and fragments each of their messages must hold
// (policy-controller's words where it has them).
type agreementCase struct {
	name, ns, image string
	authority       v1beta1.Authority
	want            reportsv1alpha2.Result
	messages        []string
	// dockerConfig is vigil test's DOCKER_CONFIG, the credentials that the
	// pull Secret of ns gives the cluster; empty: none.
	dockerConfig string
	// notReady: the policy names a TrustRoot that does not exist. The
	// report's message then names the pod rather than the image.
	notReady bool
}

func agreePolicy(caseName string) string { return "sig-agree-" + caseName }

// testSignatureAgreement judges each case three ways: the report of a pod
// that runs the image (admitted under a permissive policy that is then
// replaced by the case's policy), a pod create through the webhook, and
// `bin/vigil test` on the same policy and pod, with the cluster's TrustRoot
// as --trust-root and the namespace's pull credentials as DOCKER_CONFIG.
// The three must agree. kwok pulls nothing, so every case has a running pod,
// even one whose image's registry is down or answers 429.
func testSignatureAgreement(t *testing.T, d *devEnv, tools *signingTools, reg, key1 string, pub1, pub2 []byte) {
	const permissive = "sig-agree-permissive"
	began := time.Now()
	d.namespace(t, agreeNS, true)
	d.namespace(t, agreeNoSecretNS, true)
	dir := flagSafeTempDir(t)
	cases := keyAgreementCases(t, tools, reg, key1, pub1, pub2)
	keyless, trustRoot := keylessAgreementCases(t, d, tools, reg, dir)
	cases = append(cases, keyless...)
	cases = append(cases, registryAgreementCases(t, d, tools, key1, pub1, dir)...)
	for i := range cases {
		if cases[i].ns == "" {
			cases[i].ns = agreeNS
		}
	}
	t.Logf("%d cases prepared in %s", len(cases), time.Since(began).Round(100*time.Millisecond))

	d.deleteCIPsAtCleanup(t, permissive)
	d.apply(t, fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: %s
spec:
  images: [glob: '127.0.0.1:*/sig-agree/**']
  authorities: [static: {action: pass}]
`, permissive))
	uids := map[string]string{}
	for _, tc := range cases {
		waitFor(t, waitTimeout, "pod "+tc.name+" to be admitted under the permissive policy", func() (bool, string) {
			r := d.run(t, podManifest(tc.ns, tc.name, tc.image), "apply", "-f", "-")
			return r.Code == 0, r.String()
		})
		uids[tc.name] = podUID(t, d, tc.ns, tc.name)
	}
	for _, tc := range cases {
		// One policy per case, each covering only its pod's image.
		policy := agreePolicy(tc.name)
		d.deleteCIPsAtCleanup(t, policy)
		manifest := tc.policyYAML(t)
		if err := os.WriteFile(filepath.Join(dir, policy+".yaml"), []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		d.apply(t, manifest)
	}
	d.MustKubectl(t, "delete", "cip", permissive)

	judged := time.Now()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, d, uids[tc.name], dir, trustRoot) })
	}
	t.Logf("%d cases judged three ways in %s, %s with their preparation", len(cases),
		time.Since(judged).Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond))
}

// check compares the report of the case's running pod, the admission of
// another pod of the same image, and vigil test, with the expectation.
func (tc agreementCase) check(t *testing.T, d *devEnv, uid, dir, trustRoot string) {
	policy := agreePolicy(tc.name)
	rep := waitReport(t, d, tc.ns, uid, "the report to have only "+policy, func(rep *reportsv1alpha2.PolicyReport) bool {
		return len(rep.Results) == 1 && rep.Results[0].Policy == policy
	})
	reported := rep.Results[0]

	admitted := d.run(t, podManifest(tc.ns, tc.name+"-again", tc.image), "apply", "-f", "-")
	podFile := filepath.Join(dir, tc.name+"-pod.yaml")
	if err := os.WriteFile(podFile, []byte(podManifest(tc.ns, tc.name, tc.image)), 0o600); err != nil {
		t.Fatal(err)
	}
	dockerConfig := tc.dockerConfig
	if dockerConfig == "" {
		dockerConfig = t.TempDir() // no credentials, and none of the machine's
	}
	offline, code := vigilTest(t, []string{"DOCKER_CONFIG=" + dockerConfig},
		"--policy", filepath.Join(dir, policy+".yaml"), "--trust-root", trustRoot, "--resource", podFile)

	t.Logf("report: %s %q; admission: exit %d %s; vigil test: exit %d, %s %q", reported.Result, reported.Description,
		admitted.Code, strings.TrimSpace(admitted.Stderr), code, offline.Result, offline.Message)
	if reported.Result != tc.want || offline.Result != string(tc.want) {
		t.Errorf("report %s, vigil test %s; want %s for both", reported.Result, offline.Result, tc.want)
	}
	pass := tc.want == reportsv1alpha2.ResultPass
	if (admitted.Code == 0) != pass {
		t.Errorf("admission exit %d, want it admitted only for a pass: %s", admitted.Code, admitted)
	}
	if wantCode := map[bool]int{true: 0, false: 1}[pass]; code != wantCode {
		t.Errorf("vigil test exit %d, want %d", code, wantCode)
	}
	if len(tc.messages) == 0 {
		return
	}
	for where, msg := range map[string]string{"report": reported.Description, "admission": admitted.Stderr, "vigil test": offline.Message} {
		named := tc.image
		if where == "report" && tc.notReady {
			named = fmt.Sprintf("Pod %q", tc.name)
		}
		for _, want := range append([]string{named}, tc.messages...) {
			if !strings.Contains(msg, want) {
				t.Errorf("%s message %q: want %q", where, msg, want)
			}
		}
	}
}

// policyYAML is the case's ClusterImagePolicy: its one authority, for the
// repository of its image only.
func (tc agreementCase) policyYAML(t testing.TB) string {
	t.Helper()
	repo, _, _ := strings.Cut(tc.image, "@")
	return manifestYAML(t, "policy.sigstore.dev/v1beta1", "ClusterImagePolicy", agreePolicy(tc.name), v1beta1.ClusterImagePolicySpec{
		Images: []v1beta1.ImagePattern{{Glob: repo + "**"}}, Authorities: []v1beta1.Authority{tc.authority}})
}

// manifestYAML is the object apiVersion/kind named objectName with spec, as
// kubectl apply and vigil test read it.
func manifestYAML(t testing.TB, apiVersion, kind, objectName string, spec any) string {
	t.Helper()
	out, err := yaml.Marshal(map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{"name": objectName}, "spec": spec})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// pushAgreementImage pushes an image of its own to repo in agreeNS's part
// of the registry reg (which the permissive policy covers).
func pushAgreementImage(t testing.TB, tools *signingTools, reg, repo string) name.Digest {
	t.Helper()
	return tools.push(t, reg+"/"+agreeNS+"/"+repo+":1", "agree/"+repo)
}

// keyAuthority is the authority "release" of the key pub (PEM).
func keyAuthority(pub []byte) v1beta1.Authority {
	return v1beta1.Authority{Name: "release", Key: &v1beta1.KeyRef{Data: string(pub)}}
}

// keyAgreementCases: images of vigil dev's registry signed by the real
// cosign CLI with key1, legacy and bundle, beside the image or in another
// repository (source.oci, with a tagPrefix too), a signature copied to
// another digest, and a KMS key.
func keyAgreementCases(t *testing.T, tools *signingTools, reg, key1 string, pub1, pub2 []byte) []agreementCase {
	t.Helper()
	push := func(repo string) name.Digest { return pushAgreementImage(t, tools, reg, repo) }
	signed, bundled, wrongKey, unsigned := push("key-pass"), push("key-bundle"), push("wrong-key"), push("unsigned")
	tools.cosign.Sign(t, key1, signed, false)
	tools.cosign.Sign(t, key1, bundled, true)
	tools.cosign.Sign(t, key1, wrongKey, false)
	// key-pass's signature under tampered's tag: its payload names key-pass's digest.
	tampered := push("tampered")
	verifytest.CopySignatures(t, signed, tampered, tampered.Context(), "")
	sigs, err := name.NewRepository(reg + "/sig-agree-signatures")
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := push("source-oci")
	tools.cosign.Sign(t, key1, elsewhere, false, "COSIGN_REPOSITORY="+sigs.String())
	// Signed beside the image, copied under the tag prefix, deleted beside it.
	prefixed := push("tag-prefix")
	tools.cosign.Sign(t, key1, prefixed, false)
	verifytest.CopySignatures(t, prefixed, prefixed, sigs, agreeTagPrefix)
	tools.crane(t, "delete", signatureTag(prefixed))
	kms := push("kms")

	bundle := keyAuthority(pub1)
	bundle.SignatureFormat = "bundle"
	fromSource := func(prefix string) v1beta1.Authority {
		a := keyAuthority(pub1)
		a.Sources = []v1beta1.Source{{OCI: sigs.String()}}
		if prefix != "" {
			a.Sources[0].TagPrefix = &prefix
		}
		return a
	}
	failed := func(img name.Digest) string {
		return "signature key validation failed for authority release for " + img.String()
	}
	return []agreementCase{
		{name: "key-pass", image: signed.String(), authority: keyAuthority(pub1), want: reportsv1alpha2.ResultPass},
		{name: "key-bundle", image: bundled.String(), authority: bundle, want: reportsv1alpha2.ResultPass},
		{name: "unsigned", image: unsigned.String(), authority: keyAuthority(pub1), want: reportsv1alpha2.ResultFail,
			messages: []string{failed(unsigned) + ": no signatures found"}},
		{name: "wrong-key", image: wrongKey.String(), authority: keyAuthority(pub2), want: reportsv1alpha2.ResultFail,
			messages: []string{failed(wrongKey) + ": no matching signatures"}},
		{name: "tampered", image: tampered.String(), authority: keyAuthority(pub1), want: reportsv1alpha2.ResultFail,
			messages: []string{failed(tampered) + ": no matching signatures", "signature payload is for digest"}},
		{name: "source-oci", image: elsewhere.String(), authority: fromSource(""), want: reportsv1alpha2.ResultPass},
		{name: "tag-prefix", image: prefixed.String(), authority: fromSource(agreeTagPrefix), want: reportsv1alpha2.ResultPass},
		{name: "kms", image: kms.String(), authority: v1beta1.Authority{Name: "release", Key: &v1beta1.KeyRef{KMS: agreeKMS}},
			want: reportsv1alpha2.ResultError, messages: []string{"key.kms " + agreeKMS + ": KMS keys are not supported yet"}},
	}
}

// keylessAgreementCases: images of vigil dev's registry signed by a
// VirtualSigstore certificate of agreeSubject and agreeIssuer (legacy, and
// a bundle), whose keys the TrustRoot agreeTrustRoot holds, and the cases of
// ctlog and rfc3161timestamp, whose log and TSA are that VirtualSigstore's. It applies the
// TrustRoot and writes it to a file in dir for vigil test, whose path it
// returns.
func keylessAgreementCases(t *testing.T, d *devEnv, tools *signingTools, reg, dir string) ([]agreementCase, string) {
	t.Helper()
	vs := verifytest.NewVirtualSigstore(t)
	trustRoot := manifestYAML(t, "policy.sigstore.dev/v1alpha1", "TrustRoot", agreeTrustRoot, verifytest.SigstoreKeysOf(t, agreeTrustRoot, vs).Spec)
	file := filepath.Join(dir, "trustroot.yaml")
	if err := os.WriteFile(file, []byte(trustRoot), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r := d.run(t, "", "delete", "trustroot", agreeTrustRoot, "--ignore-not-found"); r.Code != 0 {
			t.Errorf("cleanup: %s", r)
		}
	})
	d.apply(t, trustRoot)

	push := func(repo string) name.Digest { return pushAgreementImage(t, tools, reg, repo) }
	legacy, bundled, noRoot := push("keyless-legacy"), push("keyless-bundle"), push("keyless-no-root")
	wrongSubject, wrongIssuer := push("keyless-wrong-subject"), push("keyless-wrong-issuer")
	for _, img := range []name.Digest{legacy, noRoot, wrongSubject, wrongIssuer} {
		verifytest.SignKeylessLegacy(t, vs, img, agreeSubject, agreeIssuer)
	}
	verifytest.AttestKeylessBundle(t, vs, bundled, agreeSubject, agreeIssuer, cosignSignPredicate, map[string]any{})
	// ctlog and rfc3161timestamp: the cosign CLI cannot write log entries or
	// timestamps offline, so these signatures are made with the
	// VirtualSigstore's log and TSA, whose keys the TrustRoot holds.
	key, pub := verifytest.KeyPair(t)
	logged, unlogged, logNoRoot := push("ctlog-logged"), push("ctlog-unlogged"), push("ctlog-no-root")
	verifytest.SignKeyLegacy(t, key, logged, verifytest.Evidence{Log: vs})
	verifytest.SignKeyLegacy(t, key, unlogged, verifytest.Evidence{})
	verifytest.SignKeyLegacy(t, key, logNoRoot, verifytest.Evidence{Log: vs})
	stamped, unstamped := push("tsa-stamped"), push("tsa-unstamped")
	verifytest.SignKeylessLegacyWith(t, vs, stamped, agreeSubject, agreeIssuer, verifytest.Evidence{TSA: vs})
	verifytest.SignKeylessLegacy(t, vs, unstamped, agreeSubject, agreeIssuer)

	yes := true // VirtualSigstore's certificates carry no SCT
	keyless := func(root string, id v1beta1.Identity) v1beta1.Authority {
		return v1beta1.Authority{Name: "ci", Keyless: &v1beta1.KeylessRef{URL: "https://fulcio.example.com",
			Identities: []v1beta1.Identity{id}, TrustRootRef: root, InsecureIgnoreSCT: &yes}}
	}
	good := v1beta1.Identity{Issuer: agreeIssuer, Subject: agreeSubject}
	bundle := keyless(agreeTrustRoot, good)
	bundle.SignatureFormat = "bundle"
	withLog := func(root string) v1beta1.Authority {
		a := keyAuthority(pub)
		a.CTLog = &v1beta1.TLog{TrustRootRef: root}
		return a
	}
	withTSA := keyless(agreeTrustRoot, good)
	withTSA.RFC3161Timestamp = &v1beta1.RFC3161Timestamp{TrustRootRef: agreeTrustRoot}
	mismatch := func(img name.Digest) string {
		return "signature keyless validation failed for authority ci for " + img.String() +
			": no matching signatures: none of the expected identities matched what was in the certificate, got subjects [" +
			agreeSubject + "] with issuer " + agreeIssuer
	}
	return []agreementCase{
		{name: "keyless-legacy", image: legacy.String(), authority: keyless(agreeTrustRoot, good), want: reportsv1alpha2.ResultPass},
		{name: "keyless-bundle", image: bundled.String(), authority: bundle, want: reportsv1alpha2.ResultPass},
		{name: "keyless-wrong-subject", image: wrongSubject.String(), want: reportsv1alpha2.ResultFail, messages: []string{mismatch(wrongSubject)},
			authority: keyless(agreeTrustRoot, v1beta1.Identity{Issuer: agreeIssuer, Subject: "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main"})},
		{name: "keyless-wrong-issuer", image: wrongIssuer.String(), want: reportsv1alpha2.ResultFail, messages: []string{mismatch(wrongIssuer)},
			authority: keyless(agreeTrustRoot, v1beta1.Identity{Issuer: "https://accounts.example.org", Subject: agreeSubject})},
		{name: "keyless-no-root", image: noRoot.String(), authority: keyless(agreeMissingRoot, good), want: reportsv1alpha2.ResultError, notReady: true,
			messages: []string{fmt.Sprintf("spec.authorities[0].keyless.trustRootRef: trustroot %q", agreeMissingRoot)}},
		{name: "ctlog-logged", image: logged.String(), authority: withLog(agreeTrustRoot), want: reportsv1alpha2.ResultPass},
		{name: "ctlog-unlogged", image: unlogged.String(), authority: withLog(agreeTrustRoot), want: reportsv1alpha2.ResultFail,
			messages: []string{"signature key validation failed for authority release for " + unlogged.String() +
				": no matching signatures: offline verification failed", "transparency log entry"}},
		// The case that disagreed until this stop: vigil test took a missing
		// ctlog TrustRoot for bad input (exit 2).
		{name: "ctlog-no-root", image: logNoRoot.String(), authority: withLog(agreeMissingRoot), want: reportsv1alpha2.ResultError, notReady: true,
			messages: []string{fmt.Sprintf("spec.authorities[0].ctlog.trustRootRef: trustroot %q", agreeMissingRoot)}},
		{name: "tsa-stamped", image: stamped.String(), authority: withTSA, want: reportsv1alpha2.ResultPass},
		{name: "tsa-unstamped", image: unstamped.String(), authority: withTSA, want: reportsv1alpha2.ResultFail,
			messages: []string{"signature keyless validation failed for authority ci for " + unstamped.String() +
				": no matching signatures: the signature carries no RFC 3161 timestamp"}},
	}, file
}

// registryAgreementCases: key signatures behind registries of the test's
// own (go-containerregistry's, in this process): one that requires a login
// for its repositories under private/, where the signatures are (source.oci
// with signaturePullSecrets: a kubernetes.io/dockerconfigjson Secret in
// agreeNS holds the login, agreeNoSecretNS has none), one that answers 429
// to every request, and an address where nothing listens.
func registryAgreementCases(t *testing.T, d *devEnv, tools *signingTools, key1 string, pub1 []byte, dir string) []agreementCase {
	t.Helper()
	private := verifytest.NewRegistry(t)
	cosign := *tools.cosign
	cosign.Username, cosign.Password = verifytest.User, verifytest.Password
	sigs := private.Host + "/private/sig-agree-signatures"
	withSecret, withoutSecret := private.PushImage(t, agreeNS+"/pull-secret"), private.PushImage(t, agreeNS+"/no-pull-secret")
	cosign.Sign(t, key1, withSecret, false, "COSIGN_REPOSITORY="+sigs)
	cosign.Sign(t, key1, withoutSecret, false, "COSIGN_REPOSITORY="+sigs)
	login := dockerConfigJSON(private.Host)
	d.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: %s
  namespace: %s
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '%s'
`, agreePullSecret, agreeNS, login))
	credentials := filepath.Join(dir, "docker")
	if err := os.MkdirAll(credentials, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(credentials, "config.json"), []byte(login), 0o600); err != nil {
		t.Fatal(err)
	}

	limited := verifytest.NewRegistry(t)
	rateLimited := limited.PushImage(t, agreeNS+"/rate-limited")
	cosign.Sign(t, key1, rateLimited, false)
	limited.Mode.Store(verifytest.ModeRateLimited)
	// Nothing listens there: its registry is down.
	down := fmt.Sprintf("127.0.0.1:%d/%s/registry-down@sha256:%s", freePort(t), agreeNS, strings.Repeat("ab", 32))

	pulled := keyAuthority(pub1)
	pulled.Sources = []v1beta1.Source{{OCI: sigs, SignaturePullSecrets: []corev1.LocalObjectReference{{Name: agreePullSecret}}}}
	return []agreementCase{
		{name: "pull-secret", image: withSecret.String(), authority: pulled, want: reportsv1alpha2.ResultPass, dockerConfig: credentials},
		{name: "no-pull-secret", ns: agreeNoSecretNS, image: withoutSecret.String(), authority: pulled, want: reportsv1alpha2.ResultError,
			messages: []string{"registry " + private.Host + ": access denied"}},
		{name: "registry-down", image: down, authority: keyAuthority(pub1), want: reportsv1alpha2.ResultError, messages: []string{"connection refused"}},
		{name: "rate-limited", image: rateLimited.String(), authority: keyAuthority(pub1), want: reportsv1alpha2.ResultError,
			messages: []string{"registry " + limited.Host + ": rate limited (429)"}},
	}
}

// dockerConfigJSON is a Docker configuration holding the login of
// verifytest's registries for host.
func dockerConfigJSON(host string) string {
	auth := base64.StdEncoding.EncodeToString([]byte(verifytest.User + ":" + verifytest.Password))
	return fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
}
