package main

import (
	"strings"
	"testing"
)

// Bounds given as flags are checked before the controller starts: a bad
// value is bad input naming the flag, never a controller with no bound.
func TestControllerFlagBounds(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--attestation-cache-mib", "0"}, "--attestation-cache-mib must be positive, not 0"},
		{[]string{"--attestation-cache-mib", "-5"}, "--attestation-cache-mib must be positive, not -5"},
		{[]string{"--registry-qps", "0"}, "--registry-qps must be positive, not 0"},
		{[]string{"--verification-pass-ttl", "0s"}, "--verification-pass-ttl must be positive, not 0s"},
		{[]string{"--gc-percent", "-1"}, "--gc-percent must be 0 or more, not -1"},
		{[]string{"--api-latency-tolerance", "0.5"}, "--api-latency-tolerance must be 0 (off) or from 1 to 100, not 0.5"},
		{[]string{"--api-latency-tolerance", "NaN"}, "--api-latency-tolerance must be 0 (off) or from 1 to 100, not NaN"},
	} {
		_, code, err := runVigil(t, append([]string{"controller"}, tc.args...)...)
		if code != exitBadInput || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vigil controller %s: exit %d, %v; want exit %d and %q", strings.Join(tc.args, " "), code, err, exitBadInput, tc.want)
		}
	}
}
