package report

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openreportsv1alpha1 "github.com/vigil-dev/vigil/apis/openreports/v1alpha1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/policy"
)

var (
	t0 = time.Unix(1000, 0)
	t1 = time.Unix(2000, 0)
)

func testPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app", UID: "uid-1"}}
}

func pass(name string) policy.Result {
	return policy.Result{Policy: name, Mode: "enforce", Generation: 1, Result: policy.ResultPass}
}

func fail(name, why string) policy.Result {
	return policy.Result{Policy: name, Mode: "enforce", Generation: 1, Result: policy.ResultFail,
		Message: "failed policy: " + name + ": " + why, Explanation: why}
}

func warn(name, why string) policy.Result {
	r := fail(name, why)
	r.Mode, r.Result = "warn", policy.ResultWarn
	return r
}

func errored(name string) policy.Result {
	return policy.Result{Policy: name, Mode: "enforce", Generation: 1, Result: policy.ResultError,
		Message: "failed policy: " + name + ": cannot evaluate", Explanation: "cannot evaluate"}
}

func noMatch(result string) policy.Result {
	return policy.Result{Policy: policy.NoMatchingPolicies, Result: result, Message: "no matching policies", Explanation: "not covered"}
}

func decision(results ...policy.Result) policy.Decision { return policy.Decision{Results: results} }

// stored is the report of d for the test pod as Vigil's cache holds it
// after writing it at time at.
func stored(api API, d policy.Decision, at time.Time) *reportsv1alpha2.PolicyReport {
	return Compacted(api, MakePlan(api, testPod(), d, nil, at).Report)
}

func TestPlan(t *testing.T) {
	type want struct {
		changed     bool
		transitions string // policy:from>to[!] per transition, ! marking drift
		kept        string // policies whose timestamp is carried over
	}
	cases := []struct {
		name    string
		current *policy.Decision // nil: no report yet
		next    policy.Decision
		want    want
	}{
		// A pod's first judgement: a fail means it got in unjudged.
		{"first judgement: fail is drift", nil, decision(pass("a"), fail("b", "adds NET_ADMIN")),
			want{changed: true, transitions: "a:>pass b:>fail!"}},
		{"first judgement: warn is not drift", nil, decision(warn("a", "adds NET_ADMIN")),
			want{changed: true, transitions: "a:>warn"}},
		{"first judgement: error is not drift", nil, decision(errored("a")),
			want{changed: true, transitions: "a:>error"}},
		{"first judgement: no-matching-policies in deny mode is drift", nil, decision(noMatch(policy.ResultFail)),
			want{changed: true, transitions: "no-matching-policies:>fail!"}},
		{"first judgement: no-matching-policies in warn mode is not drift", nil, decision(noMatch(policy.ResultWarn)),
			want{changed: true, transitions: "no-matching-policies:>warn"}},
		{"nothing changed", ptr(decision(pass("a"), fail("b", "adds NET_ADMIN"))), decision(pass("a"), fail("b", "adds NET_ADMIN")),
			want{changed: false, kept: "a b"}},
		{"pass to fail is drift", ptr(decision(pass("a"))), decision(fail("a", "adds NET_ADMIN")),
			want{changed: true, transitions: "a:pass>fail!"}},
		{"pass to warn is drift", ptr(decision(pass("a"))), decision(warn("a", "adds NET_ADMIN")),
			want{changed: true, transitions: "a:pass>warn!"}},
		{"a new policy failing is drift", ptr(decision(pass("a"))), decision(pass("a"), fail("b", "x")),
			want{changed: true, transitions: "b:>fail!", kept: "a"}},
		{"a new policy warning is drift", ptr(decision(pass("a"))), decision(pass("a"), warn("b", "x")),
			want{changed: true, transitions: "b:>warn!", kept: "a"}},
		{"skip to fail is drift (no-match turned deny)", ptr(decision(noMatch(policy.ResultSkip))), decision(noMatch(policy.ResultFail)),
			want{changed: true, transitions: "no-matching-policies:skip>fail!"}},
		{"warn to fail is not drift", ptr(decision(warn("a", "x"))), decision(fail("a", "x")),
			want{changed: true, transitions: "a:warn>fail"}},
		{"fail to warn is not drift", ptr(decision(fail("a", "x"))), decision(warn("a", "x")),
			want{changed: true, transitions: "a:fail>warn"}},
		{"pass to error is not drift", ptr(decision(pass("a"))), decision(errored("a")),
			want{changed: true, transitions: "a:pass>error"}},
		{"fail to error is not drift", ptr(decision(fail("a", "x"))), decision(errored("a")),
			want{changed: true, transitions: "a:fail>error"}},
		{"error to fail is drift", ptr(decision(errored("a"))), decision(fail("a", "x")),
			want{changed: true, transitions: "a:error>fail!"}},
		{"error to pass", ptr(decision(errored("a"))), decision(pass("a")),
			want{changed: true, transitions: "a:error>pass"}},
		{"fail to pass", ptr(decision(fail("a", "x"))), decision(pass("a")),
			want{changed: true, transitions: "a:fail>pass"}},
		{"another reason to fail", ptr(decision(fail("a", "adds NET_ADMIN"))), decision(fail("a", "adds SYS_ADMIN")),
			want{changed: true}},
		{"a policy gone", ptr(decision(pass("a"), fail("b", "x"))), decision(pass("a")),
			want{changed: true, kept: "a"}},
	}
	for _, api := range []API{WGPolicy, OpenReports} {
		for _, c := range cases {
			t.Run(string(api)+"/"+c.name, func(t *testing.T) {
				var current *Held
				if c.current != nil {
					current = ptr(holdCompacted(stored(api, *c.current, t0)))
				}
				p := MakePlan(api, testPod(), c.next, current, t1)
				if p.Changed != c.want.changed {
					t.Errorf("changed = %v, want %v", p.Changed, c.want.changed)
				}
				var got []string
				for _, tr := range p.Transitions {
					s := tr.Policy + ":" + string(tr.From) + ">" + string(tr.To)
					if tr.Drift {
						s += "!"
					}
					got = append(got, s)
				}
				if strings.Join(got, " ") != c.want.transitions {
					t.Errorf("transitions %q, want %q", strings.Join(got, " "), c.want.transitions)
				}
				var kept []string
				for _, r := range p.Report.Results {
					switch r.Timestamp.Seconds {
					case t0.Unix():
						kept = append(kept, r.Policy)
					case t1.Unix():
					default:
						t.Errorf("result %s stamped %d, neither then nor now", r.Policy, r.Timestamp.Seconds)
					}
				}
				if strings.Join(kept, " ") != c.want.kept {
					t.Errorf("timestamps kept for %q, want %q", strings.Join(kept, " "), c.want.kept)
				}
				if fp := Fingerprint(Compacted(api, p.Report)); fp != p.Fingerprint {
					t.Errorf("plan fingerprint %s, but the report as cached has %s", p.Fingerprint, fp)
				}
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDesired(t *testing.T) {
	pod := testPod()
	r := Desired(pod, decision(pass("a"), fail("b", "adds NET_ADMIN"), policy.Result{Policy: "c", Result: policy.ResultError, Message: "cannot evaluate"}), t1)
	if r.Name != "uid-1" || r.Namespace != "ns" || r.Labels[ManagedByLabel] != ManagedByValue {
		t.Errorf("report %s/%s labels %v", r.Namespace, r.Name, r.Labels)
	}
	if len(r.OwnerReferences) != 1 || r.OwnerReferences[0].UID != "uid-1" || r.Scope.Name != "app" {
		t.Errorf("owner %v scope %v: want the pod", r.OwnerReferences, r.Scope)
	}
	if s := r.Summary; s.Pass != 1 || s.Fail != 1 || s.Error != 1 || s.Warn != 0 || s.Skip != 0 {
		t.Errorf("summary %+v", s)
	}
	b := r.Results[1]
	if b.Description != "adds NET_ADMIN" || b.Properties[PropertyDetails] != "failed policy: b: adds NET_ADMIN" ||
		b.Properties[PropertyMode] != "enforce" || b.Properties[PropertyGeneration] != "1" || b.Source != Source {
		t.Errorf("failing result %+v", b)
	}
	if r.Results[0].Description != "the pod satisfies a" || r.Results[2].Description != "cannot evaluate" {
		t.Errorf("descriptions %q, %q", r.Results[0].Description, r.Results[2].Description)
	}
}

// Someone else's edit of any part of a stored report shows in its
// fingerprint once compacted, so that Vigil puts it right.
func TestFingerprintSeesEveryEdit(t *testing.T) {
	full := Desired(testPod(), decision(fail("a", "adds NET_ADMIN")), t0)
	base := Fingerprint(Compacted(WGPolicy, full))
	edits := map[string]func(*reportsv1alpha2.PolicyReport){
		"description": func(r *reportsv1alpha2.PolicyReport) { r.Results[0].Description = "fine" },
		"result":      func(r *reportsv1alpha2.PolicyReport) { r.Results[0].Result = reportsv1alpha2.ResultPass },
		"property":    func(r *reportsv1alpha2.PolicyReport) { r.Results[0].Properties[PropertyMode] = "warn" },
		"subjects":    func(r *reportsv1alpha2.PolicyReport) { r.Results[0].Subjects = nil },
		"summary":     func(r *reportsv1alpha2.PolicyReport) { r.Summary.Fail = 0 },
		"label":       func(r *reportsv1alpha2.PolicyReport) { delete(r.Labels, ManagedByLabel) },
		"owner":       func(r *reportsv1alpha2.PolicyReport) { r.OwnerReferences = nil },
		"scope":       func(r *reportsv1alpha2.PolicyReport) { r.Scope = nil },
		"results":     func(r *reportsv1alpha2.PolicyReport) { r.Results = nil },
	}
	for name, edit := range edits {
		r := full.DeepCopy()
		edit(r)
		if Fingerprint(Compacted(WGPolicy, r)) == base {
			t.Errorf("an edit of the %s leaves the fingerprint as it was", name)
		}
	}
	r := full.DeepCopy()
	r.Results[0].Timestamp = metav1.Timestamp{Seconds: 5}
	r.Labels["team"] = "a"
	if Fingerprint(Compacted(WGPolicy, r)) != base {
		t.Errorf("a new timestamp or someone else's label changed the fingerprint")
	}
}

func fullResult(desc string, ts int64) reportsv1alpha2.PolicyReportResult {
	return reportsv1alpha2.PolicyReportResult{
		Source: "vigil", Policy: "p", Result: reportsv1alpha2.ResultFail, Scored: true,
		Description: desc, Properties: map[string]string{"mode": "enforce"},
		Subjects:  []corev1.ObjectReference{{Kind: "Pod", Name: "a"}},
		Timestamp: metav1.Timestamp{Seconds: ts},
	}
}

func compactedResult(t *testing.T, res reportsv1alpha2.PolicyReportResult) reportsv1alpha2.PolicyReportResult {
	t.Helper()
	r := &reportsv1alpha2.PolicyReport{Results: []reportsv1alpha2.PolicyReportResult{res}}
	if _, err := Compact(r); err != nil {
		t.Fatal(err)
	}
	return r.Results[0]
}

func TestCompact(t *testing.T) {
	a := compactedResult(t, fullResult("adds NET_ADMIN", 1))
	if !strings.HasPrefix(a.Description, digestPrefix) || a.Source != "" || a.Subjects != nil || a.Properties != nil {
		t.Errorf("compacted result %+v: want only policy, result, timestamp and the digest", a)
	}
	if a.Policy != "p" || a.Result != reportsv1alpha2.ResultFail || a.Timestamp.Seconds != 1 {
		t.Errorf("compacted result %+v lost its policy, result or timestamp", a)
	}
	if again := compactedResult(t, a); again.Description != a.Description {
		t.Errorf("compacting twice changed the digest")
	}
	if b := compactedResult(t, fullResult("adds NET_ADMIN", 2)); b.Description != a.Description {
		t.Errorf("the digest depends on the timestamp")
	}
	rep := &openreportsv1alpha1.Report{Results: []openreportsv1alpha1.ReportResult{{Policy: "p", Result: "pass", Description: "ok"}}}
	rep.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "x"}}
	if _, err := Compact(rep); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Results[0].Description, digestPrefix) || rep.ManagedFields != nil {
		t.Errorf("openreports Report not compacted: %+v", rep)
	}
	pod := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n"}}
	if out, _ := Compact(pod); out.(*corev1.Pod).Spec.NodeName != "n" {
		t.Errorf("an object of another type was changed")
	}
}

// Both APIs carry the same content: a report converted to openreports.io and
// back is the report it was, and the stored Report names Vigil as its source.
func TestAPIRoundTrip(t *testing.T) {
	r := Desired(testPod(), decision(pass("a"), fail("b", "x")), t0)
	stored := OpenReports.ToStored(r.DeepCopy())
	rep, ok := stored.(*openreportsv1alpha1.Report)
	if !ok || rep.Source != Source || rep.Kind != "Report" {
		t.Fatalf("stored %T %+v", stored, stored)
	}
	back, ok := OpenReports.FromStored(stored)
	if !ok || Fingerprint(Compacted(WGPolicy, back)) != Fingerprint(Compacted(WGPolicy, r)) {
		t.Errorf("the round trip through openreports.io changed the report")
	}
	if _, ok := WGPolicy.FromStored(stored); ok {
		t.Errorf("a Report read as a PolicyReport")
	}
	if a, err := ParseAPI(""); err != nil || a != WGPolicy {
		t.Errorf("ParseAPI(\"\") = %s, %v", a, err)
	}
	if _, err := ParseAPI("v1"); err == nil || !strings.Contains(err.Error(), "v1") {
		t.Errorf("ParseAPI(v1) = %v", err)
	}
}

// Each transition is announced as at most one of a violation, an error or a
// return to compliance.
func TestTransitionKinds(t *testing.T) {
	const (
		pass, fail, warn, errr, skip = reportsv1alpha2.ResultPass, reportsv1alpha2.ResultFail, reportsv1alpha2.ResultWarn, reportsv1alpha2.ResultError, reportsv1alpha2.ResultSkip
	)
	cases := []struct {
		from, to reportsv1alpha2.Result
		want     string // violation, error, compliant or ""
	}{
		{"", pass, ""},
		{"", fail, "violation"},
		{"", warn, "violation"},
		{"", errr, "error"},
		{pass, fail, "violation"},
		{pass, errr, "error"},
		{fail, errr, "error"},
		{errr, fail, "violation"},
		{errr, pass, "compliant"},
		{fail, pass, "compliant"},
		{warn, pass, "compliant"},
		{skip, pass, ""},
		{fail, warn, "violation"},
		{pass, skip, ""},
	}
	for _, c := range cases {
		tr := Transition{Policy: "p", From: c.from, To: c.to}
		var got []string
		if tr.Violation() {
			got = append(got, "violation")
		}
		if tr.Errored() {
			got = append(got, "error")
		}
		if tr.Compliant() {
			got = append(got, "compliant")
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%q -> %q: %v, want %q", c.from, c.to, got, c.want)
		}
	}
}

// Every result carries a rule, a category and a severity: the policy
// author's, else defaults that follow the mode.
func TestResultRuleCategorySeverity(t *testing.T) {
	authored := fail("signed", "unsigned")
	authored.Rule, authored.Category, authored.Severity = "keyless", "Supply Chain Security", "critical"
	noRule := pass("bare")
	cases := []struct {
		name                     string
		in                       policy.Result
		rule, category, severity string
	}{
		{"author's fields", authored, "keyless", "Supply Chain Security", "critical"},
		{"enforce mode: high", withRule(fail("caps", "x"), policy.RuleBody), policy.RuleBody, DefaultCategory, "high"},
		{"a pass carries the rule's severity", withRule(pass("caps"), policy.RuleBody), policy.RuleBody, DefaultCategory, "high"},
		{"warn mode: medium", withRule(warn("caps", "x"), "authority-0"), "authority-0", DefaultCategory, "medium"},
		{"error in enforce mode: high", errored("broken"), "broken", DefaultCategory, "high"},
		{"no rule: the policy's name", noRule, "bare", DefaultCategory, "high"},
		{"no match, deny", noMatch(policy.ResultFail), policy.NoMatchingPolicies, DefaultCategory, "high"},
		{"no match, warn", noMatch(policy.ResultWarn), policy.NoMatchingPolicies, DefaultCategory, "medium"},
		{"no match, allow", noMatch(policy.ResultSkip), policy.NoMatchingPolicies, DefaultCategory, "info"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Desired(testPod(), decision(c.in), t1).Results[0]
			if r.Rule != c.rule || r.Category != c.category || string(r.Severity) != c.severity {
				t.Errorf("rule %q category %q severity %q, want %q %q %q", r.Rule, r.Category, r.Severity, c.rule, c.category, c.severity)
			}
		})
	}
}

func withRule(r policy.Result, rule string) policy.Result {
	r.Rule = rule
	return r
}
