package verify

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// BenchmarkVerifyAttestations measures the attestations of one image
// verified cold (registry round trips to the in-memory registry on loopback,
// reading the bodies, the cryptography; Refresh bypasses the cache) and
// cached, for a 1 MiB CycloneDX SBOM written by the real cosign CLI (legacy
// and bundle) and a small keyless provenance.
func BenchmarkVerifyAttestations(b *testing.B) {
	bin := cosignBinary(b)
	reg := newTestRegistry(b)
	key, pub := cosignKey(b, bin)
	sbom := map[string]any{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": sbomComponents(1 << 20)}
	legacy := reg.pushImage(b, "bench/att-legacy")
	cosignAttest(b, bin, key, legacy, FormatLegacy, "cyclonedx", sbom)
	bundled := reg.pushImage(b, "bench/att-bundle")
	cosignAttest(b, bin, key, bundled, FormatBundle, "cyclonedx", sbom)
	vs := newVirtualSigstore(b)
	keyless := reg.pushImage(b, "bench/att-keyless")
	signKeylessBundle(b, vs, keyless, ciSubject, ciIssuer, "https://slsa.dev/provenance/v1")

	for _, c := range []struct {
		name  string
		spec  AuthoritySpec
		image name.Digest
		typ   string
	}{
		{"key-legacy-1MiB", keySpec(pub, FormatLegacy, nil), legacy, "cyclonedx"},
		{"key-bundle-1MiB", keySpec(pub, FormatBundle, nil), bundled, "cyclonedx"},
		{"keyless-bundle", keylessSpec(vs, FormatBundle, Identity{Issuer: ciIssuer, Subject: ciSubject}), keyless, "slsaprovenance1"},
	} {
		a := mustCompile(b, c.spec)
		v := New(benchOptions)
		ctx := context.Background()
		b.Run(c.name+"/cold", func(b *testing.B) {
			v := New(coldOptions)
			req := Request{Image: c.image.String(), Keychain: staticKeychain{}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyAttestations(ctx, a, req, c.typ); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/cached", func(b *testing.B) {
			req := Request{Image: c.image.String(), Keychain: staticKeychain{}}
			if _, err := v.VerifyAttestations(ctx, a, req, c.typ); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyAttestations(ctx, a, req, c.typ); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// sbomComponents is a CycloneDX component list of about size bytes of JSON.
func sbomComponents(size int) []map[string]any {
	var out []map[string]any
	for n := 0; n < size; n += 120 {
		i := len(out)
		out = append(out, map[string]any{"type": "library", "name": fmt.Sprintf("pkg-%06d", i),
			"version": "1.2.3", "purl": fmt.Sprintf("pkg:golang/example.com/pkg-%06d@v1.2.3", i)})
	}
	return out
}

// BenchmarkAttestationCacheMemory fills the attestation cache with 1 MiB
// statements, twice as many images as its byte bound holds, and reports the
// entries kept, the bytes the cache counts and the heap they hold.
func BenchmarkAttestationCacheMemory(b *testing.B) {
	const mib = 1 << 20
	body := []byte(strings.Repeat("x", mib))
	for b.Loop() {
		c := newCache[*AttestationEvidence](10000, 256*mib, time.Hour, time.Minute, time.Second, time.Minute)
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		now := time.Now()
		for i := range 512 {
			st := append([]byte(nil), body...) // each verification decodes its own copy
			c.store(fmt.Sprint(i), now, &AttestationEvidence{Attestations: []Attestation{{Statement: st}}}, nil)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(c.len()), "entries")
		b.ReportMetric(float64(c.size())/mib, "MiB-counted")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/mib, "MiB-heap")
		runtime.KeepAlive(c)
	}
}
