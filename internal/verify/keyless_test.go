package verify

import (
	"context"
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/testing/ca"
)

const (
	ciIssuer  = "https://token.actions.example.com"
	ciSubject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
)

func keylessSpec(vs *ca.VirtualSigstore, format SignatureFormat, ids ...Identity) AuthoritySpec {
	return AuthoritySpec{
		Name:            "keyless-ci",
		SignatureFormat: format,
		Keyless: &KeylessSpec{
			Identities:        ids,
			TrustRoot:         &TrustRoot{Name: "virtual", Material: vs},
			InsecureIgnoreSCT: true, // VirtualSigstore's leaf certificates carry no SCT
		},
	}
}

// Keyless signatures made by a VirtualSigstore, in both layouts, pass an
// authority with a matching identity (exact or regexp) and fail one with
// another issuer or subject.
func TestKeyless(t *testing.T) {
	f := newKeylessImages(t)
	vs, reg, legacy, bundled := f.vs, f.reg, f.legacy, f.bundled
	attestedOnly := reg.pushImage(t, "keyless/attested")
	signKeylessBundle(t, vs, attestedOnly, ciSubject, ciIssuer, "https://slsa.dev/provenance/v1")

	exact := Identity{Issuer: ciIssuer, Subject: ciSubject}
	regexp := Identity{IssuerRegExp: `^https://token\.actions\.example\.com$`, SubjectRegExp: `^https://github\.com/acme/.*@refs/heads/main$`}
	otherIssuer := Identity{Issuer: "https://accounts.example.org", Subject: ciSubject}
	otherSubject := Identity{Issuer: ciIssuer, Subject: "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main"}
	otherSubjectRE := Identity{Issuer: ciIssuer, SubjectRegExp: `^https://github\.com/evil/`}
	otherIssuerRE := Identity{IssuerRegExp: `^https://accounts\.`, SubjectRegExp: `.*`}

	for _, img := range []struct {
		format SignatureFormat
		digest string
	}{{FormatLegacy, legacy.String()}, {FormatBundle, bundled.String()}} {
		for _, tc := range []struct {
			name string
			ids  []Identity
			want Reason // "" = pass
		}{
			{"exact identity", []Identity{exact}, ""},
			{"regexp identity", []Identity{regexp}, ""},
			{"any of several identities", []Identity{otherIssuer, exact}, ""},
			{"wrong issuer", []Identity{otherIssuer}, ReasonIdentityMismatch},
			{"wrong subject", []Identity{otherSubject}, ReasonIdentityMismatch},
			{"wrong subject regexp", []Identity{otherSubjectRE}, ReasonIdentityMismatch},
			{"wrong issuer regexp", []Identity{otherIssuerRE}, ReasonIdentityMismatch},
		} {
			t.Run(string(img.format)+"/"+tc.name, func(t *testing.T) {
				a := mustCompile(t, keylessSpec(vs, img.format, tc.ids...))
				v := New(Options{})
				ev, err := v.Verify(context.Background(), a, Request{Image: img.digest})
				if tc.want == "" {
					if err != nil {
						t.Fatalf("want a pass: %v", err)
					}
					if len(ev.Signatures) != 1 || ev.Signatures[0].Subject != ciSubject || ev.Signatures[0].Issuer != ciIssuer || ev.Signatures[0].Format != img.format {
						t.Fatalf("evidence %+v", ev.Signatures)
					}
					return
				}
				d := mustDigest(t, img.digest)
				expectReason(t, err, tc.want, a, d, "no matching signatures: none of the expected identities matched what was in the certificate, got subjects ["+ciSubject+"] with issuer "+ciIssuer)
				if !strings.Contains(err.Error(), "signature keyless validation failed") {
					t.Errorf("message %q is not policy-controller's keyless shape", err)
				}
			})
		}
	}

	t.Run("an attestation is not a signature", func(t *testing.T) {
		a := mustCompile(t, keylessSpec(vs, FormatBundle, exact))
		_, err := New(Options{}).Verify(context.Background(), a, Request{Image: attestedOnly.String()})
		expectReason(t, err, ReasonSignatureMismatch, a, attestedOnly, "not a signature")
	})
	t.Run("a legacy authority does not read bundles", func(t *testing.T) {
		a := mustCompile(t, keylessSpec(vs, FormatLegacy, exact))
		_, err := New(Options{}).Verify(context.Background(), a, Request{Image: bundled.String()})
		expectReason(t, err, ReasonNoSignatures, a, bundled, "no signatures found")
	})
	t.Run("another trust root", func(t *testing.T) {
		other, err := ca.NewVirtualSigstore()
		if err != nil {
			t.Fatal(err)
		}
		a := mustCompile(t, keylessSpec(other, FormatLegacy, exact))
		_, err = New(Options{}).Verify(context.Background(), a, Request{Image: legacy.String()})
		expectReason(t, err, ReasonSignatureMismatch, a, legacy, "no matching signatures")
	})
	t.Run("an SCT is required unless insecureIgnoreSCT", func(t *testing.T) {
		spec := keylessSpec(vs, FormatLegacy, exact)
		spec.Keyless.InsecureIgnoreSCT = false
		a := mustCompile(t, spec)
		_, err := New(Options{}).Verify(context.Background(), a, Request{Image: legacy.String()})
		expectReason(t, err, ReasonSignatureMismatch, a, legacy, "signed certificate timestamp")
	})
	t.Run("missing trust root is an error, never a pass", func(t *testing.T) {
		spec := keylessSpec(vs, FormatLegacy, exact)
		spec.Keyless.TrustRoot = nil
		a := mustCompile(t, spec)
		before := reg.requests.Load()
		_, err := New(Options{}).Verify(context.Background(), a, Request{Image: legacy.String()})
		expectReason(t, err, ReasonMissingTrustRoot, a, legacy, "no trust root")
		if ReasonOf(err).Verdict() {
			t.Error("a missing trust root must not be a verdict")
		}
		if n := reg.requests.Load() - before; n != 0 {
			t.Errorf("%d registry requests without a trust root", n)
		}
	})
}
