package verify

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// keyFixture: images signed by the real cosign CLI with a generated key,
// in both formats, in another repository, and in one that needs a login.
type keyFixture struct {
	reg                                  *testRegistry
	pub, otherPub                        []byte
	legacy, bundled, tampered, elsewhere name.Digest
	prefixed, private, unsigned          name.Digest
	sigs, prefixedSigs, privateSigs      string
}

func newKeyFixture(t *testing.T) *keyFixture {
	t.Helper()
	cosign := cosignBinary(t)
	f := &keyFixture{reg: newTestRegistry(t)}
	key, pub := cosignKey(t, cosign)
	_, other := cosignKey(t, cosign)
	f.pub, f.otherPub = pub, other
	host := f.reg.host
	f.sigs, f.prefixedSigs, f.privateSigs = host+"/sigs", host+"/prefixed", host+"/private/sigs"

	f.legacy = f.reg.pushImage(t, "signed/legacy")
	cosignSign(t, cosign, key, f.legacy, FormatLegacy)
	f.bundled = f.reg.pushImage(t, "signed/bundle")
	cosignSign(t, cosign, key, f.bundled, FormatBundle)
	f.elsewhere = f.reg.pushImage(t, "signed/elsewhere")
	cosignSign(t, cosign, key, f.elsewhere, FormatLegacy, "COSIGN_REPOSITORY="+f.sigs)
	f.private = f.reg.pushImage(t, "signed/private")
	cosignSign(t, cosign, key, f.private, FormatLegacy, "COSIGN_REPOSITORY="+f.privateSigs)
	f.unsigned = f.reg.pushImage(t, "unsigned")

	// A signature of legacy copied to another image's tag: valid
	// cryptography over a payload that names another digest.
	f.tampered = f.reg.pushImage(t, "signed/tampered")
	copySignatures(t, f.legacy, f.tampered, f.tampered.Context(), "")
	// tagPrefix: the signature under "v1-sha256-<hex>.sig" in another repository.
	f.prefixed = f.reg.pushImage(t, "signed/prefixed")
	cosignSign(t, cosign, key, f.prefixed, FormatLegacy)
	prefixedRepo, err := name.NewRepository(f.prefixedSigs)
	if err != nil {
		t.Fatal(err)
	}
	copySignatures(t, f.prefixed, f.prefixed, prefixedRepo, "v1-")
	return f
}

func keySpec(pub []byte, format SignatureFormat, src *SourceSpec) AuthoritySpec {
	return AuthoritySpec{Name: "release-key", Key: &KeySpec{PEM: pub}, SignatureFormat: format, Source: src}
}

// Key authorities against signatures written by the real cosign CLI.
func TestKeyCosign(t *testing.T) {
	f := newKeyFixture(t)
	both := append(append([]byte{}, f.otherPub...), f.pub...)
	sha512 := keySpec(f.pub, FormatLegacy, nil)
	sha512.Key = &KeySpec{PEM: f.pub, HashAlgorithm: "sha512"}
	for _, tc := range []struct {
		name     string
		spec     AuthoritySpec
		image    name.Digest
		keychain authn.Keychain // for the signature repository
		want     Reason
		message  string
	}{
		{"legacy pass", keySpec(f.pub, FormatLegacy, nil), f.legacy, nil, "", ""},
		{"bundle pass", keySpec(f.pub, FormatBundle, nil), f.bundled, nil, "", ""},
		{"any of several keys", keySpec(both, FormatLegacy, nil), f.legacy, nil, "", ""},
		{"legacy wrong key", keySpec(f.otherPub, FormatLegacy, nil), f.legacy, nil, ReasonSignatureMismatch, "no matching signatures"},
		{"bundle wrong key", keySpec(f.otherPub, FormatBundle, nil), f.bundled, nil, ReasonSignatureMismatch, "no matching signatures"},
		{"hashAlgorithm applies", sha512, f.legacy, nil, ReasonSignatureMismatch, "no matching signatures"},
		{"tampered digest", keySpec(f.pub, FormatLegacy, nil), f.tampered, nil, ReasonSignatureMismatch, "signature payload is for digest \"" + f.legacy.DigestStr()},
		{"unsigned", keySpec(f.pub, FormatLegacy, nil), f.unsigned, nil, ReasonNoSignatures, "no signatures found"},
		{"unsigned bundle", keySpec(f.pub, FormatBundle, nil), f.unsigned, nil, ReasonNoSignatures, "no signatures found"},
		{"legacy authority, bundle signature", keySpec(f.pub, FormatLegacy, nil), f.bundled, nil, ReasonNoSignatures, "no signatures found"},
		{"bundle authority, legacy signature", keySpec(f.pub, FormatBundle, nil), f.legacy, nil, ReasonNoSignatures, "no signatures found"},
		{"signature elsewhere, no source", keySpec(f.pub, FormatLegacy, nil), f.elsewhere, nil, ReasonNoSignatures, "no signatures found"},
		{"source.oci", keySpec(f.pub, FormatLegacy, &SourceSpec{OCI: f.sigs}), f.elsewhere, nil, "", ""},
		{"tagPrefix", keySpec(f.pub, FormatLegacy, &SourceSpec{OCI: f.prefixedSigs, TagPrefix: "v1-"}), f.prefixed, nil, "", ""},
		{"tagPrefix missing", keySpec(f.pub, FormatLegacy, &SourceSpec{OCI: f.prefixedSigs}), f.prefixed, nil, ReasonNoSignatures, "no signatures found"},
		{"signaturePullSecrets", keySpec(f.pub, FormatLegacy, &SourceSpec{OCI: f.privateSigs, SignaturePullSecrets: []string{"regcred"}}), f.private, staticKeychain{}, "", ""},
		{"signaturePullSecrets missing", keySpec(f.pub, FormatLegacy, &SourceSpec{OCI: f.privateSigs}), f.private, nil, ReasonUnauthorized, "access denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustCompile(t, tc.spec)
			ev, err := New(Options{}).Verify(context.Background(), a, Request{Image: tc.image.String(), SignatureKeychain: tc.keychain})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want a pass: %v", err)
				}
				if ev.Image.String() != tc.image.String() || len(ev.Signatures) == 0 || ev.Signatures[0].ID == "" {
					t.Fatalf("evidence %+v", ev)
				}
				return
			}
			expectReason(t, err, tc.want, a, tc.image, tc.message)
			if !strings.Contains(err.Error(), "signature key validation failed for authority release-key for "+tc.image.String()) {
				t.Errorf("message %q is not policy-controller's key shape", err)
			}
		})
	}
}
