package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
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

// TestBodyTurn: a CIP-level Rego body that reads the clock is judged again
// at the moment its verdict turns when that comes before the periodic
// recheck, found once per input; a body that does not turn within the
// horizon leaves the periodic recheck alone.
func TestBodyTurn(t *testing.T) {
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	deadline := now.Add(90 * time.Second)
	src := "package sigstore\nisCompliant { time.now_ns() < time.parse_rfc3339_ns(\"" + deadline.Format(time.RFC3339) + "\") }"
	p := mustCompile(t, newCIP("deadline", withRego(src)))
	e := p.body.(*regoEvaluator)
	e.now = clockAt(now)
	set := NewSet([]*CompiledPolicy{p}, nil)
	opts := Options{ClockRecheck: 5 * time.Minute, Now: clockAt(now)}
	d := set.Decide(t.Context(), obj(t, podYAML("nginx")), opts)
	if r := d.Results[0]; r.Result != ResultPass || !r.TimeDependent {
		t.Fatalf("before the deadline: %s (time-dependent %v): %s", r.Result, r.TimeDependent, r.Message)
	}
	if !d.RecheckAt.Equal(deadline) {
		t.Errorf("RecheckAt %s after now, want the deadline, %s", d.RecheckAt.Sub(now), deadline.Sub(now))
	}
	if n := len(p.turns.cur) + len(p.turns.prev); n != 1 {
		t.Errorf("%d turns held, want the one found", n)
	}
	// Past the deadline the verdict no longer turns: the periodic recheck.
	e.now = clockAt(deadline.Add(time.Second))
	opts.Now = clockAt(deadline.Add(time.Second))
	d = set.Decide(t.Context(), obj(t, podYAML("nginx")), opts)
	if r := d.Results[0]; r.Result != ResultFail {
		t.Fatalf("past the deadline: %s", r.Result)
	}
	if want := deadline.Add(time.Second + 5*time.Minute); !d.RecheckAt.Equal(want) {
		t.Errorf("RecheckAt %s, want the periodic recheck at %s", d.RecheckAt, want)
	}
}

// TestSpreadClockRechecks: pods judged at the same moment by a body that
// reads the clock are judged again at different moments, each within the
// last tenth of ClockRecheck before its bound, the same one every time for a
// pod; without SpreadClockRechecks, exactly at the bound.
func TestSpreadClockRechecks(t *testing.T) {
	p := mustCompile(t, newCIP("clock", withRego("package sigstore\nisCompliant { time.now_ns() > 0 }")))
	set := NewSet([]*CompiledPolicy{p}, nil)
	now := time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC)
	const period = 5 * time.Minute
	at := func(name string, spread bool) time.Time {
		t.Helper()
		o := obj(t, fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":"apps"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`, name))
		return set.Decide(t.Context(), o, Options{ClockRecheck: period, SpreadClockRechecks: spread, Now: clockAt(now)}).RecheckAt
	}
	seen := map[time.Time]bool{}
	for i := range 50 {
		name := fmt.Sprintf("svc-7d9f8-%05d", i)
		got := at(name, true)
		if got.Before(now.Add(period-period/10)) || got.After(now.Add(period)) {
			t.Fatalf("%s: RecheckAt %s after the judgement, want within [%s, %s]", name, got.Sub(now), period-period/10, period)
		}
		if again := at(name, true); !again.Equal(got) {
			t.Errorf("%s: RecheckAt %s, then %s: want the same offset every time", name, got.Sub(now), again.Sub(now))
		}
		seen[got] = true
		if exact := at(name, false); !exact.Equal(now.Add(period)) {
			t.Errorf("%s without spreading: RecheckAt %s, want %s", name, exact.Sub(now), period)
		}
	}
	if len(seen) < 45 {
		t.Errorf("50 pods judged together are judged again at %d distinct moments, want them spread", len(seen))
	}
}

// TestNextTurn: the search finds the first whole second at which a verdict
// has changed, within its bound on evaluations, and nothing past the
// horizon or once its context has ended.
func TestNextTurn(t *testing.T) {
	from := time.Date(2026, 12, 2, 15, 0, 0, int(250*time.Millisecond), time.UTC)
	second := from.Truncate(time.Second)
	tests := []struct {
		name        string
		limit, want time.Time // the verdict turns at limit; nextTurn should say want
	}{
		{"a second away", second.Add(time.Second), second.Add(time.Second)},
		{"30 seconds away", second.Add(30 * time.Second), second.Add(30 * time.Second)},
		{"15 days away", second.Add(15 * 24 * time.Hour), second.Add(15 * 24 * time.Hour)},
		{"within a second: the next whole one", second.Add(90*time.Second + 400*time.Millisecond), second.Add(91 * time.Second)},
		{"at the horizon", second.Add(turnHorizon), second.Add(turnHorizon)},
		{"past the horizon", second.Add(turnHorizon + time.Second), time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			probes := 0
			got := nextTurn(context.Background(), from, verdictPass, func(at time.Time) verdict {
				probes++
				if at.Before(tc.limit) {
					return verdictPass
				}
				return verdictFail
			})
			if !got.Equal(tc.want) {
				t.Errorf("nextTurn = %v, want %v", got, tc.want)
			}
			if probes > maxTurnProbes {
				t.Errorf("%d evaluations, more than the bound of %d", probes, maxTurnProbes)
			}
		})
	}
	t.Run("the context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		probes := 0
		// An evaluation cut short errs: that says nothing about the time.
		got := nextTurn(ctx, from, verdictPass, func(time.Time) verdict {
			if probes++; probes == 3 {
				cancel()
				return verdictError
			}
			return verdictPass
		})
		if !got.IsZero() {
			t.Errorf("nextTurn = %v after its context ended, want none", got)
		}
	})
}

// scanAgeRego is the catalog's maximum-scan-age attestation policy
// (vuln-maximum-scan-age-rego) with its maximum age in seconds.
func scanAgeRego(maxAge time.Duration) string {
	return fmt.Sprintf(`package sigstore
nanosecs_per_second = 1000 * 1000 * 1000
maximum_age = %d * nanosecs_per_second

isCompliant[response] {
  created := time.parse_rfc3339_ns(input.predicate.metadata.scanFinishedOn)
  response := {
    "result" : time.now_ns() < created + maximum_age,
    "error" : "Scan exceeds maximum allowed age."
  }
}
`, int64(maxAge/time.Second))
}

// statementVerifier verifies every image's attestations as the same
// statements; nothing else of a Verifier is asked of it.
type statementVerifier struct {
	Verifier
	statements []verify.Attestation
}

func (v statementVerifier) VerifyAttestations(_ context.Context, _ *verify.Authority, _ verify.Request, types ...string) (*verify.AttestationEvidence, error) {
	ev := &verify.AttestationEvidence{Attestations: v.statements, ByType: map[string][]verify.Attestation{}}
	for _, pt := range types {
		ev.ByType[pt] = v.statements
	}
	return ev, nil
}

// scanStatement is a verified vulnerability scan finished at finished.
func scanStatement(finished time.Time) verify.Attestation {
	const typ = "https://cosign.sigstore.dev/attestation/vuln/v1"
	st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":%q,"predicate":{"metadata":{"scanFinishedOn":%q}}}`,
		typ, finished.Format(time.RFC3339))
	return verify.Attestation{ID: fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(st))), PredicateType: typ, Statement: []byte(st)}
}

// scanAgeFixture compiles a policy of every image whose key authority's
// attestation policy is scanAgeRego(maxAge), its clock reading *now, and
// gives the options of a decision whose verifier finds scan, with a
// periodic recheck far past any limit here: only a turn can come first.
func scanAgeFixture(tb testing.TB, maxAge time.Duration, scan verify.Attestation, now *time.Time) (*Set, *attestationPolicy, Options) {
	tb.Helper()
	auth := keyAuth(verifytest.PublicKeyPEM(tb))
	auth.Attestations = []v1beta1.Attestation{{Name: "scan-age", PredicateType: "vuln",
		Policy: &v1beta1.Policy{Type: v1beta1.PolicyTypeRego, Data: scanAgeRego(maxAge)}}}
	p := mustCompile(tb, newCIP("scan-age", withAuthorities(auth)))
	ap := p.authorities[0].sig.attestations[0]
	e, ok := ap.eval.(*regoEvaluator)
	if !ok || !p.TimeDependent() {
		tb.Fatalf("attestation policy %T, TimeDependent %v: want time-dependent Rego", ap.eval, p.TimeDependent())
	}
	clock := func() time.Time { return *now }
	e.now = clock
	opts := Options{
		Verification: Verification{Verifier: statementVerifier{statements: []verify.Attestation{scan}}},
		ClockRecheck: 400 * 24 * time.Hour,
		Now:          clock,
	}
	return NewSet([]*CompiledPolicy{p}, nil), ap, opts
}

// scanImage is the image the scan-age tests judge.
var scanImage = "registry.example/app@sha256:" + strings.Repeat("ab", 32)

// TestScanAgeTurnsAtItsLimit: under a maximum-scan-age attestation policy
// a passing decision's RecheckAt is the moment the scan becomes too old,
// scanFinishedOn + the maximum age to the second, long before the periodic
// ClockRecheck. The moment is looked for once per statement: a later pod of
// the same image gets it from the cache. At the limit the result fails,
// and RecheckAt falls back to ClockRecheck (the verdict stays fail).
func TestScanAgeTurnsAtItsLimit(t *testing.T) {
	for _, maxAge := range []time.Duration{30 * time.Second, 15 * 24 * time.Hour} {
		t.Run(maxAge.String(), func(t *testing.T) {
			finished := time.Date(2026, 11, 20, 8, 30, 15, 0, time.UTC)
			limit := finished.Add(maxAge)
			scan := scanStatement(finished)
			now := finished.Add(maxAge / 3).Add(400 * time.Millisecond)
			set, ap, opts := scanAgeFixture(t, maxAge, scan, &now)

			first := now
			d := set.Decide(context.Background(), obj(t, podYAML(scanImage)), opts)
			if r := d.Results[0]; r.Result != ResultPass || !r.TimeDependent {
				t.Fatalf("result %s (TimeDependent %v), want a time-dependent pass: %s", r.Result, r.TimeDependent, r.Message)
			}
			if !d.RecheckAt.Equal(limit) {
				t.Errorf("RecheckAt %v, want scanFinishedOn + %v = %v", d.RecheckAt, maxAge, limit)
			}

			now = now.Add(maxAge / 3)
			d = set.Decide(context.Background(), obj(t, podYAML(scanImage, scanImage)), opts)
			if r := d.Results[0]; r.Result != ResultPass || !d.RecheckAt.Equal(limit) {
				t.Errorf("later, another pod of the image: %s, RecheckAt %v; want pass and %v", r.Result, d.RecheckAt, limit)
			}
			if tn, ok := ap.turns.get(sha256.Sum256([]byte(scan.ID))); !ok || !tn.found.Equal(first) {
				t.Errorf("cached turn %+v (found %v): want the one looked for at %v, not a new search", tn, ok, first)
			}

			now = limit
			d = set.Decide(context.Background(), obj(t, podYAML(scanImage)), opts)
			if r := d.Results[0]; r.Result != ResultFail || !strings.Contains(r.Message, "Scan exceeds maximum allowed age.") {
				t.Errorf("at the limit: %s %q, want a failure saying the scan is too old", r.Result, r.Message)
			}
			if want := now.Add(opts.ClockRecheck); !d.RecheckAt.Equal(want) {
				t.Errorf("at the limit: RecheckAt %v, want the periodic recheck at %v", d.RecheckAt, want)
			}
		})
	}
}

// BenchmarkScanAgeTurn: one pod judged by the maximum-scan-age attestation
// policy (15 days, a scan a day old): "search" looks for the turn every
// time (the turn cache emptied, as for a statement never seen), "cached"
// finds it in the cache (the steady state of the verify path).
func BenchmarkScanAgeTurn(b *testing.B) {
	for _, search := range []bool{false, true} {
		name := "cached"
		if search {
			name = "search"
		}
		b.Run(name, func(b *testing.B) {
			now := time.Now()
			set, ap, opts := scanAgeFixture(b, 15*24*time.Hour, scanStatement(now.Add(-24*time.Hour)), &now)
			pod := obj(b, podYAML(scanImage))
			if d := set.Decide(context.Background(), pod, opts); d.RecheckAt.IsZero() || d.Results[0].Result != ResultPass {
				b.Fatalf("result %s, RecheckAt %v: want a pass and a turn", d.Results[0].Result, d.RecheckAt)
			}
			b.ReportAllocs()
			for b.Loop() {
				if search {
					ap.turns = newBoundedCache[turn](attestationCacheSize)
				}
				set.Decide(context.Background(), pod, opts)
			}
		})
	}
}
