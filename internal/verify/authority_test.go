package verify

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func publicPEM(t testing.TB, pub any) []byte {
	t.Helper()
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The fingerprint changes with everything verification depends on, and
// only with that.
func TestFingerprint(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	vs, _ := ca.NewVirtualSigstore()
	vs2, _ := ca.NewVirtualSigstore()
	id := Identity{Issuer: ciIssuer, Subject: ciSubject}
	key := func(pem []byte, hash string, src *SourceSpec) AuthoritySpec {
		return AuthoritySpec{Name: "k", Key: &KeySpec{PEM: pem, HashAlgorithm: hash}, Source: src}
	}
	keyless := func(root *ca.VirtualSigstore, ids ...Identity) AuthoritySpec {
		s := keylessSpec(root, FormatLegacy, ids...)
		s.Name = "k"
		return s
	}
	base := key(publicPEM(t, ec.Public()), "", nil)
	same := []AuthoritySpec{
		key(publicPEM(t, ec.Public()), "sha256", nil),
		{Name: "another name", Key: base.Key},
	}
	different := map[string]AuthoritySpec{
		"key":                  key(publicPEM(t, ec2.Public()), "", nil),
		"hashAlgorithm":        key(base.Key.PEM, "sha512", nil),
		"format":               {Name: "k", Key: base.Key, SignatureFormat: FormatBundle},
		"source":               key(base.Key.PEM, "", &SourceSpec{OCI: "example.com/sigs"}),
		"tagPrefix":            key(base.Key.PEM, "", &SourceSpec{OCI: "example.com/sigs", TagPrefix: "v1-"}),
		"signaturePullSecrets": key(base.Key.PEM, "", &SourceSpec{OCI: "example.com/sigs", SignaturePullSecrets: []string{"regcred"}}),
		"keyless":              keyless(vs, id),
		// The log and TSA material: a changed TrustRoot misses the cache.
		"ctlog":                           {Name: "k", Key: base.Key, CTLog: rootOf(vs, "virtual")},
		"ctlog of another log":            {Name: "k", Key: base.Key, CTLog: rootOf(vs2, "virtual")},
		"rfc3161timestamp":                {Name: "k", Key: base.Key, RFC3161Timestamp: rootOf(vs, "virtual")},
		"rfc3161timestamp of another TSA": {Name: "k", Key: base.Key, RFC3161Timestamp: rootOf(vs2, "virtual")},
		"ctlog and rfc3161timestamp":      {Name: "k", Key: base.Key, CTLog: rootOf(vs, "virtual"), RFC3161Timestamp: rootOf(vs, "virtual")},
	}
	fp := mustCompile(t, base).Fingerprint()
	for i, s := range same {
		if got := mustCompile(t, s).Fingerprint(); got != fp {
			t.Errorf("same[%d]: fingerprint changed", i)
		}
	}
	seen := map[string]string{fp: "base"}
	for what, s := range different {
		got := mustCompile(t, s).Fingerprint()
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: same fingerprint as %s", what, prev)
		}
		seen[got] = what
	}
	k1 := mustCompile(t, keyless(vs, id)).Fingerprint()
	if mustCompile(t, keyless(vs, id)).Fingerprint() != k1 {
		t.Error("keyless fingerprint is not stable")
	}
	if mustCompile(t, keyless(vs2, id)).Fingerprint() == k1 {
		t.Error("another trust root has the same fingerprint")
	}
	if mustCompile(t, keyless(vs, Identity{Issuer: ciIssuer, SubjectRegExp: ".*"})).Fingerprint() == k1 {
		t.Error("another identity has the same fingerprint")
	}
	swapped := keyless(vs, id)
	swapped.Keyless.InsecureIgnoreSCT = false
	if mustCompile(t, swapped).Fingerprint() == k1 {
		t.Error("insecureIgnoreSCT does not change the fingerprint")
	}
	for what, set := range map[string]func(*AuthoritySpec){
		"ctlog":            func(s *AuthoritySpec) { s.CTLog = rootOf(vs2, "other") },
		"rfc3161timestamp": func(s *AuthoritySpec) { s.RFC3161Timestamp = rootOf(vs2, "other") },
	} {
		s := keyless(vs, id)
		set(&s)
		if mustCompile(t, s).Fingerprint() == k1 {
			t.Errorf("keyless with the %s of another root has the same fingerprint", what)
		}
	}
}

// Compile accepts ECDSA, RSA and ed25519 keys and names the field of bad input.
func TestCompile(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, pub := range []any{ec.Public(), rk.Public(), ed} {
		for _, h := range []string{"sha224", "sha256", "sha384", "sha512"} {
			_, err := Compile(AuthoritySpec{Name: "a", Key: &KeySpec{PEM: publicPEM(t, pub), HashAlgorithm: h}})
			if _, isRSA := pub.(*rsa.PublicKey); isRSA && h == "sha224" {
				// sigstore's RSA verifiers (and so cosign's) refuse SHA-224.
				if err == nil || !strings.Contains(err.Error(), `key.hashAlgorithm: sha224 with a rsa key`) {
					t.Errorf("RSA with sha224: %v", err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%T %s: %v", pub, h, err)
			}
		}
	}
	good := publicPEM(t, ec.Public())
	empty := &TrustRoot{Name: "empty", Material: &root.BaseTrustedMaterial{}}
	for _, tc := range []struct {
		spec AuthoritySpec
		want string
	}{
		{AuthoritySpec{Name: "a"}, `authority "a": key, keyless: expected exactly one, got neither`},
		{AuthoritySpec{Name: "a", Key: &KeySpec{PEM: good}, Keyless: &KeylessSpec{}}, "expected exactly one, got both"},
		{AuthoritySpec{Name: "a", Key: &KeySpec{PEM: []byte("nope")}}, `authority "a": key.data: no PEM public key found`},
		{AuthoritySpec{Name: "a", Key: &KeySpec{PEM: good, HashAlgorithm: "md5"}}, `key.hashAlgorithm: "md5" is not one of`},
		{AuthoritySpec{Name: "a", Key: &KeySpec{PEM: good}, SignatureFormat: "v2"}, `signatureFormat: "v2" is not one of legacy, bundle`},
		{AuthoritySpec{Name: "a", Key: &KeySpec{PEM: good}, Source: &SourceSpec{OCI: "registry.example.com/repo/*"}}, "source[0].oci: repository can only contain"},
		{AuthoritySpec{Name: "a", Keyless: &KeylessSpec{}}, "keyless.identities: missing field(s)"},
		{AuthoritySpec{Name: "a", Keyless: &KeylessSpec{Identities: []Identity{{Issuer: "x", SubjectRegExp: "****"}}}}, "keyless.identities[0]"},
		{AuthoritySpec{Name: "a", Key: &KeySpec{PEM: good}, CTLog: &RootRef{TrustRoot: empty}},
			`authority "a": ctlog.trustRootRef: trustroot "empty" holds no transparency log keys (tLogs)`},
		{AuthoritySpec{Name: "a", Key: &KeySpec{PEM: good}, RFC3161Timestamp: &RootRef{TrustRoot: empty}},
			`authority "a": rfc3161timestamp.trustRootRef: trustroot "empty" holds no timestamp authorities (timestampAuthorities)`},
	} {
		_, err := Compile(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%+v) = %v, want %q", tc.spec, err, tc.want)
		}
	}
	// A trust root that cannot serve is the TrustRoot's problem, not the
	// policy's: the caller can tell (policy: ReferenceUnavailable).
	for field, spec := range map[string]AuthoritySpec{
		"ctlog.trustRootRef":            {Name: "a", Key: &KeySpec{PEM: good}, CTLog: &RootRef{TrustRoot: empty}},
		"rfc3161timestamp.trustRootRef": {Name: "a", Key: &KeySpec{PEM: good}, RFC3161Timestamp: &RootRef{TrustRoot: empty}},
	} {
		_, err := Compile(spec)
		if re := (*RootError)(nil); !errors.As(err, &re) || re.Field != field {
			t.Errorf("%s: %v is not a RootError of that field", field, err)
		}
	}
}
