package policystore

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// secrets is a Compiler.Secret over a map that the test changes.
type secrets struct {
	mu    sync.Mutex
	data  map[string]map[string][]byte
	reads int
}

func (s *secrets) get(name string) (*corev1.Secret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	d, ok := s.data[name]
	if !ok {
		return nil, fmt.Errorf("not found in namespace vigil-system")
	}
	return &corev1.Secret{Data: d}, nil
}

// A policy whose key.secretRef cannot be read is broken until the Secret
// appears; a change of the Secret compiles it again, and only it.
func TestRefreshRecompilesThePoliciesThatNameAReference(t *testing.T) {
	sec := &secrets{data: map[string]map[string][]byte{}}
	s := New(policy.Compiler{Secret: sec.get})
	keyed := cip("keyed", 1, "")
	keyed.Spec.Policy = nil
	keyed.Spec.Authorities = []v1beta1.Authority{{Key: &v1beta1.KeyRef{SecretRef: &corev1.SecretReference{Name: "release-key"}}}}
	if err := s.Apply(cip("other", 1, `spec: hostNetwork: false`)); err != nil {
		t.Fatal(err)
	}
	err := s.Apply(keyed)
	if err == nil || !strings.Contains(err.Error(), `spec.authorities[0].key.secretRef: secret "release-key": not found`) {
		t.Fatalf("missing Secret: %v", err)
	}
	var changed []string
	s.OnChange(func(name string) { changed = append(changed, name) })

	s.Refresh(Ref{Kind: "Secret", Name: "unrelated"})
	if len(changed) != 0 {
		t.Fatalf("a Secret no policy names recompiled %v", changed)
	}

	sec.data["release-key"] = map[string][]byte{"cosign.pub": verifytest.PublicKeyPEM(t)}
	s.Refresh(Ref{Kind: "Secret", Name: "release-key"})
	if _, err, _ := s.Status("keyed"); err != nil {
		t.Fatalf("after the Secret appeared: %v", err)
	}
	if strings.Join(changed, ",") != "keyed" {
		t.Fatalf("changed %v, want keyed only", changed)
	}

	before := sec.reads
	if err := s.Apply(keyed); err != nil || sec.reads != before {
		t.Fatalf("re-applying the same generation read the Secret again (%d reads) or failed: %v", sec.reads-before, err)
	}

	sec.data["release-key"]["second"] = verifytest.PublicKeyPEM(t)
	s.Refresh(Ref{Kind: "Secret", Name: "release-key"})
	if _, err, _ := s.Status("keyed"); err == nil || !strings.Contains(err.Error(), "contains multiple data entries, only one is supported") {
		t.Fatalf("Secret with two entries: %v", err)
	}
	if got := judging(t, s); got != "keyed=error other=pass" {
		t.Errorf("a pod is judged %s, want keyed=error other=pass", got)
	}

	s.Remove("keyed")
	changed = nil
	s.Refresh(Ref{Kind: "Secret", Name: "release-key"})
	if len(changed) != 0 {
		t.Fatalf("a removed policy was compiled again: %v", changed)
	}
}
