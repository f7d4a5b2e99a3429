package report

import (
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/json"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
)

// storedReports are n reports of one result as the API server sends them:
// JSON, with the fields the server sets.
func storedReports(n int) [][]byte {
	raw := make([][]byte, n)
	for i := range n {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("w-042-7d9f8c6b5-%05d", i), UID: types.UID(fmt.Sprintf("2b5c7e1a-4f3d-4e2a-9c1b-%012d", i))}}
		rep := MakePlan(WGPolicy, pod, decision(pass("bench-flip")), nil, t0).Report
		rep.APIVersion, rep.Kind = "wgpolicyk8s.io/v1alpha2", "PolicyReport"
		rep.UID = types.UID(fmt.Sprintf("8f1e2d3c-4b5a-4e2a-9c1b-%012d", i))
		rep.ResourceVersion = fmt.Sprint(100000 + i)
		rep.CreationTimestamp = metav1.NewTime(t0)
		rep.Generation = 1
		rep.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "vigil", Operation: "Apply", APIVersion: "wgpolicyk8s.io/v1alpha2"}}
		raw[i], _ = json.Marshal(rep)
	}
	return raw
}

func decodeHeld(t testing.TB, raw []byte) Held {
	r := &reportsv1alpha2.PolicyReport{}
	if err := json.Unmarshal(raw, r); err != nil {
		t.Fatal(err)
	}
	h, ok := Hold(WGPolicy, r)
	if !ok {
		t.Fatalf("a PolicyReport not held")
	}
	return h
}

// TestHold: what is held of a report names its pod, fingerprints it as
// stored, and keeps its results, the words of which are one copy for every
// report.
func TestHold(t *testing.T) {
	raw := storedReports(2)
	a, b := decodeHeld(t, raw[0]), decodeHeld(t, raw[1])
	if a.Pod != "w-042-7d9f8c6b5-00000" || len(a.Results) != 1 || a.Results[0].Policy != "bench-flip" || a.Results[0].Result != reportsv1alpha2.ResultPass || a.Results[0].Timestamp.Seconds != t0.Unix() {
		t.Errorf("held %+v", a)
	}
	r := &reportsv1alpha2.PolicyReport{}
	_ = json.Unmarshal(raw[0], r)
	if want := Fingerprint(Compacted(WGPolicy, r)); a.Fingerprint != want {
		t.Errorf("fingerprint %s, want the stored report's %s", a.Fingerprint, want)
	}
	if unsafe.StringData(a.Results[0].Policy) != unsafe.StringData(b.Results[0].Policy) || unsafe.StringData(string(a.Results[0].Result)) != unsafe.StringData(string(b.Results[0].Result)) {
		t.Errorf("two held reports keep their own copies of the same words")
	}
	if _, ok := Hold(WGPolicy, &corev1.Pod{}); ok {
		t.Errorf("a pod was held as a report")
	}
}

// BenchmarkHeldReport reports the heap what is held of a report of one
// result keeps (retained-B/report), beside the whole report compacted, as
// Vigil's informer cache kept it before (compacted-B/report).
func BenchmarkHeldReport(b *testing.B) {
	const n = 10000
	raw := storedReports(n)
	held := make([]Held, n)
	whole := make([]*reportsv1alpha2.PolicyReport, n)
	retained := func(keep func(i int)) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			keep(i)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		return float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	var h, w float64
	for range b.N {
		clear(held)
		clear(whole)
		h = retained(func(i int) { held[i] = decodeHeld(b, raw[i]) })
		w = retained(func(i int) {
			r := &reportsv1alpha2.PolicyReport{}
			_ = json.Unmarshal(raw[i], r)
			_, _ = Compact(r)
			whole[i] = r
		})
	}
	b.ReportMetric(h, "retained-B/report")
	b.ReportMetric(w, "compacted-B/report")
	b.ReportMetric(float64(len(raw[0])), "stored-B/report")
	runtime.KeepAlive(held)
	runtime.KeepAlive(whole)
}
