package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
)

// The attacks of issue 14 through the webhook: the real controller-runtime
// handler, real AdmissionReviews, the walkthrough's policy, CUE and Rego
// evaluated in worker processes as `vigil controller` does. Each review must
// be answered before a generous deadline (the bound the code enforces is the
// 2s policy timeout; the rest is slack for a shared machine).
const attackWall = policy.DefaultPolicyTimeout + 30*time.Second

// attackValidator judges with the given policies (config/samples files or
// inline ones) in a pool of two workers.
func attackValidator(t *testing.T, samples []string, inline ...*v1beta1.ClusterImagePolicy) (*WorkloadValidator, *policy.WorkerPool) {
	t.Helper()
	pool := policy.NewWorkerPool(policy.WorkerPoolOptions{Workers: 2})
	t.Cleanup(pool.Close)
	s := policystore.New(policy.Compiler{Workers: pool})
	for _, f := range samples {
		var cip v1beta1.ClusterImagePolicy
		if err := json.Unmarshal(sample(t, f), &cip); err != nil {
			t.Fatal(err)
		}
		inline = append(inline, &cip)
	}
	for _, cip := range inline {
		cip.Generation = 1
		if err := s.Apply(cip); err != nil {
			t.Fatalf("%s: %v", cip.Name, err)
		}
	}
	s.MarkSynced()
	return &WorkloadValidator{Policies: s, NoMatch: fixedNoMatch(policy.NoMatchDeny), PolicyTimeout: policy.DefaultPolicyTimeout}, pool
}

// serveWithin posts an AdmissionReview of pod to the webhook handler with a
// deadline of attackWall, and fails the test if the answer comes later.
func serveWithin(t testing.TB, v *WorkloadValidator, pod *corev1.Pod) (*admissionv1.AdmissionResponse, time.Duration, int) {
	pod.APIVersion, pod.Kind = "v1", "Pod"
	raw, err := json.Marshal(pod)
	if err != nil {
		panic(err)
	}
	body := review(metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, admissionv1.Create, raw)
	ctx, cancel := context.WithTimeout(context.Background(), attackWall)
	defer cancel()
	req := httptest.NewRequest(http.MethodPost, WorkloadPath, bytes.NewReader(body)).WithContext(ctx)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	start := time.Now()
	Serve(v).ServeHTTP(rec, req)
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Errorf("the review of %d bytes was answered after its deadline of %s", len(body), attackWall)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Errorf("no AdmissionReview response (%v): %.300s", err, rec.Body.String())
		return &admissionv1.AdmissionResponse{}, took, len(body)
	}
	return out.Response, took, len(body)
}

func attackPod(name string, n int, container func(i int) corev1.Container) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	for i := range n {
		p.Spec.Containers = append(p.Spec.Containers, container(i))
	}
	return p
}

func netAdminContainer(name, image string) corev1.Container {
	return corev1.Container{Name: name, Image: image, SecurityContext: &corev1.SecurityContext{
		Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}}
}

func compliantPod(name string) *corev1.Pod {
	return attackPod(name, 1, func(int) corev1.Container { return corev1.Container{Name: "app", Image: "nginx:1.27"} })
}

// assertDenied checks a bounded denial naming the policy.
func assertDenied(t testing.TB, resp *admissionv1.AdmissionResponse, policyName string) string {
	t.Helper()
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
		t.Fatalf("response %+v, want a denial (400)", resp)
	}
	msg := resp.Result.Message
	if !strings.HasPrefix(msg, "validation failed: failed policy: "+policyName+": ") {
		t.Errorf("denial %.300q does not name %s", msg, policyName)
	}
	if len(msg) > 16<<10 {
		t.Errorf("denial of %d bytes, want a bounded one", len(msg))
	}
	return msg
}

func TestWebhookManyContainers(t *testing.T) {
	v, _ := attackValidator(t, []string{"cip.yaml"})
	for _, n := range []int{1500, MaxContainers, 10000, 40000} {
		pod := attackPod("many", n, func(i int) corev1.Container { return netAdminContainer(fmt.Sprintf("c%d", i), "nginx:1.27") })
		resp, took, size := serveWithin(t, v, pod)
		var msg string
		if n <= MaxContainers {
			// Judged: the bounded denial of the policy.
			msg = assertDenied(t, resp, "non-default-capabilities-cue")
			if want := fmt.Sprintf(", and %d more\n", n-10); !strings.Contains(msg, want) {
				t.Errorf("%d containers: the denial does not say %q: %.500s", n, want, msg)
			}
		} else {
			// Past the bound: denied before any policy runs, naming it.
			if resp.Allowed || resp.Result == nil {
				t.Fatalf("%d containers: %+v, want a denial", n, resp)
			}
			msg = resp.Result.Message
			if want := fmt.Sprintf("exceed Vigil's bound of %d containers per object", MaxContainers); !strings.Contains(msg, want) {
				t.Errorf("%d containers: the denial %q does not say %q", n, msg, want)
			}
		}
		t.Logf("%d containers (%d KB review): denied in %s with %d bytes: %.160q", n, size>>10, took.Round(time.Millisecond), len(msg), msg)
	}
	if resp, _, _ := serveWithin(t, v, compliantPod("after")); !resp.Allowed {
		t.Errorf("a compliant pod after the attacks: %+v", resp.Result)
	}
}

// A pod of as many distinct images as Vigil judges (MaxContainers, 1.2 MB;
// the 10,000 are denied at once by that bound), followed at once by
// compliant pods (which a Rego policy judges in a worker too): they are
// admitted while the attack is judged.
func TestWebhookDistinctImagesThenCompliantPods(t *testing.T) {
	yes := true
	named := &v1beta1.ClusterImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "named-rego"}, Spec: v1beta1.ClusterImagePolicySpec{
		Images:      []v1beta1.ImagePattern{{Glob: "**"}},
		Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
		Policy: &v1beta1.Policy{Type: "rego", IncludeSpec: &yes, IncludeObjectMeta: &yes,
			Data: "package sigstore\nisCompliant { not input.spec.hostNetwork; input.metadata.name != \"\" }\n"},
	}}
	v, pool := attackValidator(t, []string{"cip.yaml"}, named)
	attack := attackPod("attack", MaxContainers, func(i int) corev1.Container {
		return netAdminContainer(fmt.Sprintf("container-%05d-of-the-attacking-pod-with-a-long-name", i),
			fmt.Sprintf("registry.example.com/some-organisation/some-department/team-%05d/service-%05d/application-image:1.0.%d", i, i, i))
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, took, size := serveWithin(t, v, attack)
		if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "failed policy: non-default-capabilities-cue") || len(resp.Result.Message) > 16<<10 {
			t.Errorf("the attacking pod: allowed %v, %.300v", resp.Allowed, resp.Result)
			return
		}
		t.Logf("attacking pod (%d KB review): denied in %s with %d bytes", size>>10, took.Round(time.Millisecond), len(resp.Result.Message))
	}()
	for i := range 20 {
		resp, took, _ := serveWithin(t, v, compliantPod(fmt.Sprintf("compliant-%d", i)))
		if !resp.Allowed {
			t.Errorf("compliant pod %d denied: %+v", i, resp.Result)
		}
		if i == 0 {
			t.Logf("first compliant pod admitted in %s", took.Round(time.Millisecond))
		}
	}
	wg.Wait()
	if st := pool.Stats(); st.Running > 2 {
		t.Errorf("pool %+v: more workers than its 2", st)
	}
}

// Policies that explode for one pod shape (a terabyte string in CUE, a Rego
// replace of 1e16 bytes when the first container is "boom"): the webhook
// denies that pod with an error naming the limit, and stays up to admit the
// next one.
func TestWebhookPodShapedMemoryBombs(t *testing.T) {
	yes := true
	for typ, src := range map[string]string{
		"cue": "spec: containers: [...{name: string}]\n_n: [if spec.containers[0].name == \"boom\" {1000000}, 1][0]\n_a: \"x\" * _n\n_b: _a * 1000000\n",
		"rego": "package sigstore\nisCompliant {\n\tinput.spec.containers[0].name == \"boom\"\n\ts1 := replace(\"xxxxxxxxxx\", \"x\", \"xxxxxxxxxx\")\n\ts2 := replace(s1, \"x\", s1)\n" +
			"\ts3 := replace(s2, \"x\", s2)\n\ts4 := replace(s3, \"x\", s3)\n\tcount(s4) > 0\n}\nisCompliant { input.spec.containers[0].name != \"boom\" }\n",
	} {
		t.Run(typ, func(t *testing.T) {
			bomb := &v1beta1.ClusterImagePolicy{ObjectMeta: metav1.ObjectMeta{Name: "bomb"}, Spec: v1beta1.ClusterImagePolicySpec{
				Images:      []v1beta1.ImagePattern{{Glob: "**"}},
				Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
				Policy:      &v1beta1.Policy{Type: typ, IncludeSpec: &yes, Data: src},
			}}
			v, _ := attackValidator(t, nil, bomb)
			boom := attackPod("boom", 1, func(int) corev1.Container { return corev1.Container{Name: "boom", Image: "nginx"} })
			resp, took, _ := serveWithin(t, v, boom)
			msg := assertDenied(t, resp, "bomb")
			if !strings.Contains(msg, "needed more than its limit of 192 MiB of memory") && !strings.Contains(msg, "took longer than its limit of 2s") {
				t.Errorf("the denial names no limit: %s", msg)
			}
			if resp, _, _ := serveWithin(t, v, compliantPod("next")); !resp.Allowed {
				t.Errorf("the next pod: %+v", resp.Result)
			}
			t.Logf("denied in %s: %s", took.Round(time.Millisecond), msg)
		})
	}
}
