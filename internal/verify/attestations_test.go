package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v3/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

const (
	vulnURI = "https://cosign.sigstore.dev/attestation/vuln/v1"
	spdxURI = "https://spdx.dev/Document"
)

// attestationFixture: images attested by the real cosign CLI with a key, in
// both layouts.
type attestationFixture struct {
	reg            *testRegistry
	pub, otherPub  []byte
	legacy, bundle name.Digest // vuln and spdx attestations (bundle: and a signature)
	oversized      name.Digest // legacy: a small vuln and a spdx past maxAttestationBytes
	signedOnly     name.Digest // a legacy signature, no attestation
}

func newAttestationFixture(t *testing.T) *attestationFixture {
	t.Helper()
	cosign := cosignBinary(t)
	f := &attestationFixture{reg: newTestRegistry(t)}
	key, pub := cosignKey(t, cosign)
	_, f.otherPub = cosignKey(t, cosign)
	f.pub = pub
	vuln := verifytest.VulnPredicate(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), 1, 0)
	spdx := map[string]any{"spdxVersion": "SPDX-2.3", "name": "app"}

	f.legacy = f.reg.pushImage(t, "attested/legacy")
	cosignAttest(t, cosign, key, f.legacy, FormatLegacy, "vuln", vuln)
	// spdxjson: the predicate stays JSON (cosign's "spdx" quotes it as a
	// string, which sigstore-go cannot read in a bundle).
	cosignAttest(t, cosign, key, f.legacy, FormatLegacy, "spdxjson", spdx)
	f.bundle = f.reg.pushImage(t, "attested/bundle")
	cosignAttest(t, cosign, key, f.bundle, FormatBundle, "vuln", vuln)
	cosignAttest(t, cosign, key, f.bundle, FormatBundle, "spdxjson", spdx)
	cosignSign(t, cosign, key, f.bundle, FormatBundle)
	f.signedOnly = f.reg.pushImage(t, "attested/none")
	cosignSign(t, cosign, key, f.signedOnly, FormatLegacy)

	// An SBOM whose envelope passes the bound: 7 MiB of predicate is more
	// than 8 MiB once base64-encoded in the envelope.
	f.oversized = f.reg.pushImage(t, "attested/oversized")
	big := map[string]any{"spdxVersion": "SPDX-2.3", "comment": strings.Repeat("x", 7<<20)}
	cosignAttest(t, cosign, key, f.oversized, FormatLegacy, "vuln", vuln)
	cosignAttest(t, cosign, key, f.oversized, FormatLegacy, "spdxjson", big)
	return f
}

// Attestations written by the real cosign CLI, against key authorities;
// one fixture (cosign runs a dozen times) serves the three parts.
func TestAttestationsKeyCosign(t *testing.T) {
	f := newAttestationFixture(t)
	t.Run("table", func(t *testing.T) { attestationsKeyTable(t, f) })
	t.Run("oversized message", func(t *testing.T) { attestationOversizedMessage(t, f) })
	t.Run("cached", func(t *testing.T) { attestationsCached(t, f) })
	t.Run("agrees with cosign", func(t *testing.T) { attestationsAgreeWithCosign(t, f) })
}

// attestationsAgreeWithCosign: on the legacy image, the statements that
// verify here are those cosign's own VerifyImageAttestations returns.
func attestationsAgreeWithCosign(t *testing.T, f *attestationFixture) {
	pk, err := cryptoutils.UnmarshalPEMToPublicKey(f.pub)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadDefaultVerifier(pk)
	if err != nil {
		t.Fatal(err)
	}
	co := &cosign.CheckOpts{SigVerifier: sv, IgnoreTlog: true, ClaimVerifier: cosign.IntotoSubjectClaimVerifier,
		RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(remote.WithAuthFromKeychain(staticKeychain{}))}}
	checked, _, err := cosign.VerifyImageAttestations(context.Background(), f.legacy, co)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, sig := range checked {
		raw, err := sig.Payload()
		if err != nil {
			t.Fatal(err)
		}
		var env dsseEnvelope
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatal(err)
		}
		want = append(want, string(env.Payload))
	}
	ev, err := New(Options{}).VerifyAttestations(context.Background(), mustCompile(t, keySpec(f.pub, FormatLegacy, nil)), Request{Image: f.legacy.String()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range ev.Attestations {
		got = append(got, string(a.Statement))
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) != 2 || !slices.Equal(got, want) {
		t.Fatalf("statements differ from cosign's:\n got  %q\n want %q", got, want)
	}
}

func attestationsKeyTable(t *testing.T, f *attestationFixture) {
	for _, tc := range []struct {
		name    string
		spec    AuthoritySpec
		image   name.Digest
		types   []string
		want    Reason
		message string
	}{
		{"legacy, short name", keySpec(f.pub, FormatLegacy, nil), f.legacy, []string{"vuln"}, "", ""},
		{"legacy, URI", keySpec(f.pub, FormatLegacy, nil), f.legacy, []string{vulnURI}, "", ""},
		{"legacy, two types", keySpec(f.pub, FormatLegacy, nil), f.legacy, []string{"vuln", "spdxjson"}, "", ""},
		{"bundle, short name", keySpec(f.pub, FormatBundle, nil), f.bundle, []string{"vuln"}, "", ""},
		{"bundle, two types", keySpec(f.pub, FormatBundle, nil), f.bundle, []string{"spdx", vulnURI}, "", ""},
		{"legacy, type absent", keySpec(f.pub, FormatLegacy, nil), f.legacy, []string{"vuln", "cyclonedx"}, ReasonNoAttestations,
			`no matching attestations with type cyclonedx, checked the following predicateTypes: "` + vulnURI + ", " + spdxURI + `"`},
		{"bundle, type absent", keySpec(f.pub, FormatBundle, nil), f.bundle, []string{"slsaprovenance1"}, ReasonNoAttestations,
			"no matching attestations with type slsaprovenance1"},
		{"legacy, wrong key", keySpec(f.otherPub, FormatLegacy, nil), f.legacy, []string{"vuln"}, ReasonSignatureMismatch, "no matching attestations: invalid signature"},
		{"bundle, wrong key", keySpec(f.otherPub, FormatBundle, nil), f.bundle, []string{"vuln"}, ReasonSignatureMismatch, "no matching attestations"},
		{"signature only", keySpec(f.pub, FormatLegacy, nil), f.signedOnly, []string{"vuln"}, ReasonNoAttestations, "no attestations found"},
		{"legacy authority, bundle attestations", keySpec(f.pub, FormatLegacy, nil), f.bundle, []string{"vuln"}, ReasonNoAttestations, "no attestations found"},
		{"bundle authority, legacy attestations", keySpec(f.pub, FormatBundle, nil), f.legacy, []string{"vuln"}, ReasonNoAttestations, "no attestations found"},
		{"oversized body, other type still verifies", keySpec(f.pub, FormatLegacy, nil), f.oversized, []string{"vuln"}, "", ""},
		{"oversized body", keySpec(f.pub, FormatLegacy, nil), f.oversized, []string{"spdx"}, ReasonNoAttestations,
			`no matching attestations with type spdx, checked the following predicateTypes: "` + vulnURI + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustCompile(t, tc.spec)
			ev, err := New(Options{}).VerifyAttestations(context.Background(), a, Request{Image: tc.image.String()}, tc.types...)
			if tc.want != "" {
				expectReason(t, err, tc.want, a, tc.image, tc.message)
				if !strings.Contains(err.Error(), "attestation key validation failed for authority release-key for "+tc.image.String()) {
					t.Errorf("message %q is not policy-controller's attestation shape", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("want a pass: %v", err)
			}
			for _, typ := range tc.types {
				got := ev.ByType[typ]
				if len(got) != 1 {
					t.Fatalf("%d statements of type %s, want 1: %+v", len(got), typ, ev.ByType)
				}
				checkVerifiedStatement(t, got[0], PredicateTypeURI(typ), tc.image)
			}
		})
	}
}

// checkVerifiedStatement: a verified statement is the in-toto statement cosign
// wrote, about the image, of the type.
func checkVerifiedStatement(t *testing.T, att Attestation, uri string, d name.Digest) {
	t.Helper()
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(att.Statement, &st); err != nil {
		t.Fatalf("statement %q: %v", att.Statement, err)
	}
	if st.PredicateType != uri || att.PredicateType != uri || len(st.Subject) != 1 ||
		"sha256:"+st.Subject[0].Digest["sha256"] != d.DigestStr() || len(st.Predicate) < 2 || att.ID == "" {
		t.Fatalf("attestation %+v, statement %s: want type %s about %s", att, att.Statement, uri, d)
	}
}

// The bound on one attestation's body says what and how much.
func attestationOversizedMessage(t *testing.T, f *attestationFixture) {
	a := mustCompile(t, keySpec(f.otherPub, FormatLegacy, nil)) // no body verifies: the error lists why
	_, err := New(Options{}).VerifyAttestations(context.Background(), a, Request{Image: f.oversized.String()}, "spdx")
	expectReason(t, err, ReasonSignatureMismatch, a, f.oversized, fmt.Sprintf("more than the %d read", maxAttestationBytes))
}

// Keyless attestations from a VirtualSigstore, in both layouts.
func TestAttestationsKeyless(t *testing.T) {
	vs := newVirtualSigstore(t)
	reg := newTestRegistry(t)
	const provenance = "https://slsa.dev/provenance/v1"
	legacy := reg.pushImage(t, "keyless/att-legacy")
	verifytest.AttestKeylessLegacy(t, vs, legacy, ciSubject, ciIssuer, provenance, map[string]any{"builder": map[string]any{"id": "ci"}})
	bundled := reg.pushImage(t, "keyless/att-bundle")
	signKeylessBundle(t, vs, bundled, ciSubject, ciIssuer, provenance)
	signKeylessBundle(t, vs, bundled, ciSubject, ciIssuer, cosignSignPredicate) // a signature: skipped
	ci := Identity{Issuer: ciIssuer, Subject: ciSubject}
	other := Identity{Issuer: ciIssuer, Subject: "https://github.com/mallory/app"}
	for _, tc := range []struct {
		name    string
		spec    AuthoritySpec
		image   name.Digest
		want    Reason
		message string
	}{
		{"legacy", keylessSpec(vs, FormatLegacy, ci), legacy, "", ""},
		{"bundle", keylessSpec(vs, FormatBundle, ci), bundled, "", ""},
		{"legacy, wrong identity", keylessSpec(vs, FormatLegacy, other), legacy, ReasonIdentityMismatch, "none of the expected identities matched"},
		{"bundle, wrong identity", keylessSpec(vs, FormatBundle, other), bundled, ReasonIdentityMismatch, "none of the expected identities matched"},
		{"legacy, another trust root", keylessSpec(newVirtualSigstore(t), FormatLegacy, ci), legacy, ReasonSignatureMismatch, "no matching attestations"},
		{"bundle, another trust root", keylessSpec(newVirtualSigstore(t), FormatBundle, ci), bundled, ReasonSignatureMismatch, "no matching attestations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustCompile(t, tc.spec)
			ev, err := New(Options{}).VerifyAttestations(context.Background(), a, Request{Image: tc.image.String()}, "slsaprovenance1")
			if tc.want != "" {
				expectReason(t, err, tc.want, a, tc.image, tc.message)
				if !strings.Contains(err.Error(), "attestation keyless validation failed") {
					t.Errorf("message %q is not policy-controller's keyless attestation shape", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("want a pass: %v", err)
			}
			got := ev.ByType["slsaprovenance1"]
			if len(got) != 1 || len(ev.Attestations) != 1 || got[0].Subject != ciSubject || got[0].Issuer != ciIssuer {
				t.Fatalf("attestations %+v, want one provenance by %s", ev.Attestations, ciSubject)
			}
			checkVerifiedStatement(t, got[0], provenance, tc.image)
		})
	}
}

// Verified statements are cached by digest and authority, whatever types a
// caller asks for: a second caller asking for another type makes no
// registry request; a missing type is not cached.
func attestationsCached(t *testing.T, f *attestationFixture) {
	clock := &fakeClock{now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	v := New(Options{Now: clock.Now})
	a := mustCompile(t, keySpec(f.pub, FormatLegacy, nil))
	req := Request{Image: f.legacy.String()}
	first, err := v.VerifyAttestations(context.Background(), a, req, "vuln")
	if err != nil || first.Cached {
		t.Fatalf("first: cached %v, %v", first != nil && first.Cached, err)
	}
	before := f.reg.requests.Load()
	second, err := v.VerifyAttestations(context.Background(), a, req, "spdx")
	if err != nil || !second.Cached || len(second.ByType["spdx"]) != 1 || len(second.ByType["vuln"]) != 0 {
		t.Fatalf("second: %+v, %v", second, err)
	}
	if n := f.reg.requests.Load() - before; n != 0 {
		t.Errorf("a cached answer made %d registry requests", n)
	}
	if !second.ExpiresAt.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("expires at %s, want the pass TTL after %s", second.ExpiresAt, clock.Now())
	}
	// The type filter is not cached: asking for an absent type fails, and
	// the pass stays for the types that are there.
	if _, err := v.VerifyAttestations(context.Background(), a, req, "cyclonedx"); ReasonOf(err) != ReasonNoAttestations {
		t.Fatalf("absent type: %v", err)
	}
	if ev, err := v.VerifyAttestations(context.Background(), a, req, "vuln"); err != nil || !ev.Cached {
		t.Fatalf("after an absent type: %+v, %v", ev, err)
	}
	if v.attestations.size() < int64(len(first.ByType["vuln"][0].Statement)) {
		t.Errorf("cache size %d bytes does not count the statements", v.attestations.size())
	}
}
