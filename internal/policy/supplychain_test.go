package policy

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// Identities the catalog's keyless policies name.
const (
	googleIssuer = "https://accounts.google.com"
	githubIssuer = "https://token.actions.githubusercontent.com"
	chainguardID = "https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main"
	k8sReleaseID = "krel-trust@k8s-releng-prod.iam.gserviceaccount.com"
	githubRelID  = "https://github.com/sigstore/policy-controller/.github/workflows/release.yaml@refs/tags/v0.3.0"
	allowedSLSA  = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v1.4.0"
)

// supplyChain is the fixture of the catalog's supply-chain policies:
// images in an in-memory registry, attested with a key by the real cosign
// CLI (`cosign attest --type …`, legacy .att layout, which the policies as
// written read), signed keyless by a VirtualSigstore (legacy .sig) and
// attested keyless by it (bundle referrers, signatureFormat: bundle).
type supplyChain struct {
	reg *verifytest.Registry
	pub []byte
	vs  verify.TrustRoot
	img map[string]name.Digest
}

func newSupplyChain(t testing.TB) *supplyChain {
	t.Helper()
	cosign := verifytest.FindCosign(t)
	f := &supplyChain{reg: verifytest.NewRegistry(t), img: map[string]name.Digest{}}
	key, pub := cosign.GenerateKey(t)
	f.pub = pub
	vs := verifytest.NewVirtualSigstore(t)
	f.vs = verify.TrustRoot{Name: "ci-root", Material: vs}
	other := verifytest.NewVirtualSigstore(t)
	now := time.Now()
	push := func(n string) name.Digest {
		d := f.reg.PushImage(t, "app/"+n)
		f.img[n] = d
		return d
	}
	attest := func(n, typ string, predicate any) { cosign.Attest(t, key, f.img[n], false, typ, predicate) }
	keyless := func(n, subject, issuer, predicateType string, predicate any) {
		verifytest.AttestKeylessBundle(t, vs, f.img[n], subject, issuer, predicateType, predicate)
	}
	push("bare")
	push("provenance-ok")
	attest("provenance-ok", "slsaprovenance", map[string]any{"builder": map[string]any{"id": allowedSLSA}, "buildType": "https://example.com/build"})
	push("provenance-bad")
	attest("provenance-bad", "slsaprovenance", map[string]any{"builder": map[string]any{"id": "https://evil.example/builder"}, "buildType": "https://example.com/build"})
	push("spdx")
	attest("spdx", "spdxjson", map[string]any{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app"})
	push("vuln-clean")
	attest("vuln-clean", "vuln", verifytest.VulnPredicate(now, 0, 0))
	push("vuln-bad")
	attest("vuln-bad", "vuln", verifytest.VulnPredicate(now, 9, 1))
	push("chainguard-vuln")
	attest("chainguard-vuln", "https://chainguard.dev/attestation/vuln/v1", verifytest.VulnPredicate(now, 0, 0))

	push("cg-attested")
	keyless("cg-attested", chainguardID, githubIssuer, "https://spdx.dev/Document", map[string]any{"spdxVersion": "SPDX-2.3"})
	keyless("cg-attested", chainguardID, githubIssuer, "https://slsa.dev/provenance/v1", map[string]any{"buildDefinition": map[string]any{}})
	push("cg-spdx-only")
	keyless("cg-spdx-only", chainguardID, githubIssuer, "https://spdx.dev/Document", map[string]any{"spdxVersion": "SPDX-2.3"})
	sbom := func(n, log4j, text string) {
		push(n)
		keyless(n, "builder@example.com", googleIssuer, "https://cyclonedx.org/bom", map[string]any{
			"Data":       map[string]any{"components": []any{map[string]any{"name": "log4j-core", "version": log4j}}},
			"components": []any{map[string]any{"name": "commons-text", "version": text}},
		})
		keyless(n, "builder@example.com", googleIssuer, "https://spdx.dev/Document", map[string]any{
			"Data": map[string]any{"packages": []any{map[string]any{"name": "log4j-api", "versionInfo": log4j}}},
		})
	}
	sbom("sbom-ok", "2.17.1", "1.10.0")
	sbom("sbom-log4shell", "2.14.1", "1.10.0")
	sbom("sbom-text4shell", "2.17.1", "1.9")
	push("scan-fresh")
	keyless("scan-fresh", "scanner@example.com", googleIssuer, "cosign.sigstore.dev/attestation/vuln/v1", verifytest.VulnPredicate(now.Add(-24*time.Hour), 0, 0))
	push("scan-old")
	keyless("scan-old", "scanner@example.com", googleIssuer, "cosign.sigstore.dev/attestation/vuln/v1", verifytest.VulnPredicate(now.Add(-20*24*time.Hour), 0, 0))

	// Signatures carry a log entry and a timestamp of their signer, as
	// cosign writes them with --timestamp-server-url.
	sign := func(n, subject, issuer string, by *ca.VirtualSigstore) {
		verifytest.SignKeylessLegacyWith(t, by, push(n), subject, issuer, verifytest.Evidence{Log: by, TSA: by})
	}
	verifytest.SignKeylessLegacy(t, vs, push("signed-custom-untimestamped"), "foo@example.com", "https://your.issuer.dev/")
	sign("signed-google", "foo@example.com", googleIssuer, vs)
	sign("signed-custom", "foo@example.com", "https://your.issuer.dev/", vs)
	sign("signed-k8s", k8sReleaseID, googleIssuer, vs)
	sign("signed-k8s-other-root", k8sReleaseID, googleIssuer, other)
	sign("signed-gh", githubRelID, githubIssuer, vs)
	sign("signed-someone", "mallory@example.com", googleIssuer, vs)

	f.img["created-recently"] = f.reg.PushCreated(t, "app/created-recently", now.Add(-24*time.Hour))
	f.img["created-long-ago"] = f.reg.PushCreated(t, "app/created-long-ago", now.Add(-40*24*time.Hour))
	return f
}

// catalogPolicy reads a policy of the corpus pointed at the fixture
// (verifytest.CatalogPolicy says how).
func (f *supplyChain) catalogPolicy(t testing.TB, dir, file string) *v1beta1.ClusterImagePolicy {
	t.Helper()
	return verifytest.CatalogPolicy(t, filepath.Join(dir, file), f.reg.Host, f.pub, f.vs.Name)
}

func (f *supplyChain) compiler() Compiler {
	return Compiler{TrustRoot: func(string) (*verify.TrustRoot, error) { return &f.vs, nil }}
}

// Every supply-chain policy of the catalog, a passing and a failing image
// each, judged by Set.Decide with the real verifier; messages are the
// upstream tests' where they name one ("Found HIGH '9' and CRITICAL '1'
// vulnerabilities", "Scan exceeds maximum allowed age", "no matching
// signatures", "none of the expected identities matched"), policy-controller's
// wording around them. The catalog's CUE custom messages (`name: name` then
// `name: err` under an if) are a structural cycle for the CUE Vigil links, as
// for policy-controller's main branch: those images fail at the right path
// with CUE's words, not the message, which only an older CUE gave
// (docs/compatibility.md has what each evaluator does).
//
// One fixture (it takes cosign a while) serves the subtests.
func TestSupplyChain(t *testing.T) {
	dir := sharedDir(t, "conformance", "supply-chain", "policies")
	f := newSupplyChain(t)
	vf := Verification{Verifier: verify.New(verify.Options{}), Keychain: verifytest.Keychain{}}
	t.Run("catalog", func(t *testing.T) { f.catalog(t, dir, vf) })
	t.Run("clock", func(t *testing.T) { f.clock(t, dir, vf) })
	t.Run("authorityMatches", func(t *testing.T) { f.attestationMatches(t, vf) })
	t.Run("config", func(t *testing.T) { f.config(t, dir, vf) })
	t.Run("budget", func(t *testing.T) { f.budget(t, vf) })
}

// An attestation policy runs within Options.PolicyTimeout: a Rego policy
// that would run for long is stopped, an error result, never a pass.
func (f *supplyChain) budget(t *testing.T, vf Verification) {
	auth := keyAuth(f.pub)
	auth.Attestations = []v1beta1.Attestation{{Name: "slow", PredicateType: "vuln", Policy: &v1beta1.Policy{Type: v1beta1.PolicyTypeRego,
		Data: "package sigstore\nisCompliant { count([x | x := numbers.range(1, 100000000)[_]; x > input.predicate.metadata.scanFinishedOn]) >= 0 }"}}}
	p, err := Compiler{CompileTimeout: -1}.Compile(newCIP("slow", withAuthorities(auth)))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d := NewSet([]*CompiledPolicy{p}, nil).Decide(context.Background(), obj(t, podYAML(f.img["vuln-clean"].String())),
		Options{Verification: vf, PolicyTimeout: 500 * time.Millisecond})
	if r := d.Results[0]; r.Result != ResultError || !strings.Contains(r.Message, "failed evaluating rego policy for type slow: ") {
		t.Fatalf("result %s %q after %v, want an error from the policy's time limit", r.Result, r.Message, time.Since(start))
	}
}

// fetchConfigFile through evaluation workers (the controller's path: the
// input with its config crosses to the worker process), and config files
// that cannot be read: an error result naming the image, never a pass.
func (f *supplyChain) config(t *testing.T, dir string, vf Verification) {
	c := f.compiler()
	c.Workers = newTestPool(t, 0)
	p, err := c.Compile(f.catalogPolicy(t, dir, "maximum-image-age-rego.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet([]*CompiledPolicy{p}, nil)
	for image, want := range map[string]string{"created-recently": ResultPass, "created-long-ago": ResultWarn} {
		d := set.Decide(context.Background(), obj(t, podYAML(f.img[image].String())), Options{Verification: vf, PolicyTimeout: DefaultPolicyTimeout})
		if r := d.Results[0]; r.Result != want {
			t.Errorf("%s through workers: result %s, want %s: %s", image, r.Result, want, r.Message)
		}
	}
	missing := f.reg.Host + "/app/gone@sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct {
		name, image, message string
		vf                   Verification
	}{
		{"no verifier", f.img["created-recently"].String(), "the config file of " + f.img["created-recently"].String() + " cannot be read: no verifier is configured", Verification{}},
		{"no such image", missing, missing, vf},
	} {
		d := set.Decide(context.Background(), obj(t, podYAML(tc.image)), Options{Verification: tc.vf})
		if r := d.Results[0]; r.Result != ResultError || !strings.Contains(r.Message, tc.message) || !strings.Contains(r.Explanation, "its config file cannot be read") {
			t.Errorf("%s: result %s %q (%s), want an error naming %q", tc.name, r.Result, r.Message, r.Explanation, tc.message)
		}
	}
}

func (f *supplyChain) catalog(t *testing.T, dir string, vf Verification) {
	rego := "policy is not compliant for query 'isCompliant = data.sigstore.isCompliant' with errors: "
	cases := []struct {
		policy, image, want string
		message             []string
	}{
		{"chainguard-images-attested-cue.yaml", "cg-attested", ResultPass, nil},
		{"chainguard-images-attested-cue.yaml", "cg-spdx-only", ResultFail, []string{
			"attestation keyless validation failed for authority authority-0 for " + f.img["cg-spdx-only"].String() +
				": no matching attestations with type https://slsa.dev/provenance/v1"}},
		{"deprecated-k8s-grc-io-registry-rego.yaml", "", ResultWarn, []string{
			"failed evaluating rego policy for type ClusterImagePolicy: warning: This repo has been deprecated: https://kubernetes.io/blog/2023/02/06/k8s-gcr-io-freeze-announcement/"}},
		{"keyless-signature-custom-tsa.yaml", "signed-custom", ResultPass, nil},
		{"keyless-signature-custom-tsa.yaml", "signed-google", ResultFail, []string{"none of the expected identities matched what was in the certificate"}},
		{"keyless-signature-custom-tsa.yaml", "signed-custom-untimestamped", ResultFail, []string{"the signature carries no RFC 3161 timestamp"}},
		{"keyless-signature.yaml", "signed-google", ResultPass, nil},
		{"keyless-signature.yaml", "bare", ResultFail, []string{"signature keyless validation failed for authority authority-0 for " + f.img["bare"].String() + ": no signatures found"}},
		{"kubernetes-signed.yaml", "signed-k8s", ResultPass, nil},
		{"kubernetes-signed.yaml", "signed-k8s-other-root", ResultFail, []string{"no matching signatures"}},
		{"log4shell-cue.yaml", "sbom-ok", ResultPass, nil},
		{"log4shell-cue.yaml", "sbom-log4shell", ResultFail, []string{
			"failed evaluating cue policy for log4shellcyclonedx: failed to evaluate the policy with error: ",
			"predicate.Data.components.0.name: ", "structural cycle"}},
		{"maximum-image-age-rego.yaml", "created-recently", ResultPass, nil},
		{"maximum-image-age-rego.yaml", "created-long-ago", ResultWarn, []string{"failed evaluating rego policy for type ClusterImagePolicy: " + rego + "Image exceeds maximum allowed age."}},
		{"must-have-allowed-builder-cue.yaml", "provenance-ok", ResultPass, nil},
		{"must-have-allowed-builder-cue.yaml", "provenance-bad", ResultFail, []string{
			"failed evaluating cue policy for must-have-builder: failed to evaluate the policy with error: ",
			"predicate.builder.id: ", "structural cycle"}},
		{"must-have-spdx-cue.yaml", "spdx", ResultPass, nil},
		{"must-have-spdx-cue.yaml", "bare", ResultFail, []string{"attestation key validation failed for authority my-authority for " + f.img["bare"].String() + ": no attestations found"}},
		{"must-have-spdx-rego.yaml", "spdx", ResultPass, nil},
		{"must-have-spdx-rego.yaml", "vuln-clean", ResultFail, []string{
			`no matching attestations with type https://spdx.dev/Document, checked the following predicateTypes: "https://cosign.sigstore.dev/attestation/vuln/v1"`}},
		{"must-have-vuln-cue.yaml", "vuln-clean", ResultPass, nil},
		{"must-have-vuln-cue.yaml", "spdx", ResultFail, []string{"no matching attestations with type https://cosign.sigstore.dev/attestation/vuln/v1"}},
		{"must-have-vuln-rego.yaml", "vuln-bad", ResultPass, nil},
		{"must-have-vuln-rego.yaml", "provenance-ok", ResultFail, []string{"no matching attestations with type https://cosign.sigstore.dev/attestation/vuln/v1"}},
		{"signed-by-github-actions.yaml", "signed-gh", ResultPass, nil},
		{"signed-by-github-actions.yaml", "signed-google", ResultFail, []string{"none of the expected identities matched what was in the certificate"}},
		{"text4shell-cue.yaml", "sbom-ok", ResultPass, nil},
		{"text4shell-cue.yaml", "sbom-text4shell", ResultFail, []string{
			"failed evaluating cue policy for text4shellcyclonedx: failed to evaluate the policy with error: ",
			"predicate.components.0.name: ", "structural cycle"}},
		// The policy compares the predicate type with a value without
		// https://, which no statement it selects can have: it fails every
		// attested image, with its custom message, as in policy-controller.
		{"vuln-error-message-rego.yaml", "chainguard-vuln", ResultFail, []string{
			"failed evaluating rego policy for type must-have-vuln-attestation: " + rego + "Not found expected predicate type 'chainguard.dev/attestation/vuln/v1'"}},
		{"vuln-error-message-rego.yaml", "vuln-clean", ResultFail, []string{"no matching attestations with type https://chainguard.dev/attestation/vuln/v1"}},
		{"vuln-maximum-scan-age-rego.yaml", "scan-fresh", ResultPass, nil},
		{"vuln-maximum-scan-age-rego.yaml", "scan-old", ResultFail, []string{
			"failed evaluating rego policy for type vuln-report-scan-max-age: " + rego + "Scan exceeds maximum allowed age."}},
		{"vuln-no-high-or-critical-rego.yaml", "vuln-clean", ResultPass, nil},
		{"vuln-no-high-or-critical-rego.yaml", "vuln-bad", ResultFail, []string{
			"failed evaluating rego policy for type must-not-have-high-critical-cves: " + rego + "Found HIGH '9' and CRITICAL '1' vulnerabilities"}},
		// A warning fails an attestation policy, as in policy-controller, at
		// the policy's mode (warn): this policy warns of every attested
		// image, so it has no pass.
		{"vuln-warning-message-rego.yaml", "vuln-clean", ResultWarn, []string{
			"failed evaluating rego policy for type must-have-vuln-attestation: warning: WARNING: Found an attestation with predicate type 'cosign.sigstore.dev/attestation/vuln/v1'"}},
		{"vuln-warning-message-rego.yaml", "bare", ResultWarn, []string{"no attestations found"}},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.policy] = true
		t.Run(strings.TrimSuffix(tc.policy, ".yaml")+"/"+tc.image, func(t *testing.T) {
			image := "k8s.gcr.io/pause:3.9"
			if tc.image != "" {
				image = f.img[tc.image].String()
			}
			p, err := f.compiler().Compile(f.catalogPolicy(t, dir, tc.policy))
			if err != nil {
				t.Fatal(err)
			}
			d := NewSet([]*CompiledPolicy{p}, nil).Decide(context.Background(), obj(t, podYAML(image)), Options{Verification: vf})
			r := d.Results[0]
			if r.Result != tc.want {
				t.Fatalf("result %s, want %s: %s", r.Result, tc.want, r.Message)
			}
			for _, m := range tc.message {
				if !strings.Contains(r.Message, m) {
					t.Errorf("message %q does not contain %q", r.Message, m)
				}
			}
			if d.Allowed != (tc.want != ResultFail) {
				t.Errorf("Allowed = %v for a %s", d.Allowed, tc.want)
			}
			// Differential: the same decision from the verifier's cache
			// and the attestation results' cache.
			again := NewSet([]*CompiledPolicy{p}, nil).Decide(context.Background(), obj(t, podYAML(image)), Options{Verification: vf})
			if !reflect.DeepEqual(again.Results, d.Results) {
				t.Errorf("cached decision differs:\n%+v\n%+v", again.Results, d.Results)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !covered[e.Name()] {
			t.Errorf("%s has no case", e.Name())
		}
	}
}

// The catalog's clock policies: the result says it read the clock, the
// decision is judged again within Options.ClockRecheck, and the same pod
// with the same evidence turns when the clock moves past the scan's (or the
// image's) age limit.
func (f *supplyChain) clock(t *testing.T, dir string, vf Verification) {
	now := time.Now()
	for _, tc := range []struct {
		policy, image string
		limit         time.Duration // the policy's, past the fixture's age
		clockOf       func(p *CompiledPolicy) *regoEvaluator
	}{
		{"vuln-maximum-scan-age-rego.yaml", "scan-fresh", 15 * 24 * time.Hour, func(p *CompiledPolicy) *regoEvaluator {
			return p.authorities[0].sig.attestations[0].eval.(*regoEvaluator)
		}},
		{"maximum-image-age-rego.yaml", "created-recently", 30 * 24 * time.Hour, func(p *CompiledPolicy) *regoEvaluator {
			return p.body.(*regoEvaluator)
		}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			p, err := f.compiler().Compile(f.catalogPolicy(t, dir, tc.policy))
			if err != nil {
				t.Fatal(err)
			}
			if !p.TimeDependent() {
				t.Fatal("TimeDependent() = false for a policy calling time.now_ns")
			}
			set := NewSet([]*CompiledPolicy{p}, nil)
			pod := obj(t, podYAML(f.img[tc.image].String()))
			opts := Options{Verification: vf, ClockRecheck: time.Minute, Now: func() time.Time { return now }}
			d := set.Decide(context.Background(), pod, opts)
			if r := d.Results[0]; r.Result != ResultPass || !r.TimeDependent {
				t.Fatalf("result %s (TimeDependent %v), want a time-dependent pass: %s", r.Result, r.TimeDependent, r.Message)
			}
			if d.RecheckAt.IsZero() || d.RecheckAt.After(now.Add(time.Minute)) {
				t.Errorf("RecheckAt %v, want at most a minute after %v", d.RecheckAt, now)
			}
			clock := tc.clockOf(p)
			clock.now = func() time.Time { return now.Add(tc.limit) }
			defer func() { clock.now = nil }()
			d = set.Decide(context.Background(), pod, opts)
			if r := d.Results[0]; r.Result == ResultPass || !r.TimeDependent {
				t.Fatalf("after %v: result %s (TimeDependent %v), want a time-dependent failure", tc.limit, r.Result, r.TimeDependent)
			}
		})
	}
	// A policy that reads no clock leaves RecheckAt to its verifications.
	p, err := f.compiler().Compile(f.catalogPolicy(t, dir, "vuln-no-high-or-critical-rego.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Verification: vf, ClockRecheck: time.Minute, Now: func() time.Time { return now }}
	d := NewSet([]*CompiledPolicy{p}, nil).Decide(context.Background(), obj(t, podYAML(f.img["vuln-clean"].String())), opts)
	if r := d.Results[0]; r.TimeDependent || !d.RecheckAt.After(now.Add(time.Minute)) {
		t.Errorf("TimeDependent %v, RecheckAt %v: want the verifier's pass expiry, not the clock's bound", r.TimeDependent, d.RecheckAt)
	}
}

// The CIP-level body sees authorityMatches.<authority>.attestations.<name>
// as policy-controller builds it (predicateType as the policy names it),
// and no statement bodies.
func (f *supplyChain) attestationMatches(t *testing.T, vf Verification) {
	auth := keyAuth(f.pub)
	auth.Attestations = []v1beta1.Attestation{{Name: "vulns", PredicateType: "vuln"}}
	for _, tc := range []struct {
		body, want string
	}{
		{`authorityMatches: "release-key": attestations: vulns: [{predicateType: "vuln", digest: =~"^sha256:"}]`, ResultPass},
		{`authorityMatches: "release-key": attestations: vulns: [{predicateType: "https://cosign.sigstore.dev/attestation/vuln/v1"}]`, ResultFail},
		{`authorityMatches: "release-key": close({attestations: _})`, ResultPass},
		{"package sigstore\nisCompliant { count(input.authorityMatches[\"release-key\"].attestations.vulns) == 1; not input.authorityMatches[\"release-key\"].attestations.vulns[0].predicate }", ResultPass},
	} {
		typ := v1beta1.PolicyTypeCUE
		if strings.HasPrefix(tc.body, "package") {
			typ = v1beta1.PolicyTypeRego
		}
		cip := newCIP("vulns", withAuthorities(auth), withBody(typ, tc.body))
		d := decideSigned(t, Compiler{}, obj(t, podYAML(f.img["vuln-clean"].String())), vf, cip)
		if r := d.Results[0]; r.Result != tc.want {
			t.Errorf("%s: result %s, want %s: %s", tc.body, r.Result, tc.want, r.Message)
		}
	}
}

// BenchmarkDecideAttestations: one pod judged by a catalog policy with an
// attestation policy, the verifier's answer and the attestation policy's
// result cached (the steady state of the verify path), beside the same
// policy reading the clock (its Rego evaluated every time).
func BenchmarkDecideAttestations(b *testing.B) {
	dir := sharedDir(b, "conformance", "supply-chain", "policies")
	f := newSupplyChain(b)
	vf := Verification{Verifier: verify.New(verify.Options{}), Keychain: verifytest.Keychain{}}
	for _, bc := range []struct{ name, policy, image string }{
		{"rego-vuln-cached", "vuln-no-high-or-critical-rego.yaml", "vuln-bad"},
		{"cue-log4shell-cached", "log4shell-cue.yaml", "sbom-log4shell"},
		{"rego-scan-age-clock", "vuln-maximum-scan-age-rego.yaml", "scan-fresh"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := f.compiler().Compile(f.catalogPolicy(b, dir, bc.policy))
			if err != nil {
				b.Fatal(err)
			}
			set, pod := NewSet([]*CompiledPolicy{p}, nil), obj(b, podYAML(f.img[bc.image].String()))
			set.Decide(context.Background(), pod, Options{Verification: vf})
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				set.Decide(context.Background(), pod, Options{Verification: vf})
			}
		})
	}
}
