// Package policystore keeps every ClusterImagePolicy compiled, once per
// generation, and publishes the current policy.Set. Every replica runs one:
// the webhook decides with it, the reconcilers judge running pods with it.
package policystore

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
)

// Store holds the compiled policies. The zero value is not usable; use New.
type Store struct {
	compiler policy.Compiler

	mu        sync.Mutex
	entries   map[string]entry
	listeners []func(name string)

	set    atomic.Pointer[policy.Set]
	synced chan struct{}
	once   sync.Once
}

type entry struct {
	uid        string
	generation int64
	compiled   *policy.CompiledPolicy
	broken     *policy.BrokenPolicy
}

// New returns an empty store whose policies compile with c.
func New(c policy.Compiler) *Store {
	s := &Store{compiler: c, entries: map[string]entry{}, synced: make(chan struct{})}
	s.set.Store(policy.NewSet(nil, nil))
	return s
}

// Set is the current snapshot; it never changes once returned.
func (s *Store) Set() *policy.Set { return s.set.Load() }

// Apply compiles cip unless this generation is already compiled and returns
// the compile error, if any; a policy that does not compile stays in the set
// as broken, so the objects it matches get error results.
func (s *Store) Apply(cip *v1beta1.ClusterImagePolicy) error {
	s.mu.Lock()
	old, ok := s.entries[cip.Name]
	s.mu.Unlock()
	if ok && old.generation == cip.Generation && old.uid == string(cip.UID) {
		return old.err()
	}
	e := entry{uid: string(cip.UID), generation: cip.Generation}
	if p, err := s.compiler.Compile(cip); err != nil {
		e.broken = policy.NewBrokenPolicy(cip, err)
	} else {
		e.compiled = p
	}
	s.mu.Lock()
	s.entries[cip.Name] = e
	s.publishLocked()
	listeners := s.listeners
	s.mu.Unlock()
	for _, l := range listeners {
		l(cip.Name)
	}
	return e.err()
}

// Remove drops the policy named name.
func (s *Store) Remove(name string) {
	s.mu.Lock()
	_, ok := s.entries[name]
	delete(s.entries, name)
	if ok {
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
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
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
