package policy

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clockAt is a clock stopped at t.
func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

// TestCatalogClockPoliciesCompile: the catalog's maximum-scan-age
// (attestation-level) and maximum-image-age (CIP-level, fetchConfigFile)
// policies call time.now_ns; they compile, and both say they depend on the
// time.
func TestCatalogClockPoliciesCompile(t *testing.T) {
	dir := filepath.Join(sharedDir(t, "conformance", "supply-chain"), "policies")
	scan := mustCompile(t, readCIP(t, filepath.Join(dir, "vuln-maximum-scan-age-rego.yaml")))
	image := mustCompile(t, readCIP(t, filepath.Join(dir, "maximum-image-age-rego.yaml")))
	if !image.TimeDependent() {
		t.Error("maximum-image-age-rego: TimeDependent() = false, its body calls time.now_ns")
	}
	if !scan.TimeDependent() {
		t.Error("vuln-maximum-scan-age-rego: TimeDependent() = false, its attestation policy calls time.now_ns")
	}
	vuln := mustCompile(t, readCIP(t, filepath.Join(dir, "vuln-no-high-or-critical-rego.yaml")))
	if vuln.TimeDependent() {
		t.Error("vuln-no-high-or-critical-rego: TimeDependent() = true, but nothing in it reads the clock")
	}
	pure := mustCompile(t, newCIP("p", withRego("package sigstore\nisCompliant { time.parse_rfc3339_ns(\"2026-01-01T00:00:00Z\") > 0 }")))
	if pure.TimeDependent() {
		t.Error("a body that parses a time but never reads the clock is TimeDependent")
	}
}

// TestCatalogClockPoliciesEvaluateAtTwoTimes evaluates the two catalog
// bodies at two clock values (OPA's EvalTime): the same input passes while
// it is young enough and fails once it is too old.
func TestCatalogClockPoliciesEvaluateAtTwoTimes(t *testing.T) {
	dir := filepath.Join(sharedDir(t, "conformance", "supply-chain"), "policies")
	scanCIP := readCIP(t, filepath.Join(dir, "vuln-maximum-scan-age-rego.yaml"))
	imageCIP := readCIP(t, filepath.Join(dir, "maximum-image-age-rego.yaml"))
	made := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, src, input string
		maxAge           time.Duration
		failure          string
	}{
		{"vuln-maximum-scan-age-rego", scanCIP.Spec.Authorities[0].Attestations[0].Policy.Data,
			`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"cosign.sigstore.dev/attestation/vuln/v1",
			  "predicate":{"metadata":{"scanStartedOn":"2026-11-01T11:59:00Z","scanFinishedOn":"` + made.Format(time.RFC3339) + `"}}}`,
			15 * 24 * time.Hour, "Scan exceeds maximum allowed age."},
		{"maximum-image-age-rego", imageCIP.Spec.Policy.Data,
			`{"config":{"linux/amd64":{"architecture":"amd64","os":"linux","created":"` + made.Format(time.RFC3339) + `"}},
			  "authorityMatches":{"authority-0":{"static":true}}}`,
			30 * 24 * time.Hour, "Image exceeds maximum allowed age."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := compileRego(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			in := evalInput{json: []byte(tc.input)}
			e.now = clockAt(made.Add(tc.maxAge - time.Minute))
			if r := e.evaluate(t.Context(), in); r.err != nil {
				t.Fatalf("a minute before the limit: %v", r.err)
			}
			e.now = clockAt(made.Add(tc.maxAge + time.Minute))
			r := e.evaluate(t.Context(), in)
			if r.err == nil || r.errored || !strings.Contains(r.err.Error(), tc.failure) {
				t.Fatalf("a minute past the limit: err = %v (errored %v), want a failure with %q", r.err, r.errored, tc.failure)
			}
		})
	}
}

// TestTimeDependentBodyIsNotCached decides the same pod twice with the
// clock moved past a Rego body's deadline: the second decision must see the
// new time, not the first result from the body cache, while a pure body's
// result is cached.
func TestTimeDependentBodyIsNotCached(t *testing.T) {
	deadline := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	src := "package sigstore\nisCompliant { time.now_ns() < time.parse_rfc3339_ns(\"" + deadline.Format(time.RFC3339) + "\") }"
	p := mustCompile(t, newCIP("clock", withRego(src)))
	e, ok := p.body.(*regoEvaluator)
	if !ok || !p.TimeDependent() {
		t.Fatalf("body %T, TimeDependent %v: want a time-dependent Rego evaluator", p.body, p.TimeDependent())
	}
	set := NewSet([]*CompiledPolicy{p}, nil)
	o := obj(t, podYAML("nginx"))

	e.now = clockAt(deadline.Add(-time.Hour))
	if r := set.Decide(t.Context(), o, Options{}).Results[0]; r.Result != ResultPass {
		t.Fatalf("before the deadline: %s: %s", r.Result, r.Message)
	}
	e.now = clockAt(deadline.Add(time.Hour))
	if r := set.Decide(t.Context(), o, Options{}).Results[0]; r.Result != ResultFail {
		t.Fatalf("after the deadline: %s, want fail (a cached result?)", r.Result)
	}
	if n := len(p.cache.cur) + len(p.cache.prev); n != 0 {
		t.Errorf("the body cache holds %d results of a time-dependent body", n)
	}

	pure := mustCompile(t, newCIP("pure", withRego("package sigstore\nisCompliant { input.spec.containers[0].name != \"\" }")))
	NewSet([]*CompiledPolicy{pure}, nil).Decide(t.Context(), o, Options{})
	if n := len(pure.cache.cur) + len(pure.cache.prev); n != 1 {
		t.Errorf("the body cache holds %d results of a pure body, want 1", n)
	}
}
