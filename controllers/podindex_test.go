package controllers

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
)

func podMeta(ns, name, uid, rv string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), ResourceVersion: rv}}
}

// drain returns the names queued on q, sorted, and empties it.
func drain(q queue) []string {
	var out []string
	for q.Len() > 0 {
		req, _ := q.Get()
		out = append(out, req.String())
		q.Done(req)
		q.Forget(req)
	}
	slices.Sort(out)
	return out
}

// The pod index queues every pod that appears, changes or goes, notes the
// report of a pod that went as stale, and after a relist tells the pods
// that went while the watch was down from those that did not change.
func TestPodIndex(t *testing.T) {
	stale := newStaleReports()
	x := newPodIndexFrom(nil, stale)
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[ctrl.Request]())
	defer q.ShutDown()
	x.q.Store(&q)
	a, b := types.NamespacedName{Namespace: "apps", Name: "a"}, types.NamespacedName{Namespace: "apps", Name: "b"}

	if err := x.Replace([]any{podMeta("apps", "a", "u-a", "1"), podMeta("apps", "b", "u-b", "2"), podMeta("web", "c", "u-c", "3")}, "3"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-x.synced:
	default:
		t.Fatalf("not synced after the first list")
	}
	if got := drain(q); !slices.Equal(got, []string{"apps/a", "apps/b", "web/c"}) {
		t.Errorf("first list queued %v", got)
	}
	if got := x.keys("apps"); len(got) != 2 {
		t.Errorf("pods of apps: %v", got)
	}
	if got := x.keys(""); len(got) != 3 {
		t.Errorf("all pods: %v", got)
	}

	gone := podMeta("apps", "a", "u-a", "4")
	now := metav1.Now()
	gone.DeletionTimestamp = &now
	if err := x.Update(gone); err != nil {
		t.Fatal(err)
	}
	if e, ok := x.get(a); !ok || !e.deleting || e.resourceVersion != "4" {
		t.Errorf("a after its deletion began: %+v %v", e, ok)
	}
	if err := x.Delete(cache.DeletedFinalStateUnknown{Key: "apps/a", Obj: gone}); err != nil {
		t.Fatal(err)
	}
	if _, ok := x.get(a); ok {
		t.Errorf("a still indexed after its deletion")
	}
	if got := stale.get(a); !slices.Equal(got, []string{"u-a"}) {
		t.Errorf("stale reports of a: %v, want its UID", got)
	}
	if got := drain(q); !slices.Equal(got, []string{"apps/a"}) {
		t.Errorf("update and delete queued %v", got)
	}

	// A relist: b went unseen, c is unchanged, d is new.
	if err := x.Replace([]any{podMeta("web", "c", "u-c", "3"), podMeta("web", "d", "u-d", "9")}, "9"); err != nil {
		t.Fatal(err)
	}
	if got := drain(q); !slices.Equal(got, []string{"apps/b", "web/d"}) {
		t.Errorf("relist queued %v, want the pod that went and the new one", got)
	}
	if got := stale.get(b); !slices.Equal(got, []string{"u-b"}) {
		t.Errorf("stale reports of b: %v", got)
	}
	if err := x.Add(&metav1.PartialObjectMetadataList{}); err == nil {
		t.Errorf("an object of another type was taken for a pod")
	}
}
