package admission

import (
	"context"
	"fmt"
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

// Config follows the config-policy-controller ConfigMap; changes apply to the
// next request, without a restart.
type Config struct {
	// Default applies while the ConfigMap or its key is absent.
	Default policy.NoMatchPolicy

	current atomic.Pointer[policy.NoMatchPolicy]
}

// NoMatchPolicy is the current setting.
func (c *Config) NoMatchPolicy() policy.NoMatchPolicy {
	if p := c.current.Load(); p != nil {
		return *p
	}
	if c.Default == "" {
		return policy.NoMatchDeny
	}
	return c.Default
}

// Update reads the setting from cm (nil: the ConfigMap is gone). An unknown
// value means deny, as in policy-controller, and is returned as an error.
func (c *Config) Update(cm *corev1.ConfigMap) error {
	if cm == nil {
		c.current.Store(nil)
		return nil
	}
	raw, ok := cm.Data[NoMatchPolicyKey]
	if !ok {
		c.current.Store(nil)
		return nil
	}
	p, err := policy.ParseNoMatchPolicy(raw)
	if err != nil {
		deny := policy.NoMatchDeny
		c.current.Store(&deny)
		return fmt.Errorf("ConfigMap %s/%s key %s: %w; using deny", cm.Namespace, cm.Name, NoMatchPolicyKey, err)
	}
	c.current.Store(&p)
	return nil
}

// ConfigWatcher feeds a Config from the manager's cache, on every replica.
type ConfigWatcher struct {
	Config    *Config
	Cache     cache.Cache
	Namespace string
	Log       logr.Logger
}

// NeedLeaderElection is false: every replica's webhook reads the setting.
func (w *ConfigWatcher) NeedLeaderElection() bool { return false }

// Start watches the ConfigMap until ctx ends.
func (w *ConfigWatcher) Start(ctx context.Context) error {
	inf, err := w.Cache.GetInformer(ctx, &corev1.ConfigMap{})
	if err != nil {
		return fmt.Errorf("watch ConfigMap %s: %w", ConfigMapName, err)
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
		if err := w.Config.Update(cm); err != nil {
			w.Log.Error(err, "bad setting")
		}
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { update(obj, false) },
		UpdateFunc: func(_, obj any) { update(obj, false) },
		DeleteFunc: func(obj any) { update(obj, true) },
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
