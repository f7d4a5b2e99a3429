package controllers

import (
	"context"
	"fmt"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
)

// podIndex is what the verify path knows of every pod without reading it:
// its UID, its resourceVersion and whether it is being deleted, kept from a
// watch of pod metadata. A pod is queued when it appears, changes or goes,
// and the report of a pod that went is noted as stale (a report is named
// after its pod's UID).
//
// It stands in for an informer cache of pod metadata, which kept a whole
// metadata object, two cache keys and a namespace index per pod: about 480
// bytes a pod against about 170 here (BENCHMARKS.md, benchmark 6).
type podIndex struct {
	index[podEntry]
	stale *staleReports
}

// podEntry is one pod as the index keeps it.
type podEntry struct {
	uid             types.UID
	resourceVersion string
	deleting        bool
}

// newPodIndex watches the metadata of every pod through mc.
func newPodIndex(mc metadata.Interface, stale *staleReports) *podIndex {
	pods := mc.Resource(corev1.SchemeGroupVersion.WithResource("pods"))
	return newPodIndexFrom(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return pods.Watch(ctx, o)
		},
	}, stale)
}

func newPodIndexFrom(lw cache.ListerWatcher, stale *staleReports) *podIndex {
	x := &podIndex{stale: stale}
	x.init("pod metadata", lw, &metav1.PartialObjectMetadata{})
	x.entry = podEntryOf
	x.same = func(a, b podEntry) bool { return a == b }
	x.changed = func(key types.NamespacedName, _ podEntry) { x.queue(key) }
	x.gone = func(key types.NamespacedName, e podEntry) {
		if e.uid != "" {
			x.stale.add(key, string(e.uid))
		}
		x.queue(key)
	}
	return x
}

// keys are the pods of namespace, of every namespace when it is empty.
func (x *podIndex) keys(namespace string) []types.NamespacedName {
	var out []types.NamespacedName
	x.each(func(key types.NamespacedName, _ podEntry) {
		if namespace == "" || key.Namespace == namespace {
			out = append(out, key)
		}
	})
	return out
}

// podEntryOf is the key and entry of a pod's metadata; the namespace is one
// copy shared by its pods.
func podEntryOf(obj any) (types.NamespacedName, podEntry, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return types.NamespacedName{}, podEntry{}, fmt.Errorf("pod index: got a %T, want pod metadata", obj)
	}
	key := types.NamespacedName{Namespace: unique.Make(m.Namespace).Value(), Name: m.Name}
	return key, podEntry{uid: m.UID, resourceVersion: m.ResourceVersion, deleting: m.DeletionTimestamp != nil}, nil
}
