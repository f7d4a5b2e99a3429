package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/verify"
)

// MinRecheck is the shortest wait before a pod is judged again because its
// decision may change with time (policy.Decision.RecheckAt): a verifier
// that keeps answering "retry now" cannot make the verify path spin.
const MinRecheck = 5 * time.Second

// recheckAfter is how long to wait before judging a pod again for
// recheckAt; 0 is never. The work queue keeps one pending entry per pod,
// the earliest, so rechecks never pile up.
func recheckAfter(recheckAt, now time.Time) time.Duration {
	if recheckAt.IsZero() {
		return 0
	}
	return max(recheckAt.Sub(now), MinRecheck)
}

// verification is what the decision of a running pod needs to verify
// signatures: the digests that run, the pod's credentials (read only if a
// registry is asked), the background lane, and refresh: the pod is judged
// again at its passes' refresh time (Decision.RecheckAt), and the first pod
// of a digest judged then verifies it again before the pass expires.
func (r *PodReconciler) verification(ctx context.Context, pod *corev1.Pod) policy.Verification {
	if r.Verifier == nil {
		return policy.Verification{}
	}
	return policy.Verification{
		Verifier:          r.Verifier,
		Keychain:          r.Keychains.Pod(ctx, pod),
		SignatureKeychain: r.Keychains.Signatures(ctx, pod.Namespace),
		Lane:              verify.LaneBackground,
		Refresh:           true,
		Digests:           runningDigests(pod),
	}
}

// runningDigests maps the path of each image of pod (spec.containers[0].image)
// to the digest reference that runs, from the container statuses' imageIDs.
// Containers whose imageID says nothing usable are left out: the verifier
// resolves their reference instead.
func runningDigests(pod *corev1.Pod) map[string]string {
	out := map[string]string{}
	add := func(field string, images map[string]string, indexes map[string]int, statuses []corev1.ContainerStatus) {
		for _, st := range statuses {
			if i, ok := indexes[st.Name]; ok {
				if d, ok := digestFromImageID(images[st.Name], st.ImageID); ok {
					out[fmt.Sprintf("spec.%s[%d].image", field, i)] = d
				}
			}
		}
	}
	s := pod.Spec
	images, indexes := containerIndex(len(s.InitContainers), func(i int) (string, string) { return s.InitContainers[i].Name, s.InitContainers[i].Image })
	add("initContainers", images, indexes, pod.Status.InitContainerStatuses)
	images, indexes = containerIndex(len(s.Containers), func(i int) (string, string) { return s.Containers[i].Name, s.Containers[i].Image })
	add("containers", images, indexes, pod.Status.ContainerStatuses)
	images, indexes = containerIndex(len(s.EphemeralContainers), func(i int) (string, string) {
		return s.EphemeralContainers[i].Name, s.EphemeralContainers[i].Image
	})
	add("ephemeralContainers", images, indexes, pod.Status.EphemeralContainerStatuses)
	if len(out) == 0 {
		return nil
	}
	return out
}

// containerIndex maps the names of n containers to their images and indexes.
func containerIndex(n int, at func(int) (name, image string)) (map[string]string, map[string]int) {
	images, indexes := make(map[string]string, n), make(map[string]int, n)
	for i := range n {
		cname, image := at(i)
		images[cname], indexes[cname] = image, i
	}
	return images, indexes
}

// digestFromImageID reads the digest that runs from a container status's
// imageID, as a reference in image's repository: containerd reports
// "repo@sha256:…", Docker "docker-pullable://repo@sha256:…", and some
// runtimes only "sha256:…". The repository of the spec's image is kept (a
// runtime may name the image by another of its repositories, or a mirror),
// so the policy judges the image the pod names, at the digest that runs.
func digestFromImageID(image, imageID string) (string, bool) {
	id := imageID
	if i := strings.Index(id, "://"); i >= 0 {
		id = id[i+3:]
	}
	if i := strings.LastIndex(id, "@"); i >= 0 {
		id = id[i+1:]
	}
	h, err := v1.NewHash(id)
	if err != nil || h.Algorithm != "sha256" {
		return "", false
	}
	ref, err := name.ParseReference(image, name.WeakValidation)
	if err != nil {
		return "", false
	}
	return ref.Context().Digest(h.String()).String(), true
}
