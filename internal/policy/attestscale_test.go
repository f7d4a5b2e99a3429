package policy

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// Attestations at the scale of a cluster (issue 18), measured rather than
// derived: pods over images whose attestations are large SBOMs, and the
// judgements a policy that reads the clock costs.
//
//	go test -run '^$' -bench BenchmarkAttestationScale -benchtime=1x -timeout 30m ./internal/policy/

const (
	cycloneDXType = "https://cyclonedx.org/bom"
	vulnType      = "https://cosign.sigstore.dev/attestation/vuln/v1"
)

// attestScale is images in an in-memory registry, each attested keyless
// (VirtualSigstore, cosign's legacy .att layout) with one statement, and a
// compiler that knows the VirtualSigstore's TrustRoot.
type attestScale struct {
	fanOut // the registry, the compiler, the pods and digests, the verification count
}

// newAttestScale pushes images images and attests each with predicate(i)
// of predicateType; replicas pods per image are made later, on demand.
func newAttestScale(tb testing.TB, images int, predicateType string, predicate func(i int) any) *attestScale {
	tb.Helper()
	s := &attestScale{fanOut: fanOut{reg: verifytest.NewRegistry(tb)}}
	vs := verifytest.NewVirtualSigstore(tb)
	root := verify.TrustRoot{Name: "ci-root", Material: vs}
	s.compiler = Compiler{TrustRoot: func(n string) (*verify.TrustRoot, error) {
		if n == root.Name {
			return &root, nil
		}
		return nil, fmt.Errorf("trustroot %q not found", n)
	}}
	for i := range images {
		d := s.reg.PushImage(tb, fmt.Sprintf("team-%d/svc-%03d", i%7, i))
		verifytest.AttestKeylessLegacy(tb, vs, d, sigSubject, sigIssuer, predicateType, predicate(i))
		s.digests = append(s.digests, map[string]string{"spec.containers[0].image": d.String()})
	}
	return s
}

// policy is a policy of the registry's images whose keyless authority
// judges attestations of predicateType with body (typ: cue or rego).
func (s *attestScale) policy(tb testing.TB, short, typ, body string) *Set {
	tb.Helper()
	auth := keylessAuth("ci-root", firstIdentity)
	auth.Attestations = []v1beta1.Attestation{{Name: "check", PredicateType: short,
		Policy: &v1beta1.Policy{Type: typ, Data: body}}}
	p, err := s.compiler.Compile(newCIP("attested", withGlobs(s.reg.Host+"/**"), withAuthorities(auth)))
	if err != nil {
		tb.Fatal(err)
	}
	return NewSet([]*CompiledPolicy{p}, nil)
}

// judge decides pods from..to (pod n runs image n % images), each made when
// it is judged and dropped after, as the verify path holds no pod, and
// returns how many were denied.
func (s *attestScale) judge(tb testing.TB, set *Set, v Verifier, from, to int) int {
	tb.Helper()
	denied := 0
	for n := from; n < to; n++ {
		i := n % len(s.digests)
		digest := s.digests[i]["spec.containers[0].image"]
		repo, _, _ := strings.Cut(digest, "@")
		pod := obj(tb, fanOutPod(i, n, repo+":latest"))
		vf := Verification{Verifier: v, Keychain: verifytest.Keychain{}, Lane: verify.LaneBackground, Refresh: true, Digests: s.digests[i]}
		if d := set.Decide(context.Background(), pod, Options{Verification: vf}); !d.Allowed {
			if denied++; denied == 1 {
				tb.Logf("pod %d denied: %s", n, d.DenyMessage)
			}
		}
	}
	return denied
}

// liveHeap is the heap in use after two collections, in bytes.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// rss is the process's resident set from /proc (0 where there is none).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// sbomPredicate is a CycloneDX document of about size bytes of JSON.
func sbomPredicate(size int) func(int) any {
	return func(i int) any {
		var comps []map[string]any
		for n := 0; n < size; n += 120 {
			c := len(comps)
			comps = append(comps, map[string]any{"type": "library", "name": fmt.Sprintf("pkg-%03d-%06d", i, c),
				"version": "1.2.3", "purl": fmt.Sprintf("pkg:golang/example.com/pkg-%06d@v1.2.3", c)})
		}
		return map[string]any{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": comps}
	}
}

// BenchmarkAttestationScale:
//
//   - sbom-1MiB: 100 images, each attested with a 1 MiB CycloneDX SBOM,
//     judged by a CUE attestation policy over the SBOM through one shared
//     verifier: 1,000 pods (10 per image), then 9,000 more (10,000 in all).
//     It reports the live heap the verifier and the decision keep after each
//     (above the registry's own, measured before), the RSS, the verifications
//     and registry requests. The claim it checks: the SBOMs are held once
//     per digest, so 10,000 pods cost what 1,000 do.
//   - scan-age-clock: 100 images attested with a vulnerability scan a day
//     old, judged by the catalog's maximum-scan-age Rego (it reads the
//     clock, so it is evaluated at every judgement, as a time recheck does),
//     10,000 pods timed after one warm round: the CPU of a judgement, its
//     allocations and the registry requests (none while the passes stand).
func BenchmarkAttestationScale(b *testing.B) {
	const images = 100
	b.Run("sbom-1MiB", func(b *testing.B) {
		s := newAttestScale(b, images, cycloneDXType, sbomPredicate(1<<20))
		set := s.policy(b, "cyclonedx", v1beta1.PolicyTypeCUE, `predicate: {bomFormat: "CycloneDX", components: [...{name: string}]}`)
		for range b.N {
			base, baseRSS := liveHeap(), rss()
			v := verify.New(verify.Options{GlobalQPS: 1e9, GlobalBurst: 1 << 30, RegistryQPS: 1e9, RegistryBurst: 1 << 30, Observer: s})
			reqs, vers := s.reg.Requests.Load(), s.verified.Load()
			start := time.Now()
			if denied := s.judge(b, set, v, 0, 1000); denied != 0 {
				b.Fatalf("%d of 1,000 pods denied", denied)
			}
			cold := time.Since(start)
			heap1k := liveHeap()
			if denied := s.judge(b, set, v, 1000, 10000); denied != 0 {
				b.Fatalf("%d of 9,000 pods denied", denied)
			}
			heap10k, rss10k := liveHeap(), rss()
			b.ReportMetric(float64(heap1k-base)/(1<<20), "heap-MiB-1k-pods")
			b.ReportMetric(float64(heap10k-base)/(1<<20), "heap-MiB-10k-pods")
			b.ReportMetric(float64(rss10k-baseRSS)/(1<<20), "rss-growth-MiB")
			b.ReportMetric(float64(s.verified.Load()-vers), "verifications")
			b.ReportMetric(float64(s.reg.Requests.Load()-reqs), "registry-requests")
			b.ReportMetric(cold.Seconds(), "first-1k-pods-s")
			b.Logf("base heap %.0f MiB (the registry's blobs), RSS %.0f MiB before", float64(base)/(1<<20), float64(baseRSS)/(1<<20))
			runtime.KeepAlive(v)
		}
	})
	b.Run("scan-age-clock", func(b *testing.B) {
		made := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
		s := newAttestScale(b, images, vulnType, func(int) any {
			return map[string]any{"metadata": map[string]any{"scanFinishedOn": made}, "scanner": map[string]any{"result": map[string]any{}}}
		})
		set := s.policy(b, "vuln", v1beta1.PolicyTypeRego, scanAgeRego(15*24*time.Hour))
		v := verify.New(verify.Options{GlobalQPS: 1e9, GlobalBurst: 1 << 30, RegistryQPS: 1e9, RegistryBurst: 1 << 30, Observer: s})
		if denied := s.judge(b, set, v, 0, 10000); denied != 0 { // the verifications, the turns
			b.Fatalf("%d of 10,000 pods denied", denied)
		}
		reqs := s.reg.Requests.Load()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if denied := s.judge(b, set, v, 0, 10000); denied != 0 {
				b.Fatalf("%d of 10,000 pods denied", denied)
			}
		}
		b.StopTimer()
		perJudgement := float64(b.Elapsed().Nanoseconds()) / float64(b.N*10000)
		b.ReportMetric(perJudgement, "ns/judgement")
		b.ReportMetric(float64(s.reg.Requests.Load()-reqs)/float64(b.N), "registry-requests/round")
		// At --clock-recheck 5m every pod is judged once in 5 minutes.
		b.ReportMetric(10000.0/5, "judgements/min")
		b.ReportMetric(perJudgement*10000/5/1e9, "cpu-s/min")
	})
}

// BenchmarkDecideCold is one pod judged through Set.Decide with nothing
// cached: a new verifier (no verified signature or statement) and the policy
// compiled again (no attestation policy result) before each judgement, both
// outside the timer. Side by side in one run: key and keyless authorities,
// each with signatures only and with an attestation policy in CUE and in Rego
// over the same 1 MiB CycloneDX SBOM, a key authority reading the SBOM from a
// sigstore bundle, and CUE and Rego over SBOMs of 256 KiB and 4 MiB (how the
// cost grows with the document). Key signatures and attestations are written
// by the real cosign CLI, keyless ones through VirtualSigstore (legacy layout).
//
//	go test -run '^$' -bench BenchmarkDecideCold -benchtime=10x ./internal/policy/
func BenchmarkDecideCold(b *testing.B) {
	const (
		cueSBOM  = `predicate: {bomFormat: "CycloneDX", components: [...{name: string}]}`
		regoSBOM = `package sigstore
isCompliant {
  input.predicate.bomFormat == "CycloneDX"
  not unnamed
}
unnamed {
  c := input.predicate.components[_]
  not is_string(c.name)
}
`
	)
	sbom := sbomPredicate(1 << 20)(0)
	s := newAttestScale(b, 0, cycloneDXType, nil) // the registry and the keyless trust root
	cosign := verifytest.RegistryCosign(b)
	key, pub := cosign.GenerateKey(b)
	keyLegacy := s.reg.PushImage(b, "cold/key-legacy")
	cosign.Sign(b, key, keyLegacy, false)
	cosign.Attest(b, key, keyLegacy, false, "cyclonedx", sbom)
	keyBundle := s.reg.PushImage(b, "cold/key-bundle")
	cosign.Sign(b, key, keyBundle, true)
	cosign.Attest(b, key, keyBundle, true, "cyclonedx", sbom)
	root, err := s.compiler.TrustRoot("ci-root")
	if err != nil {
		b.Fatal(err)
	}
	vs := root.Material.(*ca.VirtualSigstore)
	keyless := s.reg.PushImage(b, "cold/keyless")
	verifytest.SignKeylessLegacy(b, vs, keyless, sigSubject, sigIssuer)
	verifytest.AttestKeylessLegacy(b, vs, keyless, sigSubject, sigIssuer, cycloneDXType, sbom)

	bundled := keyAuth(pub)
	bundled.SignatureFormat = "bundle"
	type benchCase struct {
		name  string
		auth  v1beta1.Authority
		image name.Digest
		typ   string // the attestation policy's language; "" is signatures only
		body  string
	}
	var sized []benchCase // how the cost grows with the SBOM
	for _, size := range []struct {
		name  string
		bytes int
	}{{"256KiB", 256 << 10}, {"4MiB", 4 << 20}} {
		d := s.reg.PushImage(b, "cold/key-legacy-"+strings.ToLower(size.name))
		cosign.Sign(b, key, d, false)
		cosign.Attest(b, key, d, false, "cyclonedx", sbomPredicate(size.bytes)(0))
		sized = append(sized,
			benchCase{"key-legacy/cue-sbom-" + size.name, keyAuth(pub), d, v1beta1.PolicyTypeCUE, cueSBOM},
			benchCase{"key-legacy/rego-sbom-" + size.name, keyAuth(pub), d, v1beta1.PolicyTypeRego, regoSBOM})
	}
	for _, bc := range append([]benchCase{
		{"key-legacy/signature", keyAuth(pub), keyLegacy, "", ""},
		{"key-legacy/cue-sbom-1MiB", keyAuth(pub), keyLegacy, v1beta1.PolicyTypeCUE, cueSBOM},
		{"key-legacy/rego-sbom-1MiB", keyAuth(pub), keyLegacy, v1beta1.PolicyTypeRego, regoSBOM},
		{"key-bundle/cue-sbom-1MiB", bundled, keyBundle, v1beta1.PolicyTypeCUE, cueSBOM},
		{"keyless-legacy/signature", keylessAuth("ci-root", firstIdentity), keyless, "", ""},
		{"keyless-legacy/cue-sbom-1MiB", keylessAuth("ci-root", firstIdentity), keyless, v1beta1.PolicyTypeCUE, cueSBOM},
		{"keyless-legacy/rego-sbom-1MiB", keylessAuth("ci-root", firstIdentity), keyless, v1beta1.PolicyTypeRego, regoSBOM},
	}, sized...) {
		b.Run(bc.name, func(b *testing.B) {
			auth := bc.auth
			if bc.typ != "" {
				auth.Attestations = []v1beta1.Attestation{{Name: "sbom", PredicateType: "cyclonedx",
					Policy: &v1beta1.Policy{Type: bc.typ, Data: bc.body}}}
			}
			cip := newCIP("cold", withGlobs(s.reg.Host+"/**"), withAuthorities(auth))
			repo, _, _ := strings.Cut(bc.image.String(), "@")
			digests := map[string]string{"spec.containers[0].image": bc.image.String()}
			vers := s.verified.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				p, err := s.compiler.Compile(cip)
				if err != nil {
					b.Fatal(err)
				}
				set, pod := NewSet([]*CompiledPolicy{p}, nil), obj(b, fanOutPod(0, 0, repo+":latest"))
				v := verify.New(verify.Options{GlobalQPS: 1e9, GlobalBurst: 1 << 30, RegistryQPS: 1e9, RegistryBurst: 1 << 30, Observer: s})
				vf := Verification{Verifier: v, Keychain: verifytest.Keychain{}, Lane: verify.LaneBackground, Digests: digests}
				b.StartTimer()
				if d := set.Decide(context.Background(), pod, Options{Verification: vf}); !d.Allowed {
					b.Fatalf("denied: %s", d.DenyMessage)
				}
			}
			b.StopTimer()
			// Every judgement verified (not one served from a cache).
			if n := s.verified.Load() - vers; n < int64(b.N) {
				b.Fatalf("%d verifications for %d cold judgements", n, b.N)
			}
			b.ReportMetric(float64(s.verified.Load()-vers)/float64(b.N), "verifications/op")
		})
	}
}
