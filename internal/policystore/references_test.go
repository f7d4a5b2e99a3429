package policystore

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/verify"
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

// trustRoots is a Compiler.TrustRoot over a map that the test changes.
type trustRoots struct {
	mu sync.Mutex
	m  map[string]*verify.TrustRoot
}

func (r *trustRoots) get(name string) (*verify.TrustRoot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tr, ok := r.m[name]; ok {
		return tr, nil
	}
	return nil, fmt.Errorf("trustroot %q not found", name)
}

func (r *trustRoots) set(name string, tr *verify.TrustRoot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[name] = tr
}

// ctlog.trustRootRef and rfc3161timestamp.trustRootRef name TrustRoots as
// keyless.trustRootRef does: a policy naming a missing one is broken until
// it appears, and a change of one compiles again only the policies naming it.
func TestRefreshRecompilesThePoliciesThatNameATrustRoot(t *testing.T) {
	roots := &trustRoots{m: map[string]*verify.TrustRoot{}}
	s := New(policy.Compiler{TrustRoot: roots.get})
	keyed := func(name string, a v1beta1.Authority) *v1beta1.ClusterImagePolicy {
		p := cip(name, 1, "")
		p.Spec.Policy = nil
		a.Key = &v1beta1.KeyRef{Data: string(verifytest.PublicKeyPEM(t))}
		p.Spec.Authorities = []v1beta1.Authority{a}
		return p
	}
	logged := keyed("logged", v1beta1.Authority{CTLog: &v1beta1.TLog{TrustRootRef: "rekor"}})
	stamped := keyed("stamped", v1beta1.Authority{RFC3161Timestamp: &v1beta1.RFC3161Timestamp{TrustRootRef: "tsa"}})
	for p, want := range map[*v1beta1.ClusterImagePolicy]string{
		logged:  `spec.authorities[0].ctlog.trustRootRef: trustroot "rekor" not found`,
		stamped: `spec.authorities[0].rfc3161timestamp.trustRootRef: trustroot "tsa" not found`,
	} {
		if err := s.Apply(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v, want %q", p.Name, err, want)
		}
	}
	var changed []string
	s.OnChange(func(name string) { changed = append(changed, name) })
	vs := &verify.TrustRoot{Name: "virtual", Material: verifytest.NewVirtualSigstore(t)}

	roots.set("rekor", vs)
	s.Refresh(Ref{Kind: "TrustRoot", Name: "rekor"})
	if _, err, _ := s.Status("logged"); err != nil {
		t.Fatalf("after the ctlog TrustRoot appeared: %v", err)
	}
	if _, err, _ := s.Status("stamped"); err == nil {
		t.Fatal("stamped compiled without its TrustRoot")
	}
	if strings.Join(changed, ",") != "logged" {
		t.Fatalf("changed %v, want logged only", changed)
	}

	roots.set("tsa", vs)
	s.Refresh(Ref{Kind: "TrustRoot", Name: "tsa"})
	if _, err, _ := s.Status("stamped"); err != nil {
		t.Fatalf("after the rfc3161timestamp TrustRoot appeared: %v", err)
	}
	if strings.Join(changed, ",") != "logged,stamped" {
		t.Fatalf("changed %v, want logged then stamped", changed)
	}
}
