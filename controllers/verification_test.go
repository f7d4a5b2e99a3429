package controllers

import (
	"context"
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/verify"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestDigestFromImageID(t *testing.T) {
	for _, tc := range []struct {
		image, imageID, want string
	}{
		// containerd, and vigil dev's kwok stages.
		{"ghcr.io/acme/app:v1", "ghcr.io/acme/app@" + digestA, "ghcr.io/acme/app@" + digestA},
		// Docker (dockershim, cri-dockerd).
		{"nginx:1.25", "docker-pullable://nginx@" + digestA, "index.docker.io/library/nginx@" + digestA},
		// A bare digest: the spec's repository.
		{"registry.example:5000/team/app:v2", digestA, "registry.example:5000/team/app@" + digestA},
		// The digest that runs wins over the one the spec names.
		{"ghcr.io/acme/app@" + digestB, "ghcr.io/acme/app@" + digestA, "ghcr.io/acme/app@" + digestA},
		// A mirror's repository in the imageID: the spec's repository is judged.
		{"ghcr.io/acme/app:v1", "mirror.example/acme/app@" + digestA, "ghcr.io/acme/app@" + digestA},
		// Nothing usable: left to the verifier.
		{"ghcr.io/acme/app:v1", "", ""},
		{"ghcr.io/acme/app:v1", "docker://sha256:123", ""},
		{"ghcr.io/acme/app:v1", "sha512:" + digestA[7:], ""},
		{"in@valid", "ghcr.io/acme/app@" + digestA, ""},
	} {
		got, ok := digestFromImageID(tc.image, tc.imageID)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("digestFromImageID(%q, %q) = %q, %v; want %q", tc.image, tc.imageID, got, ok, tc.want)
		}
	}
}

func TestRunningDigests(t *testing.T) {
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "ghcr.io/acme/init:v1"}},
			Containers: []corev1.Container{
				{Name: "app", Image: "ghcr.io/acme/app:v1"},
				{Name: "sidecar", Image: "ghcr.io/acme/sidecar:v1"},
				{Name: "waiting", Image: "ghcr.io/acme/waiting:v1"},
			},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}},
		},
		Status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ImageID: "ghcr.io/acme/init@" + digestA}},
			// Statuses in another order than the spec, one not pulled yet,
			// one of a container the spec no longer has.
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "sidecar", ImageID: "docker-pullable://ghcr.io/acme/sidecar@" + digestB},
				{Name: "app", ImageID: digestA},
				{Name: "waiting", ImageID: ""},
				{Name: "gone", ImageID: "ghcr.io/acme/gone@" + digestA},
			},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debug", ImageID: "docker.io/library/busybox@" + digestB}},
		},
	}
	want := map[string]string{
		"spec.initContainers[0].image":      "ghcr.io/acme/init@" + digestA,
		"spec.containers[0].image":          "ghcr.io/acme/app@" + digestA,
		"spec.containers[1].image":          "ghcr.io/acme/sidecar@" + digestB,
		"spec.ephemeralContainers[0].image": "index.docker.io/library/busybox@" + digestB,
	}
	if got := runningDigests(pod); !maps.Equal(got, want) {
		t.Errorf("runningDigests =\n%v\nwant\n%v", got, want)
	}
	if got := runningDigests(&corev1.Pod{Spec: pod.Spec}); got != nil {
		t.Errorf("a pod with no statuses yet: %v, want nil", got)
	}
}

func TestRecheckAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		at   time.Time
		want time.Duration
	}{
		{time.Time{}, 0},
		{now.Add(time.Hour), time.Hour},
		{now.Add(MinRecheck + time.Second), MinRecheck + time.Second},
		// A retry due now, or already past, waits the minimum.
		{now.Add(time.Second), MinRecheck},
		{now, MinRecheck},
		{now.Add(-time.Hour), MinRecheck},
	} {
		if got := recheckAfter(tc.at, now); got != tc.want {
			t.Errorf("recheckAfter(now%+v) = %v, want %v", tc.at.Sub(now), got, tc.want)
		}
	}
}

// stubVerifier stands in for *verify.Verifier in unit tests of the glue.
type stubVerifier struct {
	policy.Verifier // attestations and config files: not called here
	name            string
}

func (*stubVerifier) Verify(context.Context, *verify.Authority, verify.Request) (*verify.Evidence, error) {
	return nil, nil
}

func TestPodVerification(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "app"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "ghcr.io/acme/app:v1"}}},
		Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app", ImageID: "ghcr.io/acme/app@" + digestA}}},
	}
	if vf := (&PodReconciler{}).verification(context.Background(), pod); vf.Verifier != nil || vf.Keychain != nil || vf.Digests != nil {
		t.Errorf("without a verifier: %+v, want the zero Verification", vf)
	}
	cs := fake.NewClientset()
	v := &stubVerifier{name: "shared"}
	r := &PodReconciler{Deps: Deps{Verifier: v, Keychains: &verify.Keychains{Client: cs}}}
	vf := r.verification(context.Background(), pod)
	if vf.Verifier != v || vf.Lane != verify.LaneBackground || vf.Keychain == nil || vf.SignatureKeychain == nil {
		t.Errorf("verification = %+v; want the shared verifier, the background lane and the pod's keychains", vf)
	}
	if want := map[string]string{"spec.containers[0].image": "ghcr.io/acme/app@" + digestA}; !maps.Equal(vf.Digests, want) {
		t.Errorf("Digests = %v, want %v", vf.Digests, want)
	}
	if n := len(cs.Actions()); n != 0 {
		t.Errorf("filling the verification read the API server %d times; credentials must wait for a registry", n)
	}
}

// The digests of a pod are read at every judgement of the verify path.
func BenchmarkRunningDigests(b *testing.B) {
	pod := &corev1.Pod{}
	for i := range 10 {
		name := "c" + string(rune('a'+i))
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: name, Image: "ghcr.io/acme/" + name + ":v1"})
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: name, ImageID: "ghcr.io/acme/" + name + "@" + digestA})
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(runningDigests(pod)) != 10 {
			b.Fatal("digests missing")
		}
	}
}
