package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// evidenceFixture: images signed with an ECDSA key and keyless by a
// VirtualSigstore (vs), carrying a log entry or an RFC 3161 timestamp of
// vs or of another VirtualSigstore (other), in both layouts. Images are
// named "<key|keyless>/<legacy|bundle>/<evidence>".
type evidenceFixture struct {
	vs, other *ca.VirtualSigstore
	reg       *testRegistry
	key       *ecdsa.PrivateKey
	pub       []byte
	img       map[string]name.Digest
}

func newEvidenceFixture(t *testing.T) *evidenceFixture {
	t.Helper()
	f := &evidenceFixture{vs: newVirtualSigstore(t), other: newVirtualSigstore(t), reg: newTestRegistry(t), img: map[string]name.Digest{}}
	f.key = newECDSAKey(t)
	f.pub = publicPEM(t, f.key.Public())
	vs, other := f.vs, f.other
	for n, ev := range map[string]verifytest.Evidence{
		"plain": {}, "logged": {Log: vs}, "logged-elsewhere": {Log: other},
		"timestamped": {TSA: vs}, "timestamped-elsewhere": {TSA: other},
	} {
		f.push(t, "key/legacy/"+n, func(d name.Digest) { verifytest.SignKeyLegacy(t, f.key, d, ev) })
		f.push(t, "key/bundle/"+n, func(d name.Digest) { verifytest.SignKeyBundle(t, f.key, d, ev) })
	}
	for n, ev := range map[string]verifytest.Evidence{
		"logged": {Log: vs}, "logged-elsewhere": {Log: other}, "timestamped": {Log: vs, TSA: vs},
		"timestamped-only": {TSA: vs}, "timestamped-elsewhere": {Log: vs, TSA: other},
	} {
		f.push(t, "keyless/legacy/"+n, func(d name.Digest) { verifytest.SignKeylessLegacyWith(t, vs, d, ciSubject, ciIssuer, ev) })
	}
	// A VirtualSigstore bundle carries vs's log entry and timestamp.
	f.push(t, "keyless/bundle/timestamped", func(d name.Digest) { signKeylessBundle(t, vs, d, ciSubject, ciIssuer, cosignSignPredicate) })
	return f
}

func (f *evidenceFixture) push(t *testing.T, repo string, sign func(name.Digest)) {
	t.Helper()
	d := f.reg.pushImage(t, repo)
	sign(d)
	f.img[repo] = d
}

func newECDSAKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rootOf is a ctlog or rfc3161timestamp trust root holding vs's material.
func rootOf(vs *ca.VirtualSigstore, name string) *RootRef {
	return &RootRef{TrustRoot: &TrustRoot{Name: name, Material: vs}}
}

// evidenceCase is one verification of an image of the fixture.
type evidenceCase struct {
	name       string
	ctlog, tsa *RootRef
	image      string // of the fixture, without its "<kind>/<format>/" prefix
	want       Reason // "" for a pass
	message    string
}

// run verifies the case's image with spec plus the case's ctlog and
// rfc3161timestamp, and checks the outcome.
func (tc evidenceCase) run(t *testing.T, f *evidenceFixture, spec AuthoritySpec, prefix string) {
	t.Helper()
	spec.CTLog, spec.RFC3161Timestamp = tc.ctlog, tc.tsa
	a := mustCompile(t, spec)
	d, ok := f.img[prefix+tc.image]
	if !ok {
		t.Fatalf("no image %s%s in the fixture", prefix, tc.image)
	}
	ev, err := New(Options{}).Verify(context.Background(), a, Request{Image: d.String()})
	if tc.want == "" {
		if err != nil {
			t.Fatalf("want a pass: %v", err)
		}
		if len(ev.Signatures) != 1 {
			t.Fatalf("evidence %+v, want one signature", ev.Signatures)
		}
		return
	}
	expectReason(t, err, tc.want, a, d, tc.message)
}

// Key authorities: without ctlog a signature alone passes (policy-
// controller's IgnoreTlog); with ctlog it needs an entry of a log its trust
// root holds, whose inclusion promise verifies offline; with
// rfc3161timestamp, a timestamp of a TSA its trust root holds, and no log
// entry. Both layouts.
func TestKeyEvidence(t *testing.T) {
	f := newEvidenceFixture(t)
	vsRoot, otherRoot := rootOf(f.vs, "virtual"), rootOf(f.other, "other")
	const mismatch = ReasonSignatureMismatch
	cases := []evidenceCase{
		{"without ctlog a signature alone passes", nil, nil, "plain", "", ""},
		{"without ctlog an entry of any log passes", nil, nil, "logged-elsewhere", "", ""},
		{"ctlog: an entry of its log", vsRoot, nil, "logged", "", ""},
		{"ctlog: no entry", vsRoot, nil, "plain", mismatch, "offline verification failed: the signature carries no transparency log entry"},
		{"ctlog: a timestamp is no entry", vsRoot, nil, "timestamped", mismatch, "offline verification failed"},
		{"ctlog: an entry of another log", vsRoot, nil, "logged-elsewhere", mismatch, `is not among the Rekor keys of trustroot "virtual"`},
		{"ctlog of the other log", otherRoot, nil, "logged-elsewhere", "", ""},
		{"rfc3161timestamp: a timestamp of its TSA", nil, vsRoot, "timestamped", "", ""},
		{"rfc3161timestamp: no timestamp", nil, vsRoot, "logged", mismatch, "carries no RFC 3161 timestamp"},
		{"rfc3161timestamp: a timestamp of another TSA", nil, vsRoot, "timestamped-elsewhere", mismatch, "threshold not met for verified signed timestamps"},
		{"rfc3161timestamp wins over ctlog", vsRoot, vsRoot, "timestamped", "", ""},
	}
	for _, format := range []SignatureFormat{FormatLegacy, FormatBundle} {
		for _, tc := range cases {
			t.Run(string(format)+"/"+tc.name, func(t *testing.T) {
				tc.run(t, f, keySpec(f.pub, format, nil), "key/"+string(format)+"/")
			})
		}
	}
	// A log entry is a body the log signed: the signature, the key and the
	// digest. Rekor refuses a body whose signature does not verify with its
	// key, so an entry of another key holds another signature as well.
	t.Run("the entry must be of this signature", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			signer *ecdsa.PrivateKey
		}{{"another signature by the key", f.key}, {"a signature by another key", newECDSAKey(t)}} {
			t.Run(tc.name, func(t *testing.T) {
				d := f.reg.pushImage(t, "key/legacy/grafted")
				payload := simpleSigningPayload(d)
				sum := sha256.Sum256(payload)
				sig, err := ecdsa.SignASN1(rand.Reader, f.key, sum[:])
				if err != nil {
					t.Fatal(err)
				}
				logged, err := ecdsa.SignASN1(rand.Reader, tc.signer, sum[:]) // valid, but not the layer's
				if err != nil {
					t.Fatal(err)
				}
				body := verifytest.HashedRekord(t, sum[:], logged, publicPEM(t, tc.signer.Public()))
				verifytest.WriteLegacySignature(t, d, payload, map[string]string{
					annotationSignature: base64.StdEncoding.EncodeToString(sig),
					annotationBundle:    verifytest.RekorBundle(t, f.vs, body, time.Now().Unix(), 0),
				})
				spec := keySpec(f.pub, FormatLegacy, nil)
				spec.CTLog = vsRoot
				a := mustCompile(t, spec)
				_, err = New(Options{}).Verify(context.Background(), a, Request{Image: d.String()})
				expectReason(t, err, mismatch, a, d, "transparency log signature does not match")
			})
		}
	})
	missingRoots(t, f, keySpec(f.pub, FormatLegacy, nil), f.img["key/legacy/logged"])
}

// missingRoots: a ctlog or rfc3161timestamp whose trust root is not
// available is an error, never a verdict, and asks no registry.
func missingRoots(t *testing.T, f *evidenceFixture, spec AuthoritySpec, d name.Digest) {
	for what, set := range map[string]func(*AuthoritySpec){
		"the transparency log (ctlog)":              func(s *AuthoritySpec) { s.CTLog = &RootRef{} },
		"timestamp verification (rfc3161timestamp)": func(s *AuthoritySpec) { s.RFC3161Timestamp = &RootRef{} },
	} {
		t.Run("missing root of "+what, func(t *testing.T) {
			s := spec
			set(&s)
			a := mustCompile(t, s)
			before := f.reg.requests.Load()
			_, err := New(Options{}).Verify(context.Background(), a, Request{Image: d.String()})
			expectReason(t, err, ReasonMissingTrustRoot, a, d, "no trust root is available for "+what)
			if n := f.reg.requests.Load() - before; n != 0 {
				t.Errorf("%d registry requests without a trust root", n)
			}
		})
	}
}

// Keyless authorities: ctlog's trust root gives the Rekor keys (the keyless
// root still gives the Fulcio CAs); rfc3161timestamp's gives the TSAs, and
// then no log entry is needed.
func TestKeylessEvidence(t *testing.T) {
	f := newEvidenceFixture(t)
	vsRoot, otherRoot := rootOf(f.vs, "virtual"), rootOf(f.other, "other")
	spec := func(format SignatureFormat) AuthoritySpec {
		return keylessSpec(f.vs, format, Identity{Issuer: ciIssuer, Subject: ciSubject})
	}
	const mismatch = ReasonSignatureMismatch
	for _, tc := range []evidenceCase{
		{"an entry of the keyless root's log", nil, nil, "logged", "", ""},
		{"an entry of a log the keyless root does not hold", nil, nil, "logged-elsewhere", mismatch, `is not among the Rekor keys of trustroot "virtual"`},
		{"a timestamp is no entry", nil, nil, "timestamped-only", mismatch, "offline verification failed"},
		{"ctlog names the log's root", vsRoot, nil, "logged", "", ""},
		{"ctlog of another log", otherRoot, nil, "logged", mismatch, `is not among the Rekor keys of trustroot "other"`},
		{"ctlog's Rekor keys with the keyless root's Fulcio", otherRoot, nil, "logged-elsewhere", "", ""},
		{"rfc3161timestamp: a timestamp of its TSA", nil, vsRoot, "timestamped", "", ""},
		{"rfc3161timestamp: no log entry needed", nil, vsRoot, "timestamped-only", "", ""},
		{"rfc3161timestamp: no timestamp", nil, vsRoot, "logged", mismatch, "carries no RFC 3161 timestamp"},
		{"rfc3161timestamp: a timestamp of another TSA", nil, vsRoot, "timestamped-elsewhere", mismatch, "threshold not met for verified signed timestamps"},
		{"rfc3161timestamp of another root", nil, otherRoot, "timestamped", mismatch, "threshold not met for verified signed timestamps"},
	} {
		t.Run("legacy/"+tc.name, func(t *testing.T) { tc.run(t, f, spec(FormatLegacy), "keyless/legacy/") })
	}
	for _, tc := range []evidenceCase{
		{"ctlog names the log's root", vsRoot, nil, "timestamped", "", ""},
		{"ctlog of another log", otherRoot, nil, "timestamped", mismatch, `is not among the Rekor keys of trustroot "other"`},
		{"rfc3161timestamp: a timestamp of its TSA", nil, vsRoot, "timestamped", "", ""},
		{"rfc3161timestamp of another root", nil, otherRoot, "timestamped", mismatch, "threshold not met for verified signed timestamps"},
	} {
		t.Run("bundle/"+tc.name, func(t *testing.T) { tc.run(t, f, spec(FormatBundle), "keyless/bundle/") })
	}
	missingRoots(t, f, spec(FormatLegacy), f.img["keyless/legacy/logged"])
}

// Attestations go the same way: a keyless authority with rfc3161timestamp
// needs a timestamp of its TSA over the .att layer (cosign's, over the
// whole envelope) or in the bundle.
func TestAttestationEvidence(t *testing.T) {
	vs, other := newVirtualSigstore(t), newVirtualSigstore(t)
	reg := newTestRegistry(t)
	const provenance = "https://slsa.dev/provenance/v1"
	predicate := map[string]any{"builder": map[string]any{"id": "ci"}}
	timestamped := reg.pushImage(t, "keyless/att-legacy/timestamped")
	verifytest.AttestKeylessLegacyWith(t, vs, timestamped, ciSubject, ciIssuer, provenance, predicate, verifytest.Evidence{TSA: vs})
	logged := reg.pushImage(t, "keyless/att-legacy/logged")
	verifytest.AttestKeylessLegacy(t, vs, logged, ciSubject, ciIssuer, provenance, predicate)
	bundled := reg.pushImage(t, "keyless/att-bundle")
	verifytest.AttestKeylessBundle(t, vs, bundled, ciSubject, ciIssuer, provenance, predicate)
	for _, tc := range []struct {
		name   string
		format SignatureFormat
		tsa    *RootRef
		image  name.Digest
		want   string // "" for a pass
	}{
		{"legacy, a timestamp of its TSA", FormatLegacy, rootOf(vs, "virtual"), timestamped, ""},
		{"legacy, a timestamp of another TSA", FormatLegacy, rootOf(other, "other"), timestamped, "threshold not met for verified signed timestamps"},
		{"legacy, no timestamp", FormatLegacy, rootOf(vs, "virtual"), logged, "carries no RFC 3161 timestamp"},
		{"legacy, without rfc3161timestamp a log entry is needed", FormatLegacy, nil, timestamped, "offline verification failed"},
		{"bundle, a timestamp of its TSA", FormatBundle, rootOf(vs, "virtual"), bundled, ""},
		{"bundle, a timestamp of another TSA", FormatBundle, rootOf(other, "other"), bundled, "threshold not met for verified signed timestamps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := keylessSpec(vs, tc.format, Identity{Issuer: ciIssuer, Subject: ciSubject})
			spec.RFC3161Timestamp = tc.tsa
			a := mustCompile(t, spec)
			ev, err := New(Options{}).VerifyAttestations(context.Background(), a, Request{Image: tc.image.String()}, "slsaprovenance1")
			if tc.want != "" {
				expectReason(t, err, ReasonSignatureMismatch, a, tc.image, tc.want)
				if !strings.Contains(err.Error(), "attestation keyless validation failed") {
					t.Errorf("message %q is not policy-controller's shape", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("want a pass: %v", err)
			}
			if got := ev.ByType["slsaprovenance1"]; len(got) != 1 {
				t.Fatalf("attestations %+v, want one provenance", ev.Attestations)
			}
		})
	}
}
