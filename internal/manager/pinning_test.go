package manager_test

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// Through kube-apiserver: a pod's tag that a policy covers is stored
// pinned to its digest; a covered tag the registry does not have is denied
// with the registry's answer.
func TestPinDigestsThroughAPIServer(t *testing.T) {
	testenv.Integration(t)
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := crane.Push(img, host+"/pinned/app:v1", crane.Insecure); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	const team = "pinning"
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team, Labels: map[string]string{v1beta1.IncludeLabel: "true"}}})
	create(t, &v1beta1.ClusterImagePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "pinning-test"},
		Spec: v1beta1.ClusterImagePolicySpec{
			Images:      []v1beta1.ImagePattern{{Glob: host + "/pinned/**"}},
			Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
		},
	})
	pod := func(name, image string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}
	}
	want := host + "/pinned/app:v1@" + digest.String()
	// The webhook's policy store follows the new policy on its own time.
	var got string
	for deadline := time.Now().Add(30 * time.Second); got != want; {
		p := pod("app", host+"/pinned/app:v1")
		err := k8s.Create(ctx, p, client.DryRunAll)
		if err == nil {
			got = p.Spec.Containers[0].Image
		}
		if time.Now().After(deadline) {
			t.Fatalf("dry-run create: image %q, error %v; want the image pinned to %s", got, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p := pod("app", host+"/pinned/app:v1")
	create(t, p)
	var stored corev1.Pod
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Spec.Containers[0].Image != want {
		t.Errorf("stored image %q, want %q", stored.Spec.Containers[0].Image, want)
	}

	err = k8s.Create(ctx, pod("missing", host+"/pinned/app:nope"))
	if err == nil {
		t.Fatal("a pod whose covered tag does not resolve was admitted")
	}
	for _, part := range []string{"spec.containers[0].image", host + "/pinned/app:nope", "MANIFEST_UNKNOWN"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("denial %q does not name %s", err, part)
		}
	}
}
