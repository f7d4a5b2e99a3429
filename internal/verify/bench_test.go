package verify

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v3/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// benchOptions lift the rate limits: the benchmarks measure verification,
// not the limiter.
var benchOptions = Options{GlobalQPS: 1e9, GlobalBurst: 1 << 30, RegistryQPS: 1e9, RegistryBurst: 1 << 30}

// coldOptions are benchOptions with passes that expire at once: every call
// verifies.
var coldOptions = func() Options { o := benchOptions; o.PassTTL = time.Nanosecond; return o }()

// BenchmarkVerify measures one verification per image: cold (registry
// requests to an in-memory registry on loopback plus the cryptography; the
// cache is bypassed with Refresh) and cached, for key and keyless authorities
// in both layouts and legacy signatures that carry a log entry (ctlog) or a
// timestamp (rfc3161timestamp), beside cosign's own VerifyImageSignatures on
// the same signatures (cosign is a test-only dependency). Both use the same keychain.
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
	// ctlog and rfc3161timestamp: a key made here (cosign cannot log or
	// timestamp offline), the VirtualSigstore's log entry or timestamp.
	evidenceKey := newECDSAKey(b)
	evidencePub := publicPEM(b, evidenceKey.Public())
	keyLogged := reg.pushImage(b, "bench/key-legacy-logged")
	verifytest.SignKeyLegacy(b, evidenceKey, keyLogged, verifytest.Evidence{Log: vs})
	keyStamped := reg.pushImage(b, "bench/key-legacy-timestamped")
	verifytest.SignKeyLegacy(b, evidenceKey, keyStamped, verifytest.Evidence{TSA: vs})
	keylessStamped := reg.pushImage(b, "bench/keyless-legacy-timestamped")
	verifytest.SignKeylessLegacyWith(b, vs, keylessStamped, ciSubject, ciIssuer, verifytest.Evidence{TSA: vs})
	withEvidence := func(s AuthoritySpec, ctlog, tsa *RootRef) AuthoritySpec {
		s.CTLog, s.RFC3161Timestamp = ctlog, tsa
		return s
	}

	for _, c := range []struct {
		name  string
		spec  AuthoritySpec
		image name.Digest
	}{
		{"key-legacy", keySpec(pub, FormatLegacy, nil), keyLegacy},
		{"key-bundle", keySpec(pub, FormatBundle, nil), keyBundle},
		{"keyless-legacy", keylessSpec(vs, FormatLegacy, id), keylessLegacy},
		{"keyless-bundle", keylessSpec(vs, FormatBundle, id), keylessBundle},
		{"key-legacy-ctlog", withEvidence(keySpec(evidencePub, FormatLegacy, nil), rootOf(vs, "virtual"), nil), keyLogged},
		{"key-legacy-rfc3161timestamp", withEvidence(keySpec(evidencePub, FormatLegacy, nil), nil, rootOf(vs, "virtual")), keyStamped},
		{"keyless-legacy-rfc3161timestamp", withEvidence(keylessSpec(vs, FormatLegacy, id), nil, rootOf(vs, "virtual")), keylessStamped},
	} {
		a := mustCompile(b, c.spec)
		v := New(benchOptions)
		ctx := context.Background()
		b.Run(c.name+"/cold", func(b *testing.B) {
			v := New(coldOptions)
			req := Request{Image: c.image.String(), Keychain: staticKeychain{}}
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
	b.Run("cosign-VerifyImageSignatures/key-legacy-ctlog", func(b *testing.B) {
		sv, err := signature.LoadDefaultVerifier(evidenceKey.Public())
		if err != nil {
			b.Fatal(err)
		}
		// The log entry is checked offline against the VirtualSigstore's Rekor key.
		co := &cosign.CheckOpts{SigVerifier: sv, TrustedMaterial: vs, Offline: true}
		defer reportRequests(b, reg)()
		cosignVerify(b, keyLogged, co)
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

// BenchmarkVerifyLanes shows that background re-verification leaves room
// for admission: 4 background workers re-verify images without pause
// (Refresh, LaneBackground) against a limiter of 30 requests per second to
// the registry (burst 20, half of it kept for admission), while admission
// verifies another image cold every 250 ms (12 requests per second). It
// reports the admission latencies beside the same admission requests on an
// idle limiter, and the background lane's own latency and throughput.
//
//	go test -run '^$' -bench BenchmarkVerifyLanes -benchtime=1x ./internal/verify/
func BenchmarkVerifyLanes(b *testing.B) {
	const workers, admissions, every = 4, 20, 250 * time.Millisecond
	reg := newTestRegistry(b)
	vs := newVirtualSigstore(b)
	var images []string
	for i := range 1 + workers {
		d := reg.pushImage(b, fmt.Sprintf("lanes/app-%d", i))
		signKeylessLegacy(b, vs, d, ciSubject, ciIssuer)
		images = append(images, d.String())
	}
	a := mustCompile(b, keylessSpec(vs, FormatLegacy, Identity{Issuer: ciIssuer, Subject: ciSubject}))
	// Passes expire at once: every call verifies.
	opts := Options{GlobalQPS: 1e9, GlobalBurst: 1 << 30, RegistryQPS: 30, RegistryBurst: 20, PassTTL: time.Nanosecond}
	// admit verifies images[0] cold admissions times, paced, and returns
	// the latencies, sorted.
	admit := func(v *Verifier) []time.Duration {
		var took []time.Duration
		for range admissions {
			start := time.Now()
			if _, err := v.Verify(context.Background(), a, Request{Image: images[0], Keychain: staticKeychain{}, Lane: LaneAdmission}); err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
			time.Sleep(every - time.Since(start))
		}
		slices.Sort(took)
		return took
	}
	for range b.N {
		idle := admit(New(opts))

		v := New(opts)
		ctx, stop := context.WithCancel(context.Background())
		var done atomic.Int64
		var busy atomic.Int64 // nanoseconds spent in background verifications
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				// An image per worker: no two share a verification.
				req := Request{Image: images[1+w], Keychain: staticKeychain{}, Lane: LaneBackground}
				for ctx.Err() == nil {
					start := time.Now()
					if _, err := v.Verify(ctx, a, req); err != nil {
						if ctx.Err() == nil {
							b.Error(err)
						}
						return
					}
					done.Add(1)
					busy.Add(int64(time.Since(start)))
				}
			})
		}
		time.Sleep(2 * time.Second) // the background drains the bucket to the reserve
		began, before, requests := time.Now(), done.Load(), reg.requests.Load()
		loaded := admit(v)
		window := time.Since(began).Seconds()
		rate := float64(done.Load()-before) / window
		b.ReportMetric(float64(reg.requests.Load()-requests)/window, "registry-requests/s")
		stop()
		wg.Wait()

		q := func(d []time.Duration, p float64) float64 { return ms(d[int(p*float64(len(d)-1))]) }
		b.ReportMetric(q(idle, 0.5), "idle-admission-p50-ms")
		b.ReportMetric(q(idle, 1), "idle-admission-max-ms")
		b.ReportMetric(q(loaded, 0.5), "admission-p50-ms")
		b.ReportMetric(q(loaded, 1), "admission-max-ms")
		b.ReportMetric(rate, "background-verifications/s")
		b.ReportMetric(ms(time.Duration(busy.Load()/max(done.Load(), 1))), "background-mean-ms")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
