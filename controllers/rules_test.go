package controllers

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

// These are pure unit tests of the verify path's bookkeeping: they need no
// API server (go test -short runs them alone).

func TestOwnWrites(t *testing.T) {
	o := newOwnWrites()
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	o.expect(a, "v2")
	if o.written(a, "v1") {
		t.Errorf("an older state of the report, arriving first, was taken for Vigil's write")
	}
	if !o.written(a, "v2") {
		t.Errorf("Vigil's own write was not recognised")
	}
	if o.written(a, "v2") {
		t.Errorf("a second event with the same content was taken for Vigil's write: someone else may have written it")
	}
	if n := len(o.pending); n != 0 {
		t.Errorf("%d writes in flight after every write was seen", n)
	}

	o.expect(a, "v3")
	o.cancel(a)
	if o.written(a, "v3") || len(o.pending) != 0 {
		t.Errorf("a failed write was still expected")
	}

	o.expectDeletion(a)
	if o.written(a, "") {
		t.Errorf("an update was taken for Vigil's deletion")
	}
	if !o.deleted(a) || len(o.pending) != 0 {
		t.Errorf("Vigil's own deletion was not recognised")
	}
	// Someone else deletes a report Vigil was writing: the pod must be
	// judged again, and nothing stays behind.
	o.expect(a, "v4")
	if o.deleted(a) || len(o.pending) != 0 {
		t.Errorf("someone else's deletion was taken for Vigil's")
	}
}

// A write that landed leaves its version until its event comes; the next
// write of that report starts from it, not from the older version the
// watch still shows.
func TestOwnWritesVersion(t *testing.T) {
	o := newOwnWrites()
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	if v := o.version(a, "10"); v != "10" {
		t.Errorf("no write in flight: version %q, want the held 10", v)
	}
	o.expect(a, "f1")
	if v := o.version(a, "10"); v != "10" {
		t.Errorf("a write not landed yet: version %q, want the held 10", v)
	}
	o.landed(a, "11")
	if v := o.version(a, "10"); v != "11" {
		t.Errorf("a write landed at 11, its event not seen: version %q, want 11", v)
	}
	// The next write starts before the first's event arrives: it updates
	// version 11, and its own landing replaces it.
	o.expect(a, "f2")
	if v := o.version(a, "10"); v != "11" {
		t.Errorf("second write: version %q, want 11", v)
	}
	o.landed(a, "12")
	if o.written(a, "f1") {
		t.Errorf("the first write's event was taken for the second's")
	}
	if !o.written(a, "f2") {
		t.Errorf("the second write's event was not recognised")
	}
	if v := o.version(a, "12"); v != "12" || len(o.pending) != 0 {
		t.Errorf("after the event: version %q and %d writes in flight, want the held 12 and none", v, len(o.pending))
	}
	// A failed write leaves nothing; a landing without a write is ignored.
	o.expect(a, "f3")
	o.cancel(a)
	o.landed(a, "13")
	if v := o.version(a, "12"); v != "12" || len(o.pending) != 0 {
		t.Errorf("after a failed write: version %q, %d in flight; want 12, none", v, len(o.pending))
	}
}

func TestStaleReports(t *testing.T) {
	s := newStaleReports()
	pod := types.NamespacedName{Namespace: "ns", Name: "web"}
	s.add(pod, "uid-1")
	s.add(pod, "uid-1")
	s.add(pod, "uid-2")
	handled := s.get(pod)
	if strings.Join(handled, ",") != "uid-1,uid-2" {
		t.Fatalf("noted %v, want each report once", handled)
	}
	s.add(pod, "uid-3") // noted while the reconciler works
	s.done(pod, handled)
	if left := s.get(pod); strings.Join(left, ",") != "uid-3" {
		t.Errorf("after done: %v, want only the report noted meanwhile", left)
	}
	s.done(pod, []string{"uid-3"})
	if len(s.names) != 0 {
		t.Errorf("entries left: %v", s.names)
	}
}

func TestTally(t *testing.T) {
	tl := newTally()
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	b := types.NamespacedName{Namespace: "ns", Name: "b"}
	if changed := tl.set(a, map[string]string{"p": "fail", "q": "pass"}, nil); strings.Join(sorted(changed), ",") != "p,q" {
		t.Errorf("first results changed %v, want p,q", changed)
	}
	if changed := tl.set(a, map[string]string{"p": "fail", "q": "pass"}, nil); len(changed) != 0 {
		t.Errorf("the same results changed %v", changed)
	}
	tl.set(b, map[string]string{"p": "pass"}, nil)
	if changed := tl.set(a, map[string]string{"p": "pass"}, nil); strings.Join(sorted(changed), ",") != "p,q" {
		t.Errorf("fail to pass and q gone changed %v", changed)
	}
	if tl.count("p", "pass") != 2 || tl.count("p", "fail") != 0 || tl.count("q", "pass") != 0 {
		t.Errorf("counts p pass %d fail %d, q pass %d", tl.count("p", "pass"), tl.count("p", "fail"), tl.count("q", "pass"))
	}
	// Seeding after a restart counts what the reports say for pods not
	// judged yet, and never overrides a pod judged already.
	tl.seed(map[types.NamespacedName]map[string]string{
		a:                            {"p": "fail"},
		{Namespace: "ns", Name: "c"}: {"p": "warn"},
	})
	if tl.count("p", "pass") != 2 || tl.count("p", "warn") != 1 || tl.count("p", "fail") != 0 {
		t.Errorf("after seeding: pass %d warn %d fail %d", tl.count("p", "pass"), tl.count("p", "warn"), tl.count("p", "fail"))
	}
	tl.seed(map[types.NamespacedName]map[string]string{{Namespace: "ns", Name: "d"}: {"p": "fail"}})
	if tl.count("p", "fail") != 0 {
		t.Errorf("a second seed counted")
	}
	tl.set(a, nil, nil)
	tl.set(b, nil, nil)
	if tl.count("p", "pass") != 0 {
		t.Errorf("forgotten pods still counted")
	}
}

// The tally keeps one copy of each combination of results, whatever the
// number of pods that have it, and reads back what it was given.
func TestTallySharesResults(t *testing.T) {
	tl := newTally()
	for i := range 1000 {
		tl.set(types.NamespacedName{Namespace: "ns", Name: fmt.Sprint("pod-", i)}, map[string]string{"q": "pass", "p": "fail", "r-3": "warn"}, nil)
	}
	first := tl.pods[types.NamespacedName{Namespace: "ns", Name: "pod-0"}]
	for pod, s := range tl.pods {
		if s != first {
			t.Fatalf("%s holds its own copy of the same results", pod)
		}
	}
	got := map[string]string{}
	for policy, result := range first.all() {
		got[policy] = result
	}
	if want := map[string]string{"p": "fail", "q": "pass", "r-3": "warn"}; !maps.Equal(got, want) {
		t.Errorf("read back %v, want %v", got, want)
	}
	if r, found := first.get("q"); r != "pass" || !found {
		t.Errorf("get q = %q %v", r, found)
	}
	if r, found := (resultSet{}).get("q"); r != "" || found {
		t.Errorf("get q of no results = %q %v", r, found)
	}
	if tl.count("p", "fail") != 1000 || tl.count("r-3", "warn") != 1000 {
		t.Errorf("counts p fail %d, r-3 warn %d, want 1000", tl.count("p", "fail"), tl.count("r-3", "warn"))
	}
}

// A pod counts as drifted out of a policy from its drift for as long as it
// stays out of the policy: until it passes, cannot be evaluated, or goes.
func TestTallyDriftedPods(t *testing.T) {
	tl := newTally()
	a := types.NamespacedName{Namespace: "ns", Name: "a"}
	b := types.NamespacedName{Namespace: "ns", Name: "b"}
	steps := []struct {
		name    string
		pod     types.NamespacedName
		results map[string]string
		drifted []string
		p, q    int // drifted pods of p and q after the step
	}{
		{"a fails p unjudged: drifted", a, map[string]string{"p": "fail", "q": "pass"}, []string{"p"}, 1, 0},
		{"b fails p since its first judgement, not drift", b, map[string]string{"p": "warn"}, nil, 1, 0},
		{"a judged again, the same", a, map[string]string{"p": "fail", "q": "pass"}, nil, 1, 0},
		{"a's mode changed: still out", a, map[string]string{"p": "warn", "q": "pass"}, nil, 1, 0},
		{"a drifts out of q too", a, map[string]string{"p": "warn", "q": "fail"}, []string{"q"}, 1, 1},
		{"a drift noted twice counts once", a, map[string]string{"p": "warn", "q": "fail"}, []string{"q"}, 1, 1},
		{"a passes p again", a, map[string]string{"p": "pass", "q": "fail"}, nil, 0, 1},
		{"a cannot be evaluated for q", a, map[string]string{"p": "pass", "q": "error"}, nil, 0, 0},
		{"a drifts from error to fail", a, map[string]string{"p": "pass", "q": "fail"}, []string{"q"}, 0, 1},
		{"a drift of a result that is not bad is ignored", b, map[string]string{"p": "pass"}, []string{"p"}, 0, 1},
		{"q no longer matches a", a, map[string]string{"p": "pass"}, nil, 0, 0},
		{"b drifts", b, map[string]string{"p": "fail"}, []string{"p"}, 1, 0},
		{"b is gone", b, nil, nil, 0, 0},
	}
	for _, s := range steps {
		tl.set(s.pod, s.results, s.drifted)
		if p, q := tl.driftedPods("p"), tl.driftedPods("q"); p != s.p || q != s.q {
			t.Fatalf("%s: drifted pods p %d q %d, want %d %d", s.name, p, q, s.p, s.q)
		}
	}
	if len(tl.drifted) != 0 {
		t.Errorf("entries left: %v", tl.drifted)
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestTruncateKeepsUTF8(t *testing.T) {
	note := strings.Repeat("é", maxEventNote) // 2 bytes each
	got := truncate(note, maxEventNote)
	if len(got) > maxEventNote || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Errorf("truncated to %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	if short := "fine"; truncate(short, maxEventNote) != short {
		t.Errorf("a short note was changed")
	}
}

// Evaluated says whether some running pods have an error result, leaving
// Ready to say whether the policy compiled.
func TestEvaluatedCondition(t *testing.T) {
	ok := evaluatedCondition(3, 0)
	if ok.Type != v1beta1.ConditionEvaluated || ok.Status != metav1.ConditionTrue || ok.Reason != v1beta1.ReasonAllEvaluated || ok.ObservedGeneration != 3 {
		t.Errorf("no errors: %+v", ok)
	}
	bad := evaluatedCondition(3, 2)
	if bad.Status != metav1.ConditionFalse || bad.Reason != v1beta1.ReasonEvaluationErrors || !strings.Contains(bad.Message, "2 running pod(s)") {
		t.Errorf("2 errors: %+v", bad)
	}
}
