package metrics

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestVerificationObserverBoundsRegistries(t *testing.T) {
	o := NewVerificationObserver()
	o.maxRegistries = 3
	before := testutil.ToFloat64(RegistryRequests.WithLabelValues(Other, "200"))
	for i := range 5 {
		o.RegistryRequest(fmt.Sprintf("bounded-%d.example", i), 200)
	}
	o.RegistryRequest("bounded-0.example", 200) // already has its label
	for i := range 3 {
		if got := testutil.ToFloat64(RegistryRequests.WithLabelValues(fmt.Sprintf("bounded-%d.example", i), "200")); got != float64(1+boolInt(i == 0)) {
			t.Errorf("bounded-%d.example: %v requests, want %d", i, got, 1+boolInt(i == 0))
		}
	}
	if got := testutil.ToFloat64(RegistryRequests.WithLabelValues(Other, "200")) - before; got != 2 {
		t.Errorf("requests counted as other: %v, want 2 (the 4th and 5th registries)", got)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestCodeLabel(t *testing.T) {
	for code, want := range map[int]string{0: "0", 200: "200", 429: "429", 418: "4xx", 599: "5xx", 999: Other, -1: Other} {
		if got := codeLabel(code); got != want {
			t.Errorf("codeLabel(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestVerificationObserverOutcomes(t *testing.T) {
	o := NewVerificationObserver()
	cases := []struct{ outcome, label, kind string }{
		{"pass", "pass", VerificationPass},
		{"NoSignatures", "NoSignatures", VerificationVerdict},
		{"IdentityMismatch", "IdentityMismatch", VerificationVerdict},
		{"RateLimited", "RateLimited", VerificationError},
		{"SomethingNew", Other, VerificationError},
	}
	for _, c := range cases {
		counter := Verifications.WithLabelValues(c.label, c.kind)
		before := testutil.ToFloat64(counter)
		o.Verified(c.outcome, 20*time.Millisecond)
		if got := testutil.ToFloat64(counter) - before; got != 1 {
			t.Errorf("Verified(%q): vigil_verifications_total{outcome=%q,kind=%q} grew by %v, want 1", c.outcome, c.label, c.kind, got)
		}
	}
	hits := testutil.ToFloat64(VerificationCacheLookups.WithLabelValues("hit"))
	misses := testutil.ToFloat64(VerificationCacheLookups.WithLabelValues("miss"))
	o.CacheLookup(true)
	o.CacheLookup(true)
	o.CacheLookup(false)
	if h, m := testutil.ToFloat64(VerificationCacheLookups.WithLabelValues("hit"))-hits, testutil.ToFloat64(VerificationCacheLookups.WithLabelValues("miss"))-misses; h != 2 || m != 1 {
		t.Errorf("cache lookups: %v hits and %v misses, want 2 and 1", h, m)
	}
	if n := testutil.CollectAndCount(VerificationDuration); n == 0 {
		t.Error("vigil_verification_duration_seconds has no series after verifications")
	}
}

// Every registry request of the verifier goes through RegistryRequest,
// from all verifications at once.
func BenchmarkRegistryRequest(b *testing.B) {
	o := NewVerificationObserver()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.RegistryRequest("ghcr.io", 200)
		}
	})
}
