package verify

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v3/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// benchOptions lift the rate limits: the benchmarks measure verification,
// not the limiter.
var benchOptions = Options{GlobalQPS: 1e9, GlobalBurst: 1 << 30, RegistryQPS: 1e9, RegistryBurst: 1 << 30}

// BenchmarkVerify measures one verification per image: cold (registry
// requests to an in-memory registry on loopback plus the cryptography; the
// cache is bypassed with Refresh) and cached, for key and keyless authorities
// in both layouts, beside cosign's own VerifyImageSignatures on the same
// signatures (cosign is a test-only dependency). Both use the same keychain.
// Each line reports the registry requests it made per verification
// (requests/op): a cold verification asks the registry every time, a cached
// one never does.
func BenchmarkVerify(b *testing.B) {
	bin := cosignBinary(b)
	reg := newTestRegistry(b)
	key, pub := cosignKey(b, bin)
	keyLegacy := reg.pushImage(b, "bench/key-legacy")
	cosignSign(b, bin, key, keyLegacy, FormatLegacy)
	keyBundle := reg.pushImage(b, "bench/key-bundle")
	cosignSign(b, bin, key, keyBundle, FormatBundle)
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		b.Fatal(err)
	}
	keylessLegacy := reg.pushImage(b, "bench/keyless-legacy")
	signKeylessLegacy(b, vs, keylessLegacy, ciSubject, ciIssuer)
	keylessBundle := reg.pushImage(b, "bench/keyless-bundle")
	signKeylessBundle(b, vs, keylessBundle, ciSubject, ciIssuer, cosignSignPredicate)
	id := Identity{Issuer: ciIssuer, Subject: ciSubject}

	for _, c := range []struct {
		name  string
		spec  AuthoritySpec
		image name.Digest
	}{
		{"key-legacy", keySpec(pub, FormatLegacy, nil), keyLegacy},
		{"key-bundle", keySpec(pub, FormatBundle, nil), keyBundle},
		{"keyless-legacy", keylessSpec(vs, FormatLegacy, id), keylessLegacy},
		{"keyless-bundle", keylessSpec(vs, FormatBundle, id), keylessBundle},
	} {
		a := mustCompile(b, c.spec)
		v := New(benchOptions)
		ctx := context.Background()
		b.Run(c.name+"/cold", func(b *testing.B) {
			req := Request{Image: c.image.String(), Keychain: staticKeychain{}, Refresh: true}
			defer reportRequests(b, reg)()
			for b.Loop() {
				if _, err := v.Verify(ctx, a, req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/cached", func(b *testing.B) {
			req := Request{Image: c.image.String(), Keychain: staticKeychain{}}
			if _, err := v.Verify(ctx, a, req); err != nil {
				b.Fatal(err)
			}
			defer reportRequests(b, reg)()
			for b.Loop() {
				if _, err := v.Verify(ctx, a, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	b.Run("cosign-VerifyImageSignatures/key-legacy", func(b *testing.B) {
		pk, err := cryptoutils.UnmarshalPEMToPublicKey(pub)
		if err != nil {
			b.Fatal(err)
		}
		sv, err := signature.LoadDefaultVerifier(pk)
		if err != nil {
			b.Fatal(err)
		}
		co := &cosign.CheckOpts{
			SigVerifier: sv,
			IgnoreTlog:  true,
		}
		defer reportRequests(b, reg)()
		cosignVerify(b, keyLegacy, co)
	})
	b.Run("cosign-VerifyImageSignatures/keyless-legacy", func(b *testing.B) {
		co := &cosign.CheckOpts{
			TrustedMaterial: vs,
			Identities:      []cosign.Identity{{Issuer: ciIssuer, Subject: ciSubject}},
			IgnoreSCT:       true,
		}
		defer reportRequests(b, reg)()
		cosignVerify(b, keylessLegacy, co)
	})
}

func cosignVerify(b *testing.B, d name.Digest, co *cosign.CheckOpts) {
	co.ClaimVerifier = cosign.SimpleClaimVerifier
	co.RegistryClientOpts = []ociremote.Option{ociremote.WithRemoteOptions(remote.WithAuthFromKeychain(staticKeychain{}))}
	for b.Loop() {
		if _, _, err := cosign.VerifyImageSignatures(context.Background(), d, co); err != nil {
			b.Fatal(err)
		}
	}
}

// reportRequests reports, when the returned func runs after the benchmark
// loop, the registry's requests per iteration since it was called.
func reportRequests(b *testing.B, reg *testRegistry) func() {
	before := reg.requests.Load()
	return func() {
		b.ReportMetric(float64(reg.requests.Load()-before)/float64(b.N), "requests/op")
	}
}
