package controllers

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/internal/report"
)

// reportIndex is what the verify path knows of Vigil's reports: for each,
// what report.Held keeps (the pod's name, the fingerprint, the results),
// from a watch of the reports labelled as Vigil's. A report that changed or
// went for a reason other than Vigil's own write queues the pod it is
// about, so a report deleted or edited by someone else is put right, and
// one whose pod is gone is deleted (the report is noted as possibly stale
// for the reconciler to check). Vigil's own writes queue nothing: the pod
// was judged a moment ago.
//
// It stands in for an informer cache of compacted reports: about 1,500
// bytes a report with the cache's keys and index, against about 170 here
// (BenchmarkHeldReport; BENCHMARKS.md, benchmark 6).
type reportIndex struct {
	index[report.Held]
	api   report.API
	own   *ownWrites
	stale *staleReports
}

// newReportIndex watches the reports of api labelled as Vigil's through c.
func newReportIndex(c client.WithWatch, api report.API, own *ownWrites, stale *staleReports) *reportIndex {
	vigils := labels.SelectorFromSet(labels.Set{report.ManagedByLabel: report.ManagedByValue}).String()
	return newReportIndexFrom(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = vigils
			list := api.NewList()
			return list, c.List(ctx, list, &client.ListOptions{Raw: &o})
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = vigils
			return c.Watch(ctx, api.NewList(), &client.ListOptions{Raw: &o})
		},
	}, api, own, stale)
}

func newReportIndexFrom(lw cache.ListerWatcher, api report.API, own *ownWrites, stale *staleReports) *reportIndex {
	x := &reportIndex{api: api, own: own, stale: stale}
	x.init(api.Kind()+"s", lw, api.NewObject())
	x.entry = x.hold
	x.same = func(a, b report.Held) bool { return a.Fingerprint == b.Fingerprint }
	x.changed = func(key types.NamespacedName, h report.Held) {
		if !x.own.written(key, h.Fingerprint) {
			x.queuePod(key, h)
		}
	}
	x.gone = func(key types.NamespacedName, h report.Held) {
		if !x.own.deleted(key) {
			x.queuePod(key, h)
		}
	}
	return x
}

// podResults are the result words the reports state, by pod.
func (x *reportIndex) podResults() map[types.NamespacedName]map[string]string {
	out := map[types.NamespacedName]map[string]string{}
	x.each(func(key types.NamespacedName, h report.Held) {
		if h.Pod != "" {
			out[types.NamespacedName{Namespace: key.Namespace, Name: h.Pod}] = h.ResultWords()
		}
	})
	return out
}

func (x *reportIndex) hold(obj any) (types.NamespacedName, report.Held, error) {
	if o, ok := obj.(client.Object); ok {
		if h, ok := report.Hold(x.api, o); ok {
			return client.ObjectKeyFromObject(o), h, nil
		}
	}
	return types.NamespacedName{}, report.Held{}, fmt.Errorf("%s index: got a %T", x.name, obj)
}

// queuePod queues the pod the report key is about, noting the report as
// possibly stale.
func (x *reportIndex) queuePod(key types.NamespacedName, h report.Held) {
	if h.Pod == "" {
		return
	}
	pod := types.NamespacedName{Namespace: key.Namespace, Name: h.Pod}
	x.stale.add(pod, key.Name)
	x.queue(pod)
}
