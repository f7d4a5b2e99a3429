package admission

// Hostile requests sent straight to the webhook (issue 14): a client that
// reaches port 9443 chooses the request's kind and operation, and the size
// and shape of the object. None of it may grow the webhook's memory or its
// work past documented bounds.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/policy"
)

// heapInUse is the heap in use after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestHugeKindsKeepNoMemory posts 200 AdmissionReviews whose request.kind.kind
// is 1 MiB each, and as many with an invented operation, to the webhook's
// handler (Serve) over HTTP. The first are denied (the request names a kind
// Vigil does not judge), the others allowed (an operation that is neither
// CREATE nor UPDATE is not judged). They count under the label "other", so the heap
// after a collection stays where a baseline of ordinary requests left it:
// before labels were bounded, each request kept its kind in a new series
// (+208 MiB after 200 requests).
func TestHugeKindsKeepNoMemory(t *testing.T) {
	v := &WorkloadValidator{Policies: seedStore(t, "cip.yaml"), NoMatch: fixedNoMatch(policy.NoMatchDeny)}
	srv := httptest.NewServer(Serve(v))
	t.Cleanup(srv.Close)
	pod := sample(t, "pod-fixed.yaml")
	post := func(kind string, op admissionv1.Operation) {
		t.Helper()
		body := review(metav1.GroupVersionKind{Version: "v1", Kind: kind}, op, pod)
		resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"response"`)) {
			t.Fatalf("HTTP %d: %.300s", resp.StatusCode, out)
		}
	}
	const requests = 200
	for range requests {
		post("Pod", admissionv1.Create)
	}
	series := testutil.CollectAndCount(metrics.AdmissionRequests) + testutil.CollectAndCount(metrics.AdmissionDuration)
	others := testutil.ToFloat64(metrics.AdmissionRequests.WithLabelValues(metrics.Other, string(admissionv1.Create), metrics.DecisionDenied))
	base := heapInUse()

	for i := range requests {
		post(fmt.Sprintf("%d%s", i, strings.Repeat("K", 1<<20)), admissionv1.Create)
		post("Pod", admissionv1.Operation(fmt.Sprintf("%d%s", i, strings.Repeat("O", 1<<20))))
	}
	after := heapInUse()
	grown := int64(after) - int64(base)
	t.Logf("heap in use after GC: %.1f MiB after %d ordinary requests, %.1f MiB after %d more with 1 MiB kinds or operations (%+.1f MiB)",
		mib(base), requests, mib(after), 2*requests, float64(grown)/(1<<20))

	// Bounded labels: at most the few "other" series are new (one per
	// decision the hostile requests met, and the duration histogram's).
	if got := testutil.CollectAndCount(metrics.AdmissionRequests) + testutil.CollectAndCount(metrics.AdmissionDuration); got > series+3 {
		t.Errorf("%d admission series after the hostile requests, %d before: kinds or operations became labels", got, series)
	}
	if got := testutil.ToFloat64(metrics.AdmissionRequests.WithLabelValues(metrics.Other, string(admissionv1.Create), metrics.DecisionDenied)); got-others != requests {
		t.Errorf("kind=other counted %v requests, want %d", got-others, requests)
	}
	// 400 MiB of labels went through; a generous 32 MiB bound keeps the
	// test steady on a busy machine and still catches one kept label in seven.
	if grown > 32<<20 {
		t.Errorf("the heap grew by %.1f MiB after GC, want it flat (at most 32 MiB of noise)", float64(grown)/(1<<20))
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func TestLabelsOfUnknownKindsAndOperations(t *testing.T) {
	for _, c := range []struct{ kind, op, wantKind, wantOp string }{
		{"Pod", "CREATE", "Pod", "CREATE"},
		{"CronJob", "UPDATE", "CronJob", "UPDATE"},
		{"Service", "CREATE", metrics.Other, "CREATE"},
		{"pod", "create", metrics.Other, metrics.Other},
		{"Deployment", "DELETE", "Deployment", metrics.Other},
	} {
		if k, o := metrics.Known(c.kind, metricKinds), metrics.Known(c.op, metricOperations); k != c.wantKind || o != c.wantOp {
			t.Errorf("labels of %s %s = %s %s, want %s %s", c.op, c.kind, o, k, c.wantOp, c.wantKind)
		}
	}
}

// containers builds n containers named and imaged distinctly.
func containers(n int) []corev1.Container {
	cs := make([]corev1.Container, n)
	for i := range cs {
		cs[i] = corev1.Container{Name: fmt.Sprintf("c%d", i), Image: fmt.Sprintf("registry.test/app%d:v1", i)}
	}
	return cs
}

// TestContainerBound: an object with MaxContainers containers is judged; one
// more is denied at once, whatever the policies, with a message naming the
// pod spec's path and the bound; and 40,000 containers cost no more.
func TestContainerBound(t *testing.T) {
	vs := newValidators(t)
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	split := func(n int) []byte {
		p := corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "many", Namespace: "default"},
			Spec:       corev1.PodSpec{InitContainers: containers(n / 2), Containers: containers(n - n/2)},
		}
		return mustJSON(p)
	}
	cronJob := fmt.Appendf(nil, `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"c"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"containers":%s}}}}}}`,
		mustJSON(containers(MaxContainers+1)))
	for _, c := range []struct {
		name    string
		v       *WorkloadValidator
		kind    metav1.GroupVersionKind
		obj     []byte
		allowed bool
		msg     string
	}{
		{"at the bound, permissive", vs.permissive, podKind, split(MaxContainers), true, ""},
		{"at the bound, deny-all", vs.denyAll, podKind, split(MaxContainers), false, "no matching policies"},
		{"one past the bound", vs.permissive, podKind, split(MaxContainers + 1),
			false, fmt.Sprintf(`Pod "big" in namespace "default": spec: %d containers (initContainers %d, containers %d, ephemeralContainers 0) exceed Vigil's bound of %d containers per object`,
				MaxContainers+1, (MaxContainers+1)/2, MaxContainers+1-(MaxContainers+1)/2, MaxContainers)},
		{"40,000 containers", vs.walkthrough, podKind, split(40000), false, "spec: 40000 containers"},
		{"CronJob past the bound", vs.permissive, metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}, cronJob,
			false, fmt.Sprintf("spec.jobTemplate.spec.template.spec: %d containers", MaxContainers+1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, took := serve(t, c.v, review(c.kind, admissionv1.Create, c.obj))
			t.Logf("%d bytes of object answered in %s", len(c.obj), took)
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, c.allowed, resp.Result)
			}
			if !c.allowed && (resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, c.msg)) {
				t.Errorf("HTTP %d %.300q, want 400 with %q", resp.Result.Code, resp.Result.Message, c.msg)
			}
		})
	}
	if err := CheckContainers(split(MaxContainers)); err != nil {
		t.Errorf("CheckContainers at the bound: %v", err)
	}
	if err := CheckContainers(split(MaxContainers + 1)); err == nil {
		t.Error("CheckContainers past the bound: no error")
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkContainerBound measures what an object past MaxContainers costs
// the webhook handler (through controller-runtime's HTTP handler): reading
// the review and counting, then the denial.
func BenchmarkContainerBound(b *testing.B) {
	for _, n := range []int{MaxContainers + 1, 40000} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			v := &WorkloadValidator{Policies: storeOf(b, sample(b, "cip.yaml")), NoMatch: fixedNoMatch(policy.NoMatchDeny)}
			wh := Serve(v)
			p := corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: "many", Namespace: "default"},
				Spec:       corev1.PodSpec{Containers: containers(n)},
			}
			body := review(metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, admissionv1.Create, mustJSON(p))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, WorkloadPath, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				wh.ServeHTTP(rec, req)
				if !bytes.Contains(rec.Body.Bytes(), []byte("exceed Vigil's bound")) {
					b.Fatalf("not denied by the bound: %.300s", rec.Body.String())
				}
			}
		})
	}
}
