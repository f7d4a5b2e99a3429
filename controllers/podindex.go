package controllers

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// podIndex is what the verify path knows of every pod without reading it:
// its UID, its resourceVersion and whether it is being deleted, kept from a
// watch of pod metadata. It is the pod controller's source of pod events: a
// pod is queued when it appears, changes or goes, and the report of a pod
// that went is noted as stale.
//
// It stands in for an informer cache of pod metadata, which kept a whole
// metadata object, two cache keys and a namespace index per pod: about 480
// bytes a pod against about 170 here, at 30,000 pods the largest part of
// Vigil's heap after the reports (BENCHMARKS.md, benchmark 6). client-go's
// reflector does the listing and watching (resuming, relisting, bookmarks);
// podIndex is the store it writes to.
type podIndex struct {
	lw    cache.ListerWatcher
	stale *staleReports

	mu   sync.RWMutex
	pods map[types.NamespacedName]podEntry

	q      atomic.Pointer[queue]
	synced chan struct{}
	once   sync.Once
}

// podEntry is one pod as the index keeps it.
type podEntry struct {
	uid             types.UID
	resourceVersion string
	deleting        bool
}

var _ source.SyncingSource = (*podIndex)(nil)

// newPodIndex watches the metadata of every pod through mc.
func newPodIndex(mc metadata.Interface, stale *staleReports) *podIndex {
	pods := mc.Resource(corev1.SchemeGroupVersion.WithResource("pods"))
	return &podIndex{
		lw: &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return pods.List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return pods.Watch(ctx, o)
			},
		},
		stale:  stale,
		pods:   map[types.NamespacedName]podEntry{},
		synced: make(chan struct{}),
	}
}

// Start watches pods until ctx ends, queueing them on q.
func (x *podIndex) Start(ctx context.Context, q queue) error {
	if !x.q.CompareAndSwap(nil, &q) {
		return fmt.Errorf("the pod index is started already")
	}
	r := cache.NewReflectorWithOptions(x.lw, &metav1.PartialObjectMetadata{}, x, cache.ReflectorOptions{Name: "pod metadata"})
	go r.RunWithContext(ctx)
	return nil
}

// WaitForSync returns once the first list of pods is in the index.
func (x *podIndex) WaitForSync(ctx context.Context) error {
	select {
	case <-x.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pod metadata not listed: %w", ctx.Err())
	}
}

// get is the pod key as last seen, and whether it exists.
func (x *podIndex) get(key types.NamespacedName) (podEntry, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.pods[key]
	return e, ok
}

// keys are the pods of namespace, of every namespace when it is empty.
func (x *podIndex) keys(namespace string) []types.NamespacedName {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]types.NamespacedName, 0, len(x.pods))
	for key := range x.pods {
		if namespace == "" || key.Namespace == namespace {
			out = append(out, key)
		}
	}
	return out
}

// The store the reflector writes to (cache.ReflectorStore).

func (x *podIndex) Add(obj any) error    { return x.set(obj) }
func (x *podIndex) Update(obj any) error { return x.set(obj) }
func (x *podIndex) Resync() error        { return nil }

func (x *podIndex) set(obj any) error {
	key, e, err := entryOf(obj)
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.pods[key] = e
	x.mu.Unlock()
	x.queue(key)
	return nil
}

func (x *podIndex) Delete(obj any) error {
	key, e, err := entryOf(obj)
	if err != nil {
		return err
	}
	x.mu.Lock()
	delete(x.pods, key)
	x.mu.Unlock()
	x.gone(key, e.uid)
	return nil
}

// Replace takes a whole list: the pods missing from it went while the
// watch was down, the others are queued if they are new or changed.
func (x *podIndex) Replace(list []any, _ string) error {
	next := make(map[types.NamespacedName]podEntry, len(list))
	for _, obj := range list {
		key, e, err := entryOf(obj)
		if err != nil {
			return err
		}
		next[key] = e
	}
	x.mu.Lock()
	prev := x.pods
	x.pods = next
	x.mu.Unlock()
	for key, e := range prev {
		if _, ok := next[key]; !ok {
			x.gone(key, e.uid)
		}
	}
	for key, e := range next {
		if prev[key] != e {
			x.queue(key)
		}
	}
	x.once.Do(func() { close(x.synced) })
	return nil
}

func (x *podIndex) queue(key types.NamespacedName) {
	if q := x.q.Load(); q != nil {
		(*q).Add(ctrl.Request{NamespacedName: key})
	}
}

// gone queues a pod that went, its report noted as stale (a report is
// named after its pod's UID).
func (x *podIndex) gone(key types.NamespacedName, uid types.UID) {
	if uid != "" {
		x.stale.add(key, string(uid))
	}
	x.queue(key)
}

// entryOf is the key and entry of a pod's metadata; the namespace is one
// copy shared by its pods.
func entryOf(obj any) (types.NamespacedName, podEntry, error) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return types.NamespacedName{}, podEntry{}, fmt.Errorf("pod index: got a %T, want pod metadata", obj)
	}
	key := types.NamespacedName{Namespace: unique.Make(m.Namespace).Value(), Name: m.Name}
	return key, podEntry{uid: m.UID, resourceVersion: m.ResourceVersion, deleting: m.DeletionTimestamp != nil}, nil
}
