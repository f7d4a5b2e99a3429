// Package settings follows policy-controller's config-policy-controller
// ConfigMap in Vigil's namespace. One watcher per process keeps one value;
// the webhook and the reconcilers read it, and listeners hear of a change
// only after the new value is in place, so nothing judged because of a
// change is judged with the old setting.
package settings

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/vigil-dev/vigil/internal/policy"
)

// ConfigMapName is policy-controller's ConfigMap of settings, read from
// Vigil's own namespace.
const ConfigMapName = "config-policy-controller"

// NoMatchPolicyKey is the key of the no-match-policy setting.
const NoMatchPolicyKey = "no-match-policy"

// Settings holds the current settings; use New.
type Settings struct {
	// Default applies while the ConfigMap or its key is absent.
	Default policy.NoMatchPolicy

	current   atomic.Pointer[policy.NoMatchPolicy]
	mu        sync.Mutex
	listeners []func()
	synced    chan struct{}
	once      sync.Once
}

// New returns settings whose no-match-policy is def until the ConfigMap says
// otherwise.
func New(def policy.NoMatchPolicy) *Settings {
	return &Settings{Default: def, synced: make(chan struct{})}
}

// MarkSynced says the settings now reflect the ConfigMap as it was when the
// watch started; the Watcher calls it.
func (s *Settings) MarkSynced() { s.once.Do(func() { close(s.synced) }) }

// Synced is closed once the settings reflect the ConfigMap.
func (s *Settings) Synced() <-chan struct{} { return s.synced }

// NoMatchPolicy is the current setting.
func (s *Settings) NoMatchPolicy() policy.NoMatchPolicy {
	if p := s.current.Load(); p != nil {
		return *p
	}
	if s.Default == "" {
		return policy.NoMatchDeny
	}
	return s.Default
}

// OnChange registers f, called after the setting changed. f must not block.
func (s *Settings) OnChange(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, f)
}

// Update reads the setting from cm (nil: the ConfigMap is gone) and tells
// the listeners when it changed. An unknown value means deny, as in
// policy-controller, and is returned as an error.
func (s *Settings) Update(cm *corev1.ConfigMap) error {
	next, err := parse(cm)
	before := s.NoMatchPolicy()
	s.current.Store(next)
	if s.NoMatchPolicy() != before {
		s.mu.Lock()
		listeners := append([]func(){}, s.listeners...)
		s.mu.Unlock()
		for _, f := range listeners {
			f()
		}
	}
	return err
}

// parse reads the no-match setting of cm; nil means the default applies.
func parse(cm *corev1.ConfigMap) (*policy.NoMatchPolicy, error) {
	if cm == nil {
		return nil, nil
	}
	raw, ok := cm.Data[NoMatchPolicyKey]
	if !ok {
		return nil, nil
	}
	p, err := policy.ParseNoMatchPolicy(raw)
	if err != nil {
		deny := policy.NoMatchDeny
		return &deny, fmt.Errorf("ConfigMap %s/%s key %s: %w; using deny", cm.Namespace, cm.Name, NoMatchPolicyKey, err)
	}
	return &p, nil
}

// Watcher feeds Settings from the manager's cache. Every replica runs one:
// every replica's webhook reads the setting.
type Watcher struct {
	Settings  *Settings
	Cache     cache.Cache
	Namespace string
	Log       logr.Logger
}

// NeedLeaderElection is false: every replica's webhook reads the setting.
func (w *Watcher) NeedLeaderElection() bool { return false }

// Start watches the ConfigMap until ctx ends.
func (w *Watcher) Start(ctx context.Context) error {
	inf, err := w.Cache.GetInformer(ctx, &corev1.ConfigMap{})
	if err != nil {
		return fmt.Errorf("watch ConfigMap %s/%s: %w", w.Namespace, ConfigMapName, err)
	}
	update := func(obj any, gone bool) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || cm.Name != ConfigMapName || cm.Namespace != w.Namespace {
			return
		}
		if gone {
			cm = nil
		}
		if err := w.Settings.Update(cm); err != nil {
			w.Log.Error(err, "bad setting")
		}
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { update(obj, false) },
		UpdateFunc: func(_, obj any) { update(obj, false) },
		DeleteFunc: func(obj any) { update(obj, true) },
	})
	if err != nil {
		return fmt.Errorf("watch ConfigMap %s/%s: %w", w.Namespace, ConfigMapName, err)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return nil // stopping
	}
	w.Settings.MarkSynced()
	<-ctx.Done()
	return nil
}
