package policystore

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/apis/policy/v1alpha1"
	"github.com/vigil-dev/vigil/internal/verify"
)

// +kubebuilder:rbac:groups=policy.sigstore.dev,resources=trustroots,verbs=get;list;watch

// Resolvers read the Secrets (in Vigil's namespace) and TrustRoots that
// policies name, for policy.Compiler's Secret and TrustRoot. They read
// through Reader (the manager's cache, which already holds the Secrets of
// Vigil's namespace); a TrustRoot is loaded once per resourceVersion.
type Resolvers struct {
	Reader    client.Reader
	Namespace string
	Options   verify.TrustRootOptions

	mu    sync.Mutex
	roots map[string]loadedRoot
}

type loadedRoot struct {
	resourceVersion string
	root            *verify.TrustRoot
}

// Secret reads the Secret name of Vigil's namespace.
func (r *Resolvers) Secret(name string) (*corev1.Secret, error) {
	var s corev1.Secret
	err := r.Reader.Get(context.Background(), types.NamespacedName{Namespace: r.Namespace, Name: name}, &s)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("not found in namespace %s", r.Namespace)
	}
	return &s, err
}

// TrustRoot reads and loads the TrustRoot name.
func (r *Resolvers) TrustRoot(name string) (*verify.TrustRoot, error) {
	var tr v1alpha1.TrustRoot
	if err := r.Reader.Get(context.Background(), types.NamespacedName{Name: name}, &tr); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("trustroot %q not found", name)
		}
		return nil, fmt.Errorf("trustroot %q: %w", name, err)
	}
	r.mu.Lock()
	if l, ok := r.roots[name]; ok && l.resourceVersion == tr.ResourceVersion {
		r.mu.Unlock()
		return l.root, nil
	}
	r.mu.Unlock()
	root, err := verify.LoadTrustRoot(&tr, r.Options)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.roots == nil {
		r.roots = map[string]loadedRoot{}
	}
	r.roots[name] = loadedRoot{resourceVersion: tr.ResourceVersion, root: root}
	r.mu.Unlock()
	return root, nil
}

// refreshOn makes every change of the informer's objects (Secrets of
// namespace, or TrustRoots) compile again the policies that name them.
func (w *Watcher) refreshOn(inf cache.Informer, kind, namespace string) error {
	refresh := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		o, ok := obj.(client.Object)
		if !ok || (namespace != "" && o.GetNamespace() != namespace) {
			return
		}
		w.Store.Refresh(Ref{Kind: kind, Name: o.GetName()})
	}
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: refresh,
		UpdateFunc: func(old, obj any) {
			o, n := old.(client.Object), obj.(client.Object)
			if o.GetResourceVersion() != n.GetResourceVersion() {
				refresh(obj)
			}
		},
		DeleteFunc: refresh,
	})
	return err
}
