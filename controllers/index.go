package controllers

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// index keeps one small entry E per watched object, in place of an
// informer cache of the objects, and is a source of the pod controller:
// client-go's reflector lists and watches into it (resuming, relisting,
// bookmarks), and it tells its owner what appeared, changed or went, so the
// owner can queue pods. podIndex and reportIndex are built on it
// (podindex.go, reportindex.go); docs/design-changes.md says why.
type index[E any] struct {
	name     string
	lw       cache.ListerWatcher
	expected runtime.Object
	// entry is the key and entry of a watched object.
	entry func(obj any) (types.NamespacedName, E, error)
	// same says whether two entries say the same: a relist that finds an
	// object the same tells nothing.
	same func(a, b E) bool
	// changed is told of an object that appeared or changed, gone of one
	// that went (with its last entry).
	changed, gone func(key types.NamespacedName, e E)

	mu    sync.RWMutex
	items map[types.NamespacedName]E

	q      atomic.Pointer[queue]
	synced chan struct{}
	once   sync.Once
}

var _ source.SyncingSource = (*index[struct{}])(nil)

func (x *index[E]) init(name string, lw cache.ListerWatcher, expected runtime.Object) {
	x.name, x.lw, x.expected = name, lw, expected
	x.items = map[types.NamespacedName]E{}
	x.synced = make(chan struct{})
}

// Start watches until ctx ends, queueing pods on q.
func (x *index[E]) Start(ctx context.Context, q queue) error {
	if !x.q.CompareAndSwap(nil, &q) {
		return fmt.Errorf("the %s index is started already", x.name)
	}
	r := cache.NewReflectorWithOptions(x.lw, x.expected, x, cache.ReflectorOptions{Name: x.name})
	go r.RunWithContext(ctx)
	return nil
}

// WaitForSync returns once the first list is in the index.
func (x *index[E]) WaitForSync(ctx context.Context) error {
	select {
	case <-x.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s not listed: %w", x.name, ctx.Err())
	}
}

// queue queues the pod key on the controller's queue, once started.
func (x *index[E]) queue(key types.NamespacedName) {
	if q := x.q.Load(); q != nil {
		(*q).Add(ctrl.Request{NamespacedName: key})
	}
}

// get is the entry of the object key, and whether it exists.
func (x *index[E]) get(key types.NamespacedName) (E, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.items[key]
	return e, ok
}

// each calls f with every key and entry, under the index's read lock.
func (x *index[E]) each(f func(types.NamespacedName, E)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for key, e := range x.items {
		f(key, e)
	}
}

// The store the reflector writes to (cache.ReflectorStore).

func (x *index[E]) Add(obj any) error    { return x.set(obj) }
func (x *index[E]) Update(obj any) error { return x.set(obj) }
func (x *index[E]) Resync() error        { return nil }

func (x *index[E]) set(obj any) error {
	key, e, err := x.entry(obj)
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.items[key] = e
	x.mu.Unlock()
	x.changed(key, e)
	return nil
}

func (x *index[E]) Delete(obj any) error {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, err := meta.Accessor(obj)
	if err != nil {
		return fmt.Errorf("%s index: %w", x.name, err)
	}
	key := types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
	x.mu.Lock()
	e, held := x.items[key]
	delete(x.items, key)
	x.mu.Unlock()
	if !held { // the last entry is what went; only an object never seen needs one made
		if _, e, err = x.entry(obj); err != nil {
			return err
		}
	}
	x.gone(key, e)
	return nil
}

// Replace takes a whole list: the objects missing from it went while the
// watch was down, the others changed if they are new or not the same.
func (x *index[E]) Replace(list []any, _ string) error {
	next := make(map[types.NamespacedName]E, len(list))
	for _, obj := range list {
		key, e, err := x.entry(obj)
		if err != nil {
			return err
		}
		next[key] = e
	}
	x.mu.Lock()
	prev := x.items
	x.items = next
	x.mu.Unlock()
	for key, e := range prev {
		if _, ok := next[key]; !ok {
			x.gone(key, e)
		}
	}
	for key, e := range next {
		if p, ok := prev[key]; !ok || !x.same(p, e) {
			x.changed(key, e)
		}
	}
	x.once.Do(func() { close(x.synced) })
	return nil
}
