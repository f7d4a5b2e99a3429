package controllers_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// Builders for the objects the tests create, so that every test states only
// what matters to it.

// namespaces numbers the namespaces the tests create: a deleted namespace
// stays Terminating here (no kube-controller-manager), so a test run again
// (-count) needs new names.
var namespaces atomic.Int64

// newNamespace is a namespace named base-N; inScope adds the label the
// default --namespace-selector picks.
func newNamespace(base string, inScope bool) *corev1.Namespace {
	name := fmt.Sprintf("%s-%d", base, namespaces.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if inScope {
		ns.Labels = map[string]string{v1beta1.IncludeLabel: "true"}
	}
	return ns
}

type podOption func(*corev1.Pod)

// newPod is a pod with one container "app" running image. With no node and
// no kube-controller-manager it stays Pending, which Vigil judges like a
// running pod.
func newPod(namespace, name, image string, opts ...podOption) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "app",
			Image: image,
			SecurityContext: &corev1.SecurityContext{
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}}},
	}
	for _, o := range opts {
		o(pod)
	}
	return pod
}

// addingCapabilities makes the pod's container add caps, as the
// walkthrough's failing pod adds NET_ADMIN.
func addingCapabilities(caps ...corev1.Capability) podOption {
	return func(p *corev1.Pod) {
		c := p.Spec.Containers[0].SecurityContext.Capabilities
		c.Add = append(c.Add, caps...)
	}
}

type policyOption func(*v1beta1.ClusterImagePolicy)

// newPolicy is a ClusterImagePolicy for the images of globs with one static
// authority that passes: every pod it matches passes unless an option says
// otherwise.
func newPolicy(name string, globs []string, opts ...policyOption) *v1beta1.ClusterImagePolicy {
	cip := &v1beta1.ClusterImagePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1beta1.ClusterImagePolicySpec{
			Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
		},
	}
	for _, g := range globs {
		cip.Spec.Images = append(cip.Spec.Images, v1beta1.ImagePattern{Glob: g})
	}
	for _, o := range opts {
		o(cip)
	}
	return cip
}

// inMode sets the policy's mode: enforce or warn.
func inMode(mode string) policyOption {
	return func(c *v1beta1.ClusterImagePolicy) { c.Spec.Mode = mode }
}

// disallowing makes the policy's only authority a static failure with message.
func disallowing(message string) policyOption {
	return func(c *v1beta1.ClusterImagePolicy) {
		c.Spec.Authorities = []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionFail, Message: message}}}
	}
}

// withCUE gives the policy a CUE body over the pod spec.
func withCUE(data string) policyOption {
	return func(c *v1beta1.ClusterImagePolicy) {
		yes := true
		c.Spec.Policy = &v1beta1.Policy{Type: v1beta1.PolicyTypeCUE, Data: data, IncludeSpec: &yes}
	}
}

// seedPolicy is the walkthrough's policy, config/samples/cip.yaml (no
// capabilities beyond Docker's defaults), renamed and narrowed to globs so
// that it judges only the pods of the test that creates it.
func seedPolicy(t *testing.T, name string, globs ...string) *v1beta1.ClusterImagePolicy {
	t.Helper()
	cip, err := testenv.SeedPolicy()
	if err != nil {
		t.Fatal(err)
	}
	cip.Name = name
	cip.Spec.Images = nil
	for _, g := range globs {
		cip.Spec.Images = append(cip.Spec.Images, v1beta1.ImagePattern{Glob: g})
	}
	return cip
}

// allowCapability edits the seed policy's CUE so that it also allows
// capability, as a person would edit #Allowed.
func allowCapability(t *testing.T, cip *v1beta1.ClusterImagePolicy, capability string) {
	t.Helper()
	const last = `"SYS_CHROOT"`
	if cip.Spec.Policy == nil || !strings.Contains(cip.Spec.Policy.Data, last) {
		t.Fatalf("policy %s does not look like config/samples/cip.yaml: no %s in its CUE", cip.Name, last)
	}
	cip.Spec.Policy.Data = strings.Replace(cip.Spec.Policy.Data, last, last+` | "`+capability+`"`, 1)
}
