package policystore

import (
	"errors"
	"testing"

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
	if s.Set().Len() != 2 {
		t.Errorf("the set holds %d policies, want 2: a broken policy stays, to give error results", s.Set().Len())
	}

	if err := s.Apply(cip("broken", 2, `spec: hostPID: false`)); err != nil {
		t.Errorf("fixed in generation 2: %v", err)
	}
	s.Remove("good")
	s.Remove("never-there")
	if _, _, known := s.Status("good"); known || s.Set().Len() != 1 {
		t.Errorf("after Remove: good known=%v, set of %d", known, s.Set().Len())
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
