package controllers

import (
	"context"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

type queue = workqueue.TypedRateLimitingInterface[ctrl.Request]

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
