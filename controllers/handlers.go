package controllers

import (
	"context"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/vigil-dev/vigil/internal/report"
)

type queue = workqueue.TypedRateLimitingInterface[ctrl.Request]

// reportEvents queues the pod a report is about when the report changed or
// went for a reason other than Vigil's own write: a report deleted or edited
// by someone else is put right, and one whose pod is gone is deleted (the
// report is noted as possibly stale for the reconciler to check). Vigil's
// own writes queue nothing: the pod was judged a moment ago.
type reportEvents struct {
	api   report.API
	stale *staleReports
	own   *ownWrites
}

func (h reportEvents) Create(_ context.Context, e event.CreateEvent, q queue) {
	h.changed(e.Object, q)
}

func (h reportEvents) Update(_ context.Context, e event.UpdateEvent, q queue) {
	h.changed(e.ObjectNew, q)
}

func (h reportEvents) Delete(_ context.Context, e event.DeleteEvent, q queue) {
	if h.own.deleted(client.ObjectKeyFromObject(e.Object)) {
		return
	}
	h.queuePod(e.Object, q)
}

func (h reportEvents) Generic(context.Context, event.GenericEvent, queue) {}

func (h reportEvents) changed(obj client.Object, q queue) {
	// The cache holds reports compacted (report.Compact), as the
	// fingerprint noted before the write was taken.
	if rep, ok := h.api.FromStored(obj); ok && h.own.written(client.ObjectKeyFromObject(obj), report.Fingerprint(rep)) {
		return
	}
	h.queuePod(obj, q)
}

func (h reportEvents) queuePod(obj client.Object, q queue) {
	scope := report.ScopeOf(obj)
	if scope == nil || scope.Kind != "Pod" {
		return
	}
	pod := types.NamespacedName{Namespace: obj.GetNamespace(), Name: scope.Name}
	h.stale.add(pod, obj.GetName())
	q.Add(ctrl.Request{NamespacedName: pod})
}

// feed is a source that queues names it is given, once its controller runs;
// before that, on any replica, what it is given is dropped: a controller
// queues every object when it starts.
type feed struct {
	q atomic.Pointer[queue]
}

func (f *feed) source() source.Source {
	return source.Func(func(_ context.Context, q queue) error {
		f.q.Store(&q)
		return nil
	})
}

func (f *feed) add(name string) {
	if q := f.q.Load(); q != nil {
		(*q).Add(ctrl.Request{NamespacedName: types.NamespacedName{Name: name}})
	}
}

// addAfter queues name after d, unless it is already waiting: a burst of
// adds within d comes out as one request.
func (f *feed) addAfter(name string, d time.Duration) {
	if q := f.q.Load(); q != nil {
		(*q).AddAfter(ctrl.Request{NamespacedName: types.NamespacedName{Name: name}}, d)
	}
}
