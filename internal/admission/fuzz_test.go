package admission

// Fuzzing and bad-input tests of the workload webhook (issue 9): whatever
// kube-apiserver or an attacker sends, the handler never panics and never
// fails open. `go test` runs FuzzWorkloadValidator over its seeds and the
// corpus in testdata/fuzz/FuzzWorkloadValidator; `make fuzz` fuzzes it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// storeOf compiles the given policy documents (YAML or JSON) into a synced store.
func storeOf(tb testing.TB, docs ...[]byte) *policystore.Store {
	tb.Helper()
	s := policystore.New(policy.Compiler{})
	for _, doc := range docs {
		var cip v1beta1.ClusterImagePolicy
		if err := yaml.Unmarshal(doc, &cip); err != nil {
			tb.Fatal(err)
		}
		cip.Generation = 1
		if err := s.Apply(&cip); err != nil {
			tb.Fatalf("%s: %v", cip.Name, err)
		}
	}
	s.MarkSynced()
	return s
}

// The validators every fuzz input goes through: one that admits every image
// (only panics and malformed objects can show), one with no policy and
// no-match-policy deny (nothing judged may be admitted), and the
// walkthrough's CUE policy.
type validators struct {
	permissive, denyAll, walkthrough *WorkloadValidator
}

func newValidators(t *testing.T) validators {
	return validators{
		permissive:  &WorkloadValidator{Policies: storeOf(t, sample(t, "cip-permissive.yaml")), NoMatch: fixedNoMatch(policy.NoMatchAllow)},
		denyAll:     &WorkloadValidator{Policies: storeOf(t), NoMatch: fixedNoMatch(policy.NoMatchDeny)},
		walkthrough: &WorkloadValidator{Policies: storeOf(t, sample(t, "cip.yaml")), NoMatch: fixedNoMatch(policy.NoMatchDeny)},
	}
}

var (
	fuzzKinds = []metav1.GroupVersionKind{
		{Version: "v1", Kind: "Pod"},
		{Group: "apps", Version: "v1", Kind: "Deployment"},
		{Group: "batch", Version: "v1", Kind: "CronJob"},
	}
	fuzzOps = []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect, "BOGUS"}
)

// imageCount counts the image references of the pod spec of a supported
// object the way kube-apiserver would see it, independently of the policy
// package: -1 when raw does not decode to a supported kind.
func imageCount(raw []byte) int {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return -1
	}
	var tm metav1.TypeMeta
	if json.Unmarshal(js, &tm) != nil {
		return -1
	}
	var spec *corev1.PodSpec
	var err2 error
	switch tm.GroupVersionKind().GroupKind().String() {
	case "Pod":
		var o corev1.Pod
		err2, spec = json.Unmarshal(js, &o), &o.Spec
	case "Deployment.apps":
		var o appsv1.Deployment
		err2, spec = json.Unmarshal(js, &o), &o.Spec.Template.Spec
	case "ReplicaSet.apps":
		var o appsv1.ReplicaSet
		err2, spec = json.Unmarshal(js, &o), &o.Spec.Template.Spec
	case "StatefulSet.apps":
		var o appsv1.StatefulSet
		err2, spec = json.Unmarshal(js, &o), &o.Spec.Template.Spec
	case "DaemonSet.apps":
		var o appsv1.DaemonSet
		err2, spec = json.Unmarshal(js, &o), &o.Spec.Template.Spec
	case "Job.batch":
		var o batchv1.Job
		err2, spec = json.Unmarshal(js, &o), &o.Spec.Template.Spec
	case "CronJob.batch":
		var o batchv1.CronJob
		err2, spec = json.Unmarshal(js, &o), &o.Spec.JobTemplate.Spec.Template.Spec
	default:
		return -1
	}
	if err2 != nil {
		return -1
	}
	n := len(spec.InitContainers) + len(spec.Containers) + len(spec.EphemeralContainers)
	for _, v := range spec.Volumes {
		if v.Image != nil {
			n++
		}
	}
	return n
}

func FuzzWorkloadValidator(f *testing.F) {
	pod := func(image string) []byte {
		return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":%q}]}}`, image)
	}
	f.Add(pod("docker.io/ubuntu"), uint8(0), uint8(0), "", []byte(nil))
	f.Add(pod("registry.example:5000/team/app@sha256:"+strings.Repeat("a", 64)), uint8(0), uint8(1), "", pod("x"))
	f.Add(pod("ubuntu"), uint8(0), uint8(0), "ephemeralcontainers", []byte(nil))
	f.Add(pod("ubuntu"), uint8(0), uint8(1), "status", pod("ubuntu"))
	f.Add([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}`),
		uint8(1), uint8(1), "", []byte(`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replicas":3}}`))
	f.Add([]byte(`{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"c"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"busybox"}]}}}}}}`),
		uint8(2), uint8(0), "", []byte(nil))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a"`), uint8(0), uint8(0), "", []byte(nil))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":"nope"}}`), uint8(0), uint8(0), "", []byte(nil))
	f.Add([]byte("kind: Pod\napiVersion: v1\nspec:\n  containers:\n  - name: c\n    image: ubuntu\n"), uint8(0), uint8(0), "", []byte(nil))
	f.Add(manyContainers(300), uint8(0), uint8(0), "", []byte(nil))
	// kind 3 and up multiply the containers (see the fuzz function).
	f.Add(pod("registry.test/app:v1"), uint8(3*40), uint8(0), "", []byte(nil))

	var vs validators
	f.Fuzz(func(t *testing.T, raw []byte, kind, op uint8, sub string, old []byte) {
		if vs.permissive == nil {
			vs = newValidators(t)
		}
		// The kind's byte also says how many containers the object gets:
		// kind/3 times 8, up to 680 (0: as given). A decision costs in
		// proportion to the containers, so a few hundred stay cheap.
		if times := int(kind) / len(fuzzKinds); times > 0 {
			raw = testenv.MultiplyContainers(raw, times*8)
		}
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "fuzz", Kind: fuzzKinds[int(kind)%len(fuzzKinds)], Operation: fuzzOps[int(op)%len(fuzzOps)],
			SubResource: sub, Namespace: "default", Name: "fuzz",
			Object: runtime.RawExtension{Raw: raw}, OldObject: runtime.RawExtension{Raw: old},
		}}
		skipped, _ := skipRequest(req, readShape(raw))
		images := imageCount(raw)
		_, decodeErr := policy.DecodeObject(raw)

		for name, v := range map[string]*WorkloadValidator{"permissive": vs.permissive, "deny-all": vs.denyAll, "walkthrough": vs.walkthrough} {
			resp := v.Handle(context.Background(), req) // a panic fails the fuzz target
			if !resp.Allowed && (resp.Result == nil || resp.Result.Message == "") {
				t.Errorf("%s: denied without a message: %+v", name, resp.Result)
			}
			if resp.Allowed && !skipped && decodeErr != nil {
				t.Errorf("%s: admitted an object that does not decode (%v)", name, decodeErr)
			}
			// With no policy and no-match deny, only what is never judged,
			// or an object without any image, may pass.
			if name == "deny-all" && resp.Allowed && !skipped && images != 0 {
				t.Errorf("deny-all: admitted %s %s sub=%q with %d images: %q", req.Operation, req.Kind.Kind, sub, images, raw)
			}
		}
	})
}

// numberedContainers are n containers c0, c1... of images
// registry.test/app0:v0, app1:v1...; container bad has securityContext sc.
func numberedContainers(n int, sc *corev1.SecurityContext, bad int) []corev1.Container {
	cs := make([]corev1.Container, n)
	for i := range cs {
		cs[i] = corev1.Container{Name: fmt.Sprintf("c%d", i), Image: fmt.Sprintf("registry.test/app%d:v%d", i, i)}
	}
	if bad >= 0 && bad < n {
		cs[bad].SecurityContext = sc
	}
	return cs
}

// manyContainers is a pod of n containers, the middle one adding NET_ADMIN.
func manyContainers(n int) []byte {
	netAdmin := &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}
	return oddPod("many", numberedContainers(n, netAdmin, n/2))
}

// review wraps an object in an AdmissionReview as kube-apiserver sends it.
func review(kind metav1.GroupVersionKind, op admissionv1.Operation, obj []byte) []byte {
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "42", Kind: kind, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Operation: op, Namespace: "default", Name: "big", Object: runtime.RawExtension{Raw: obj},
		},
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return b
}

// serve posts body to the webhook's HTTP handler (Serve) and returns
// the AdmissionReview response.
func serve(t *testing.T, v *WorkloadValidator, body []byte) (*admissionv1.AdmissionResponse, time.Duration) {
	t.Helper()
	wh := Serve(v)
	req := httptest.NewRequest(http.MethodPost, WorkloadPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	start := time.Now()
	wh.ServeHTTP(rec, req)
	took := time.Since(start)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not an AdmissionReview (%v): %.300s", err, rec.Body.String())
	}
	if out.Response == nil {
		t.Fatalf("AdmissionReview without response: %.300s", rec.Body.String())
	}
	return out.Response, took
}

// bounded is how long any single request may take, even a 3 MiB one on a
// shared CI machine with -race; kube-apiserver gives the webhook 10 s.
const bounded = 5 * time.Second

func TestWebhookHTTPBadReviews(t *testing.T) {
	vs := newValidators(t)
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	bigAnnotation := strings.Repeat("x", 3<<20)
	bigPod := fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big","annotations":{"a":%q}},"spec":{"containers":[{"name":"c","image":"docker.io/ubuntu"}]}}`, bigAnnotation)
	valid := review(podKind, admissionv1.Create, sample(t, "pod-fixed.yaml"))

	cases := []struct {
		name    string
		v       *WorkloadValidator
		body    []byte
		allowed bool
		code    int32
		msg     string
	}{
		{"3 MiB of garbage", vs.permissive, append([]byte(`{"request":`), bytes.Repeat([]byte{'['}, 3<<20)...), false, http.StatusBadRequest, ""},
		{"3 MiB pod, permissive", vs.permissive, review(podKind, admissionv1.Create, bigPod), true, 0, ""},
		{"3 MiB pod, deny-all", vs.denyAll, review(podKind, admissionv1.Create, bigPod), false, http.StatusBadRequest, "no matching policies"},
		{"8 MiB body", vs.permissive, review(podKind, admissionv1.Create, bytes.Replace(bigPod, []byte(bigAnnotation), []byte(strings.Repeat("y", 8<<20)), 1)), false, http.StatusRequestEntityTooLarge, "too large"},
		{"truncated review", vs.permissive, valid[:len(valid)/2], false, http.StatusBadRequest, ""},
		{"empty body", vs.permissive, nil, false, http.StatusBadRequest, ""},
		{"no request", vs.permissive, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), false, http.StatusBadRequest, ""},
		{"request without object", vs.permissive, review(podKind, admissionv1.Create, nil), false, http.StatusBadRequest, "Pod"},
		{"object of the wrong type", vs.permissive, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","operation":"CREATE","object":"a string"}}`), false, http.StatusBadRequest, ""},
		{"uid of the wrong type", vs.permissive, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7,"operation":"CREATE"}}`), false, http.StatusBadRequest, ""},
		{"not an AdmissionReview", vs.permissive, bytes.Replace(valid, []byte(`"kind":"AdmissionReview"`), []byte(`"kind":"Pod"`), 1), false, http.StatusBadRequest, `kind "Pod"`},
		{"object of another kind than the request", vs.permissive, review(podKind, admissionv1.Create, []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"}}`)), false, http.StatusBadRequest, "the object is apps/v1 Deployment, where the request names v1 Pod"},
		{"unsupported kind", vs.permissive, review(metav1.GroupVersionKind{Version: "v1", Kind: "Service"}, admissionv1.Create, []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}`)), false, http.StatusBadRequest, "unsupported kind"},
		{"valid", vs.walkthrough, valid, true, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, took := serve(t, c.v, c.body)
			if took > bounded {
				t.Errorf("took %s, want at most %s", took, bounded)
			}
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed = %v, want %v (%+v)", resp.Allowed, c.allowed, resp.Result)
			}
			if c.allowed {
				return
			}
			if resp.Result == nil || resp.Result.Message == "" {
				t.Fatalf("denied without a message: %+v", resp.Result)
			}
			if resp.Result.Code != c.code {
				t.Errorf("code = %d, want %d: %.200s", resp.Result.Code, c.code, resp.Result.Message)
			}
			if !strings.Contains(resp.Result.Message, c.msg) {
				t.Errorf("message %.300q does not contain %q", resp.Result.Message, c.msg)
			}
		})
	}
}

// oddPod builds a valid pod of an odd shape.
func oddPod(name string, containers []corev1.Container) []byte {
	p := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: containers},
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}

func TestWorkloadValidatorOddButValidPods(t *testing.T) {
	vs := newValidators(t)
	netAdmin := &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}
	digest := "@sha256:" + strings.Repeat("0123456789abcdef", 4)
	cases := []struct {
		name string
		obj  []byte
		// walkthrough: allowed by the walkthrough's CUE policy (denied only
		// for NET_ADMIN); denyAll is always denied, permissive always allowed.
		walkthrough bool
		msg         string
	}{
		{"no securityContext", oddPod("plain", []corev1.Container{{Name: "c", Image: "ubuntu"}}), true, ""},
		{"100 containers", oddPod("many", numberedContainers(100, nil, -1)), true, ""},
		// Every image fails the policy, as in policy-controller; the denial
		// shows 10 of the 100 entries (issue 14), each naming the container
		// that fails by its CUE path.
		{"100 containers, the last with NET_ADMIN", oddPod("many-bad", numberedContainers(100, netAdmin, 99)), false, "spec.containers.99.securityContext.capabilities.add.0"},
		{"unicode names", oddPod("ünïcødé-ポッド", []corev1.Container{{Name: "コンテナ", Image: "docker.io/library/ubuntu"}}), true, ""},
		{"unicode names with NET_ADMIN", oddPod("ünïcødé-ポッド", []corev1.Container{{Name: "コンテナ", Image: "ubuntu", SecurityContext: netAdmin}}), false, "failed policy: non-default-capabilities-cue"},
		{"image with digest", oddPod("digest", []corev1.Container{{Name: "c", Image: "ghcr.io/org/app" + digest}}), true, ""},
		{"image with tag and digest", oddPod("tagdigest", []corev1.Container{{Name: "c", Image: "ghcr.io/org/app:1.0" + digest}}), true, ""},
		{"registry with port", oddPod("port", []corev1.Container{{Name: "c", Image: "localhost:5000/app:latest"}}), true, ""},
		{"no registry", oddPod("bare", []corev1.Container{{Name: "c", Image: "busybox"}}), true, ""},
		{"no registry with NET_ADMIN", oddPod("bare-bad", []corev1.Container{{Name: "c", Image: "busybox", SecurityContext: netAdmin}}), false, "busybox"},
		{"unparsable image", oddPod("junk", []corev1.Container{{Name: "c", Image: "UPPER/Case::tag"}}), false, "UPPER/Case::tag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := request(admissionv1.Create, "Pod", c.obj, nil)
			start := time.Now()
			if resp := vs.walkthrough.Handle(context.Background(), req); resp.Allowed != c.walkthrough {
				t.Errorf("walkthrough policy: allowed = %v, want %v: %v", resp.Allowed, c.walkthrough, resp.Result)
			} else if !resp.Allowed && !strings.Contains(resp.Result.Message, c.msg) {
				t.Errorf("message %q does not contain %q", resp.Result.Message, c.msg)
			}
			if resp := vs.denyAll.Handle(context.Background(), req); resp.Allowed {
				t.Error("deny-all: admitted")
			}
			if resp := vs.permissive.Handle(context.Background(), req); resp.Allowed != (c.name != "unparsable image") {
				t.Errorf("permissive: allowed = %v: %v", resp.Allowed, resp.Result)
			}
			if took := time.Since(start); took > bounded {
				t.Errorf("took %s", took)
			}
		})
	}
}
