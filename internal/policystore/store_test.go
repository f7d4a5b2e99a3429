package policystore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
)

func cip(name string, generation int64, cue string) *v1beta1.ClusterImagePolicy {
	return &v1beta1.ClusterImagePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: generation, UID: types.UID("uid-" + name)},
		Spec: v1beta1.ClusterImagePolicySpec{
			Images:      []v1beta1.ImagePattern{{Glob: "**"}},
			Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
			Policy:      &v1beta1.Policy{Type: v1beta1.PolicyTypeCUE, Data: cue},
		},
	}
}

func TestStoreCompilesOncePerGenerationAndKeepsBrokenPolicies(t *testing.T) {
	s := New(policy.Compiler{})
	var changed []string
	s.OnChange(func(name string) { changed = append(changed, name) })

	if err := s.Apply(cip("good", 1, `spec: hostNetwork: false`)); err != nil {
		t.Fatal(err)
	}
	first := s.Set()
	if err := s.Apply(cip("good", 1, `spec: hostNetwork: false`)); err != nil {
		t.Fatal(err)
	}
	if s.Set() != first || len(changed) != 1 {
		t.Errorf("re-applying the same generation recompiled (set replaced: %v, changes %v)", s.Set() != first, changed)
	}

	err := s.Apply(cip("broken", 1, `spec: {`))
	var invalid *policy.InvalidPolicyError
	if !errors.As(err, &invalid) || invalid.Reason != v1beta1.ReasonCompileError {
		t.Fatalf("broken policy: err = %v, want a CompileError", err)
	}
	if gen, serr, known := s.Status("broken"); !known || gen != 1 || serr == nil {
		t.Errorf("Status(broken) = %d, %v, %v; want generation 1 and its compile error", gen, serr, known)
	}
	if got := judging(t, s); got != "broken=error good=pass" {
		t.Errorf("a pod is judged %s; want broken=error good=pass: a broken policy stays, to give error results", got)
	}

	if err := s.Apply(cip("broken", 2, `spec: hostPID: false`)); err != nil {
		t.Errorf("fixed in generation 2: %v", err)
	}
	s.Remove("good")
	s.Remove("never-there")
	if _, _, known := s.Status("good"); known || judging(t, s) != "broken=pass" {
		t.Errorf("after Remove: good known=%v, a pod judged %s", known, judging(t, s))
	}
	want := []string{"good", "broken", "broken", "good"}
	if len(changed) != len(want) {
		t.Fatalf("changes %v, want %v", changed, want)
	}
	for i := range want {
		if changed[i] != want[i] {
			t.Errorf("changes %v, want %v", changed, want)
			break
		}
	}
}

func TestStoreSynced(t *testing.T) {
	s := New(policy.Compiler{})
	select {
	case <-s.Synced():
		t.Fatal("synced before MarkSynced")
	default:
	}
	s.MarkSynced()
	s.MarkSynced() // idempotent
	<-s.Synced()
}

// exploding is a CUE policy whose compilation runs for minutes unbounded.
func exploding() string {
	var terms []string
	for i := range 22 {
		terms = append(terms, fmt.Sprintf("({a%d: 1} | {b%d: 1})", i, i))
	}
	return "spec: x: " + strings.Join(terms, " & ") + "\n"
}

// A hostile policy fails to compile within the compile time limit and stays
// broken: the pods it matches are denied with an error naming it.
func TestStoreHostilePolicy(t *testing.T) {
	s := New(policy.Compiler{CompileTimeout: 200 * time.Millisecond})
	s.retryBase = time.Hour // not retried during this test
	start := time.Now()
	err := s.Apply(cip("exploding", 1, exploding()))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Apply took %s", took)
	}
	var invalid *policy.InvalidPolicyError
	if !errors.As(err, &invalid) || !invalid.Transient || invalid.Field != "spec.policy.data" ||
		!strings.Contains(err.Error(), "took longer than its limit of 200ms") {
		t.Fatalf("err = %v, want the compile time limit on spec.policy.data", err)
	}
	obj, err := policy.DecodeObject([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"ubuntu"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	d := s.Set().Decide(context.Background(), obj, policy.Options{})
	if d.Allowed || len(d.Results) != 1 || d.Results[0].Result != policy.ResultError ||
		!strings.Contains(d.DenyMessage, "failed policy: exploding") {
		t.Errorf("decision %+v, want a denial with an error naming the policy", d)
	}
	s.Remove("exploding")
}

// flaky compiles with the default limits, but the first `bad` times fails
// with a transient error, as when a replica is too busy to compile within
// the time limit.
type flaky struct {
	calls, bad atomic.Int32
}

func newFlaky(bad int32) *flaky {
	f := &flaky{}
	f.bad.Store(bad)
	return f
}

func (f *flaky) compile(cip *v1beta1.ClusterImagePolicy) (*policy.CompiledPolicy, error) {
	if f.calls.Add(1) <= f.bad.Load() {
		return nil, &policy.InvalidPolicyError{Policy: cip.Name, Reason: v1beta1.ReasonCompileError, Field: "spec.policy.data", Transient: true,
			Message: "spec.policy.data: failed to compile the cue policy: the compilation took longer than its limit of 2s"}
	}
	return policy.Compile(cip)
}

// A transient compile error is retried with a backoff until the policy
// compiles; the store's listeners hear of it.
func TestStoreRetriesTransientCompileErrors(t *testing.T) {
	r := newFlaky(2)
	s := New(policy.Compiler{})
	s.compile = r.compile
	s.retryBase = 10 * time.Millisecond
	changed := make(chan string, 10)
	s.OnChange(func(name string) { changed <- name })
	if err := s.Apply(cip("flaky", 1, "spec: hostNetwork: false")); !transient(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("not compiled after %d compilations", r.calls.Load())
		}
		if _, err, _ := s.Status("flaky"); err == nil {
			break
		}
	}
	if got := r.calls.Load(); got != 3 {
		t.Errorf("compiled %d times, want 3", got)
	}
	if _, err, _ := s.Status("flaky"); err != nil {
		t.Errorf("Status: %v", err)
	}
	// Re-applying the same generation does not compile it again.
	if err := s.Apply(cip("flaky", 1, "spec: hostNetwork: false")); err != nil || r.calls.Load() != 3 {
		t.Errorf("re-applied: %v after %d compilations", err, r.calls.Load())
	}
}

// Ordinary compile errors are final for their generation; a removed or
// replaced policy is not retried.
func TestStoreRetriesOnlyWhatIsCurrent(t *testing.T) {
	s := New(policy.Compiler{})
	s.retryBase = 10 * time.Millisecond
	if err := s.Apply(cip("syntax", 1, "spec: {")); err == nil || transient(err) {
		t.Fatalf("err = %v, want a final compile error", err)
	}
	s.mu.Lock()
	timer := s.entries["syntax"].retry
	s.mu.Unlock()
	if timer != nil {
		t.Error("a syntax error is retried")
	}

	r := newFlaky(1 << 30)
	s = New(policy.Compiler{})
	s.compile = r.compile
	s.retryBase = 20 * time.Millisecond
	if err := s.Apply(cip("gone", 1, "spec: hostNetwork: false")); !transient(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	s.Remove("gone")
	time.Sleep(100 * time.Millisecond) // a compilation under way has asked for its body
	calls := r.calls.Load()
	time.Sleep(500 * time.Millisecond)
	if got := r.calls.Load(); got != calls {
		t.Errorf("a removed policy was compiled %d more times", got-calls)
	}
	if err := s.Apply(cip("replaced", 1, "spec: hostNetwork: false")); !transient(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	r.bad.Store(0) // generation 2 compiles; generation 1 must not be tried again
	if err := s.Apply(cip("replaced", 2, "spec: hostPID: false")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	calls = r.calls.Load()
	time.Sleep(500 * time.Millisecond)
	if got := r.calls.Load(); got != calls {
		t.Errorf("a replaced generation was compiled %d more times", got-calls)
	}
	if gen, err, _ := s.Status("replaced"); gen != 2 || err != nil {
		t.Errorf("Status(replaced) = %d, %v", gen, err)
	}
}

// judging is how the store's current set judges a pod of any image:
// policy=result, by policy name.
func judging(t *testing.T, s *Store) string {
	t.Helper()
	pod, err := policy.DecodeObject([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns"},
		"spec":{"containers":[{"name":"c","image":"registry.test/app"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range s.Set().Decide(t.Context(), pod, policy.Options{NoMatchPolicy: policy.NoMatchAllow}).Results {
		out = append(out, r.Policy+"="+r.Result)
	}
	return strings.Join(out, " ")
}
