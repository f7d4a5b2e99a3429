package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
	"github.com/vigil-dev/vigil/internal/verify"
)

// PinPath is the digest-pinning webhook's path, as policy-controller names it.
const PinPath = "/mutations"

// Resolver turns an image reference into the digest it names now;
// *verify.Verifier is one.
type Resolver interface {
	Resolve(ctx context.Context, image string, kc authn.Keychain, lane verify.Lane) (name.Digest, error)
}

// DigestPinner is the mutating webhook that pins the images of pods to
// digests, as policy-controller's does: a tag that a policy covers is
// resolved with the pod's credentials and the image becomes
// repository:tag@sha256:…, so that what was judged is what runs. Images
// named by digest, and images no policy covers, are left as they are. Only
// Pods are pinned, not the templates of workloads: rewriting a Deployment
// fights the tools that own it (policy-controller#1388), and its pods are
// pinned when they are created.
type DigestPinner struct {
	Policies  *policystore.Store
	Resolver  Resolver
	Keychains *verify.Keychains
}

// Handle implements admission.Handler.
func (p *DigestPinner) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind != "Pod" || (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) ||
		(req.SubResource != "" && req.SubResource != "ephemeralcontainers") {
		return admission.Allowed("only pods are pinned, at CREATE and UPDATE")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return badRequest(fmt.Errorf("Pod %s: %w", objectName(req), err))
	}
	if pod.DeletionTimestamp != nil {
		return admission.Allowed("the object is being deleted")
	}
	pod.Namespace = req.Namespace
	if err := waitSynced(ctx, p.Policies); err != nil {
		return admission.Errored(http.StatusServiceUnavailable, err)
	}
	patches, err := p.pin(ctx, &pod)
	if err != nil {
		return badRequest(fmt.Errorf("Pod %s: %w", objectName(req), err))
	}
	if len(patches) == 0 {
		return admission.Allowed("")
	}
	return admission.Patched("", patches...)
}

// pin returns the patches that pin pod's covered tags, or an error naming
// the image that could not be resolved and the registry's answer.
func (p *DigestPinner) pin(ctx context.Context, pod *corev1.Pod) ([]jsonpatch.JsonPatchOperation, error) {
	set := p.Policies.Set()
	var kc authn.Keychain
	pinned := map[string]string{} // image -> pinned reference, "" when left alone
	var patches []jsonpatch.JsonPatchOperation
	visit := func(field string, i int, cname, image string) error {
		to, seen := pinned[image]
		if !seen {
			if !pinnable(image) || !covered(ctx, set, pod, image) {
				pinned[image] = ""
				return nil
			}
			if kc == nil {
				kc = p.Keychains.Pod(ctx, pod)
			}
			d, err := p.Resolver.Resolve(ctx, image, kc, verify.LaneAdmission)
			if err != nil {
				return fmt.Errorf("spec.%s[%d].image: cannot resolve image %q of container %q to a digest: %w", field, i, image, cname, err)
			}
			to = pinnedReference(image, d)
			pinned[image] = to
		}
		if to != "" {
			patches = append(patches, jsonpatch.JsonPatchOperation{Operation: "replace", Path: fmt.Sprintf("/spec/%s/%d/image", field, i), Value: to})
		}
		return nil
	}
	for i, c := range pod.Spec.InitContainers {
		if err := visit("initContainers", i, c.Name, c.Image); err != nil {
			return nil, err
		}
	}
	for i, c := range pod.Spec.Containers {
		if err := visit("containers", i, c.Name, c.Image); err != nil {
			return nil, err
		}
	}
	for i, c := range pod.Spec.EphemeralContainers {
		if err := visit("ephemeralContainers", i, c.Name, c.Image); err != nil {
			return nil, err
		}
	}
	return patches, nil
}

// pinnable: a reference that parses and names no digest yet. One that does
// not parse is left to the validating webhook, which says why.
func pinnable(image string) bool {
	ref, err := name.ParseReference(image, name.WeakValidation)
	if err != nil {
		return false
	}
	_, isDigest := ref.(name.Digest)
	return !isDigest
}

// pinnedReference is image with the digest it resolved to: the fully
// qualified repository, the tag kept for people (policy-controller's form
// since 2025), then the digest, which is what the kubelet pulls.
func pinnedReference(image string, d name.Digest) string {
	if t, err := name.NewTag(image, name.WeakValidation); err == nil {
		return t.Name() + "@" + d.DigestStr()
	}
	return d.String()
}

// covered says whether a policy matches image in pod: the image judged
// alone, in a pod with pod's namespace and labels (which match filters
// read), gets a result from some policy.
func covered(ctx context.Context, set *policy.Set, pod *corev1.Pod, image string) bool {
	probe := &corev1.Pod{ObjectMeta: pod.ObjectMeta, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: image}}}}
	probe.APIVersion, probe.Kind = "v1", "Pod"
	obj, err := policy.ObjectFromRuntime(probe)
	if err != nil {
		return false
	}
	d := set.Decide(ctx, obj, policy.Options{NoMatchPolicy: policy.NoMatchAllow})
	for _, r := range d.Results {
		if r.Policy != policy.NoMatchingPolicies {
			return true
		}
	}
	return false
}
