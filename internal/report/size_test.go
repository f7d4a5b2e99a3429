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

// storedReports are n reports of one result as the API server sends them
// to Vigil's cache: JSON, with the fields the server sets.
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

func decodeCompacted(t testing.TB, raw []byte) *reportsv1alpha2.PolicyReport {
	r := &reportsv1alpha2.PolicyReport{}
	if err := json.Unmarshal(raw, r); err != nil {
		t.Fatal(err)
	}
	if _, err := Compact(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCompactSharesStrings: of two cached reports, the words every report
// holds are one copy, and within one report the pod's UID (the report's
// name, its owner's and its scope's UID) and name (owner and scope) are one
// copy each.
func TestCompactSharesStrings(t *testing.T) {
	raw := storedReports(2)
	a, b := decodeCompacted(t, raw[0]), decodeCompacted(t, raw[1])
	same := func(what string, x, y string) {
		t.Helper()
		if x != y || unsafe.StringData(x) != unsafe.StringData(y) {
			t.Errorf("%s: %q and %q are separate copies", what, x, y)
		}
	}
	same("API versions", a.APIVersion, b.APIVersion)
	same("namespaces", a.Namespace, b.Namespace)
	same("scope kinds", a.Scope.Kind, b.Scope.Kind)
	same("owner kinds", a.OwnerReferences[0].Kind, b.OwnerReferences[0].Kind)
	same("policies", a.Results[0].Policy, b.Results[0].Policy)
	same("results", string(a.Results[0].Result), string(b.Results[0].Result))
	same("report name and owner UID", a.Name, string(a.OwnerReferences[0].UID))
	same("report name and scope UID", a.Name, string(a.Scope.UID))
	same("owner and scope name", a.OwnerReferences[0].Name, a.Scope.Name)
	if a.Scope.Name == b.Scope.Name {
		t.Errorf("two reports name the same pod")
	}
}

// BenchmarkCompactedReport reports the heap a cached report of one result
// keeps (retained-B/report): most of what Vigil holds per pod.
func BenchmarkCompactedReport(b *testing.B) {
	const n = 10000
	raw := storedReports(n)
	keep := make([]*reportsv1alpha2.PolicyReport, n)
	var before, after runtime.MemStats
	b.ResetTimer()
	for range b.N {
		clear(keep)
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			keep[i] = decodeCompacted(b, raw[i])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "retained-B/report")
	b.ReportMetric(float64(len(raw[0])), "stored-B/report")
	runtime.KeepAlive(keep)
}
