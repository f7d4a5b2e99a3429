package controllers

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/report"
)

// storedReport is the report Vigil writes for the pod ns/name with UID uid
// and the result given, as the API server returns it.
func storedReport(ns, name, uid, result string) (*reportsv1alpha2.PolicyReport, string) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}}
	d := policy.Decision{Results: []policy.Result{{Policy: "p", Mode: "enforce", Generation: 1, Result: result, Message: "m", Explanation: "e"}}}
	plan := report.MakePlan(report.WGPolicy, pod, d, nil, time.Unix(1000, 0))
	return plan.Report.DeepCopy(), plan.Fingerprint
}

// The report index holds what planning needs, queues the pod of a report
// someone else wrote or deleted (noting the report as stale), and nothing
// for Vigil's own writes.
func TestReportIndex(t *testing.T) {
	own, stale := newOwnWrites(), newStaleReports()
	x := newReportIndexFrom(nil, report.WGPolicy, own, stale)
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[ctrl.Request]())
	defer q.ShutDown()
	x.q.Store(&q)

	a, fpA := storedReport("apps", "a", "u-a", policy.ResultPass)
	b, _ := storedReport("apps", "b", "u-b", policy.ResultFail)
	if err := x.Replace([]any{a.DeepCopy(), b.DeepCopy()}, "1"); err != nil {
		t.Fatal(err)
	}
	if got := drain(q); !slices.Equal(got, []string{"apps/a", "apps/b"}) {
		t.Errorf("first list queued %v", got)
	}
	keyA := types.NamespacedName{Namespace: "apps", Name: "u-a"}
	h, ok := x.get(keyA)
	if !ok || h.Pod != "a" || h.Fingerprint != fpA || len(h.Results) != 1 || h.Results[0].Result != reportsv1alpha2.ResultPass {
		t.Fatalf("held of a: %+v %v; want pod a, fingerprint %s, one pass", h, ok, fpA)
	}
	if got := x.podResults(); got[types.NamespacedName{Namespace: "apps", Name: "b"}]["p"] != "fail" || len(got) != 2 {
		t.Errorf("pod results %v", got)
	}

	// Vigil's own write lands: nothing queued.
	failed, fpFailed := storedReport("apps", "a", "u-a", policy.ResultFail)
	own.expect(keyA, fpFailed)
	if err := x.Update(failed.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	if got := drain(q); len(got) != 0 {
		t.Errorf("Vigil's own write queued %v", got)
	}
	// Someone else edits it: its pod is queued and the report noted.
	edited := failed.DeepCopy()
	edited.Results[0].Result = reportsv1alpha2.ResultPass
	if err := x.Update(edited); err != nil {
		t.Fatal(err)
	}
	if got := drain(q); !slices.Equal(got, []string{"apps/a"}) {
		t.Errorf("an edit by someone else queued %v", got)
	}
	if h, _ := x.get(keyA); h.Fingerprint == fpFailed {
		t.Errorf("the edit did not change the fingerprint held")
	}
	// Vigil deletes b: nothing; someone else deletes a: its pod.
	keyB := types.NamespacedName{Namespace: "apps", Name: "u-b"}
	own.expectDeletion(keyB)
	if err := x.Delete(b.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	if err := x.Delete(edited.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	if got := drain(q); !slices.Equal(got, []string{"apps/a"}) {
		t.Errorf("deletions queued %v", got)
	}
	if _, ok := x.get(keyA); ok {
		t.Errorf("a deleted report is still held")
	}
	if got := stale.get(types.NamespacedName{Namespace: "apps", Name: "a"}); !slices.Equal(got, []string{"u-a"}) {
		t.Errorf("stale reports of pod a: %v", got)
	}

	// A relist: c appeared unseen, and is someone else's.
	c, _ := storedReport("web", "c", "u-c", policy.ResultPass)
	if err := x.Replace([]any{c.DeepCopy()}, "9"); err != nil {
		t.Fatal(err)
	}
	if got := drain(q); !slices.Equal(got, []string{"web/c"}) {
		t.Errorf("relist queued %v", got)
	}
	if err := x.Add(&corev1.Pod{}); err == nil {
		t.Errorf("a pod was taken for a report")
	}
}
