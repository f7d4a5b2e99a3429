package policy

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkDecideSeed decides the walkthrough's failing pod against the
// walkthrough's policy. "cached" is the steady state (the replicas of a
// workload share their input); "uncached" evaluates CUE every time.
func BenchmarkDecideSeed(b *testing.B) {
	seed := sharedDir(b, "seed")
	cip := readCIP(b, filepath.Join(seed, "cip.yaml"))
	for _, tc := range []struct {
		name   string
		pod    string
		cached bool
	}{
		{"fail/cached", "pod-net-admin.yaml", true},
		{"fail/uncached", "pod-net-admin.yaml", false},
		{"pass/uncached", "pod-fixed.yaml", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := mustCompile(b, cip)
			if !tc.cached {
				p.cache = nil
			}
			set := NewSet([]*CompiledPolicy{p}, nil)
			o := readObject(b, filepath.Join(seed, tc.pod))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				set.Decide(ctx, o, Options{})
			}
		})
	}
}
