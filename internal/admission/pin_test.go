package admission

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
	"github.com/vigil-dev/vigil/internal/verify"
)

// pinRegistry is an in-memory registry on loopback that counts requests.
type pinRegistry struct {
	host     string
	requests atomic.Int64
}

func newPinRegistry(t *testing.T) *pinRegistry {
	t.Helper()
	r := &pinRegistry{}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// push puts a random image at repo:tag and returns its digest.
func (r *pinRegistry) push(t *testing.T, repoTag string) string {
	t.Helper()
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := crane.Push(img, r.host+"/"+repoTag, crane.Insecure); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// pinPolicies covers host/covered/** with a static pass.
func pinPolicies(t *testing.T, host string) *policystore.Store {
	t.Helper()
	s := policystore.New(policy.Compiler{})
	cip := &v1beta1.ClusterImagePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "covered", Generation: 1},
		Spec: v1beta1.ClusterImagePolicySpec{
			Images:      []v1beta1.ImagePattern{{Glob: host + "/covered/**"}},
			Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
		},
	}
	if err := s.Apply(cip); err != nil {
		t.Fatal(err)
	}
	s.MarkSynced()
	return s
}

func podRequest(t *testing.T, pod *corev1.Pod) []byte {
	t.Helper()
	pod.APIVersion, pod.Kind = "v1", "Pod"
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDigestPinner(t *testing.T) {
	reg := newPinRegistry(t)
	app := reg.push(t, "covered/app:v1")
	initDigest := reg.push(t, "covered/init:v2")
	reg.push(t, "other/app:v1")
	pinner := &DigestPinner{Policies: pinPolicies(t, reg.host), Resolver: verify.New(verify.Options{})}
	ctx := context.Background()
	h := reg.host

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "yolo", Labels: map[string]string{"app": "yolo"}}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: h + "/covered/init:v2"}},
		Containers: []corev1.Container{
			{Name: "app", Image: h + "/covered/app:v1"},
			{Name: "same", Image: h + "/covered/app:v1"},
			{Name: "pinned", Image: h + "/covered/app@" + app},
			{Name: "uncovered", Image: h + "/other/app:v1"},
		},
	}}
	before := reg.requests.Load()
	resp := pinner.Handle(ctx, request(admissionv1.Create, "Pod", podRequest(t, pod), nil))
	if !resp.Allowed {
		t.Fatalf("denied: %v", resp.Result)
	}
	got := map[string]any{}
	for _, p := range resp.Patches {
		if p.Operation != "replace" {
			t.Errorf("patch %v: want replace", p)
		}
		got[p.Path] = p.Value
	}
	want := map[string]any{
		"/spec/initContainers/0/image": h + "/covered/init:v2@" + initDigest,
		"/spec/containers/0/image":     h + "/covered/app:v1@" + app,
		"/spec/containers/1/image":     h + "/covered/app:v1@" + app,
	}
	if len(got) != len(want) {
		t.Errorf("patches %v, want exactly %v", got, want)
	}
	for path, v := range want {
		if got[path] != v {
			t.Errorf("%s = %v, want %v", path, got[path], v)
		}
	}
	// One HEAD per distinct covered tag; the uncovered image is not asked for.
	if n := reg.requests.Load() - before; n > 4 {
		t.Errorf("%d registry requests for two covered tags; the uncovered image or the repeated one was resolved", n)
	}

	// Nothing to pin: no patch, no registry request.
	before = reg.requests.Load()
	quiet := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "pinned", Image: h + "/covered/app@" + app}, {Name: "uncovered", Image: h + "/other/app:v1"}, {Name: "bad", Image: "in@valid"},
	}}}
	resp = pinner.Handle(ctx, request(admissionv1.Create, "Pod", podRequest(t, quiet), nil))
	if !resp.Allowed || len(resp.Patches) != 0 || reg.requests.Load() != before {
		t.Errorf("pod with nothing to pin: allowed %v, patches %v, %d registry requests", resp.Allowed, resp.Patches, reg.requests.Load()-before)
	}

	// A covered tag that the registry does not have: a denial that names
	// the field, the image and the registry's answer.
	missing := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "missing"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "app", Image: h + "/covered/app:nope"},
	}}}
	resp = pinner.Handle(ctx, request(admissionv1.Create, "Pod", podRequest(t, missing), nil))
	if resp.Allowed {
		t.Fatal("a tag that cannot be resolved was admitted")
	}
	msg := resp.Result.Message
	for _, part := range []string{`"yolo"`, "spec.containers[0].image", h + "/covered/app:nope", `container "app"`, "MANIFEST_UNKNOWN"} {
		if !strings.Contains(msg, part) {
			t.Errorf("denial %q does not name %s", msg, part)
		}
	}

	// Workloads are not rewritten.
	deploy := []byte(`{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "` + h + `/covered/app:v1"}]}}}}`)
	resp = pinner.Handle(ctx, request(admissionv1.Create, "Deployment", deploy, nil))
	if !resp.Allowed || len(resp.Patches) != 0 {
		t.Errorf("Deployment: allowed %v, patches %v; want it untouched", resp.Allowed, resp.Patches)
	}
}
