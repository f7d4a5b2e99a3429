// Package policystore keeps every ClusterImagePolicy compiled, once per
// generation, and publishes the current policy.Set. Every replica runs one:
// the webhook decides with it, the reconcilers judge running pods with it.
package policystore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/apis/policy/v1alpha1"
	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
)

// Store holds the compiled policies. The zero value is not usable; use New.
type Store struct {
	// compile is the policy.Compiler's Compile (tests replace it).
	compile func(*v1beta1.ClusterImagePolicy) (*policy.CompiledPolicy, error)
	// retryBase and retryMax bound the backoff of compiling again a policy
	// whose compile error is transient (policy.InvalidPolicyError.Transient).
	retryBase, retryMax time.Duration

	mu      sync.Mutex
	entries map[string]entry
	// latest is the uid and generation of the last Apply of each policy:
	// a compilation that finishes after a newer one started is dropped.
	latest map[string]version
	// cips are the policies last applied, refs the Secrets and TrustRoots
	// each names: a change of one compiles its policies again (Refresh).
	cips      map[string]*v1beta1.ClusterImagePolicy
	refs      map[string][]Ref
	epoch     uint64
	listeners []func(name string)

	set    atomic.Pointer[policy.Set]
	synced chan struct{}
	once   sync.Once
}

type entry struct {
	uid        string
	generation int64
	epoch      uint64 // of the references' last change that compiled it
	compiled   *policy.CompiledPolicy
	broken     *policy.BrokenPolicy
	// failures counts the transient compile errors of this generation in a
	// row; retry compiles it again after a backoff.
	failures int
	retry    *time.Timer
}

type version struct {
	uid        string
	generation int64
	epoch      uint64
}

// Default backoff of compiling again a policy whose compile error is
// transient: 2s, 4s, 8s... up to 5 minutes. A policy that always breaks
// the compile time limit costs one sandbox (at most --policy-timeout of
// CPU) every 5 minutes.
const (
	defaultRetryBase = 2 * time.Second
	defaultRetryMax  = 5 * time.Minute
)

// New returns an empty store whose policies compile with c.
func New(c policy.Compiler) *Store {
	s := &Store{compile: c.Compile, retryBase: defaultRetryBase, retryMax: defaultRetryMax,
		entries: map[string]entry{}, latest: map[string]version{},
		cips: map[string]*v1beta1.ClusterImagePolicy{}, refs: map[string][]Ref{}, synced: make(chan struct{})}
	s.set.Store(policy.NewSet(nil, nil))
	return s
}

// Set is the current snapshot; it never changes once returned.
func (s *Store) Set() *policy.Set { return s.set.Load() }

// Apply compiles cip unless this generation is already compiled and returns
// the compile error, if any; a policy that does not compile stays in the set
// as broken, so the objects it matches get error results. A transient
// compile error (a compile limit hit, perhaps only because the replica was
// busy) is not final: the same generation is compiled again after a backoff.
func (s *Store) Apply(cip *v1beta1.ClusterImagePolicy) error {
	return s.apply(cip, false, false)
}

// apply compiles cip; retry: even if this generation was compiled, as long
// as its error was transient; force: a Secret or TrustRoot it names changed.
func (s *Store) apply(cip *v1beta1.ClusterImagePolicy, retry, force bool) error {
	v := version{uid: string(cip.UID), generation: cip.Generation}
	s.mu.Lock()
	old, ok := s.entries[cip.Name]
	if ok && old.generation == v.generation && old.uid == v.uid {
		v.epoch = old.epoch
	}
	if force {
		if l, ok := s.latest[cip.Name]; !ok || l.uid != v.uid || l.generation != v.generation {
			s.mu.Unlock()
			return nil // replaced or removed since Refresh read it
		}
		s.epoch++
		v.epoch = s.epoch
	}
	s.cips[cip.Name], s.refs[cip.Name] = cip, refsOf(cip)
	same := ok && old.generation == v.generation && old.uid == v.uid && old.epoch == v.epoch
	if same && (!retry || !transient(old.err())) {
		s.mu.Unlock()
		return old.err()
	}
	if retry && (!same || s.latest[cip.Name] != v) {
		s.mu.Unlock()
		return nil // replaced, being replaced or removed since the retry was scheduled
	}
	if !same && s.latest[cip.Name] == v {
		// Another Apply is compiling this very generation; two would
		// only wait for each other's compile slot.
		s.mu.Unlock()
		return nil
	}
	s.latest[cip.Name] = v
	s.mu.Unlock()

	e := entry{uid: v.uid, generation: v.generation, epoch: v.epoch}
	p, err := s.compile(cip)
	if err != nil {
		e.broken = policy.NewBrokenPolicy(cip, err)
	} else {
		e.compiled = p
	}

	s.mu.Lock()
	if s.latest[cip.Name] != v {
		s.mu.Unlock()
		return err // a newer Apply or a Remove came in meanwhile
	}
	old, ok = s.entries[cip.Name]
	if ok && old.retry != nil {
		old.retry.Stop()
	}
	if transient(err) {
		e.failures = 1
		if ok && old.uid == e.uid && old.generation == e.generation {
			e.failures = old.failures + 1
		}
		e.retry = time.AfterFunc(s.backoff(e.failures), func() { _ = s.apply(cip, true, false) })
	}
	s.entries[cip.Name] = e
	s.publishLocked()
	listeners := s.listeners
	s.mu.Unlock()
	for _, l := range listeners {
		l(cip.Name)
	}
	return e.err()
}

// backoff is the wait before the failures+1-th compilation.
func (s *Store) backoff(failures int) time.Duration {
	d := s.retryBase
	for i := 1; i < failures && d < s.retryMax; i++ {
		d *= 2
	}
	return min(d, s.retryMax)
}

func transient(err error) bool {
	var invalid *policy.InvalidPolicyError
	return errors.As(err, &invalid) && invalid.Transient
}

// Remove drops the policy named name.
func (s *Store) Remove(name string) {
	s.mu.Lock()
	e, ok := s.entries[name]
	delete(s.entries, name)
	delete(s.latest, name)
	delete(s.cips, name)
	delete(s.refs, name)
	if ok {
		if e.retry != nil {
			e.retry.Stop()
		}
		s.publishLocked()
	}
	listeners := s.listeners
	s.mu.Unlock()
	if ok {
		for _, l := range listeners {
			l(name)
		}
	}
}

// Ref names a Secret (key.secretRef, in Vigil's namespace) or a TrustRoot
// (trustRootRef) that a policy's compilation reads.
type Ref struct {
	Kind string // "Secret" or "TrustRoot"
	Name string
}

func refsOf(cip *v1beta1.ClusterImagePolicy) []Ref {
	var refs []Ref
	for _, a := range cip.Spec.Authorities {
		if a.Key != nil && a.Key.SecretRef != nil {
			refs = append(refs, Ref{"Secret", a.Key.SecretRef.Name})
		}
		for _, name := range trustRootRefs(a) {
			refs = append(refs, Ref{"TrustRoot", name})
		}
	}
	return refs
}

// trustRootRefs are the TrustRoots an authority names: keyless.trustRootRef,
// ctlog.trustRootRef and rfc3161timestamp.trustRootRef.
func trustRootRefs(a v1beta1.Authority) []string {
	var names []string
	if a.Keyless != nil && a.Keyless.TrustRootRef != "" {
		names = append(names, a.Keyless.TrustRootRef)
	}
	if a.CTLog != nil && a.CTLog.TrustRootRef != "" {
		names = append(names, a.CTLog.TrustRootRef)
	}
	if a.RFC3161Timestamp != nil && a.RFC3161Timestamp.TrustRootRef != "" {
		names = append(names, a.RFC3161Timestamp.TrustRootRef)
	}
	return names
}

// Refresh compiles again the policies that name ref, whose content changed
// (or which appeared or went away).
func (s *Store) Refresh(ref Ref) {
	s.mu.Lock()
	var cips []*v1beta1.ClusterImagePolicy
	for n, refs := range s.refs {
		if slices.Contains(refs, ref) {
			cips = append(cips, s.cips[n])
		}
	}
	s.mu.Unlock()
	for _, cip := range cips {
		_ = s.apply(cip, false, true)
	}
}

// Status says whether the policy named name is known, at which generation,
// and its compile error.
func (s *Store) Status(name string) (generation int64, err error, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[name]
	return e.generation, e.err(), ok
}

// OnChange registers f, called with a policy's name after the set changed
// because of it. f must not block.
func (s *Store) OnChange(f func(name string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, f)
}

// MarkSynced says the store now holds every policy that existed when it
// started; the Watcher calls it once its informer has synced.
func (s *Store) MarkSynced() { s.once.Do(func() { close(s.synced) }) }

// Synced is closed once the store holds every policy that existed when it started.
func (s *Store) Synced() <-chan struct{} { return s.synced }

// WaitSynced waits until the store is synced or ctx ends.
func (s *Store) WaitSynced(ctx context.Context) error {
	select {
	case <-s.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("policies not loaded yet: %w", ctx.Err())
	}
}

func (e entry) err() error {
	if e.broken != nil {
		return e.broken.Err
	}
	return nil
}

func (s *Store) publishLocked() {
	names := make([]string, 0, len(s.entries))
	for n := range s.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var compiled []*policy.CompiledPolicy
	var broken []*policy.BrokenPolicy
	for _, n := range names {
		if e := s.entries[n]; e.compiled != nil {
			compiled = append(compiled, e.compiled)
		} else {
			broken = append(broken, e.broken)
		}
	}
	s.set.Store(policy.NewSet(compiled, broken))
}

// Watcher feeds a Store from the manager's informer. It runs on every
// replica, leader or not, since every replica serves the webhook.
type Watcher struct {
	Store *Store
	Cache cache.Cache
	// Namespace, when set, is Vigil's namespace: its Secrets and the
	// TrustRoots are watched too, and a change of one compiles again the
	// policies that name it (their compiler reads them through Resolvers).
	Namespace string
}

// NeedLeaderElection is false: the webhook on every replica needs the policies.
func (w *Watcher) NeedLeaderElection() bool { return false }

// Start registers the informer handlers and marks the store synced once the
// initial list is in.
func (w *Watcher) Start(ctx context.Context) error {
	inf, err := w.Cache.GetInformer(ctx, &v1beta1.ClusterImagePolicy{})
	if err != nil {
		return fmt.Errorf("watch ClusterImagePolicies: %w", err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.apply(obj) },
		UpdateFunc: func(_, obj any) { w.apply(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if cip, ok := obj.(*v1beta1.ClusterImagePolicy); ok {
				w.Store.Remove(cip.Name)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watch ClusterImagePolicies: %w", err)
	}
	synced := []toolscache.InformerSynced{reg.HasSynced}
	if w.Namespace != "" {
		for _, ref := range []struct {
			obj      client.Object
			kind, ns string
		}{{&corev1.Secret{}, "Secret", w.Namespace}, {&v1alpha1.TrustRoot{}, "TrustRoot", ""}} {
			inf, err := w.Cache.GetInformer(ctx, ref.obj)
			if err != nil {
				return fmt.Errorf("watch %ss: %w", ref.kind, err)
			}
			if err := w.refreshOn(inf, ref.kind, ref.ns); err != nil {
				return fmt.Errorf("watch %ss: %w", ref.kind, err)
			}
			synced = append(synced, inf.HasSynced)
		}
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // stopping
	}
	w.Store.MarkSynced()
	<-ctx.Done()
	return nil
}

func (w *Watcher) apply(obj any) {
	if cip, ok := obj.(*v1beta1.ClusterImagePolicy); ok {
		_ = w.Store.Apply(cip) // a compile error is kept in the store and reported by the policy reconciler
	}
}
