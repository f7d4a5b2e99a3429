package admission

import (
	"context"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/verify"
)

// pullCredentials are the fields of a pod spec that say how its images are
// pulled.
type pullCredentials struct {
	ServiceAccountName string                        `json:"serviceAccountName,omitempty"`
	ImagePullSecrets   []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
}

// credentialShape reads pullCredentials at each kind's pod spec: spec (Pod),
// spec.template.spec (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job),
// spec.jobTemplate.spec.template.spec (CronJob).
type credentialShape struct {
	Spec struct {
		pullCredentials
		Template struct {
			Spec pullCredentials `json:"spec"`
		} `json:"template"`
		JobTemplate struct {
			Spec struct {
				Template struct {
					Spec pullCredentials `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// credentialPod is a pod with the namespace and pull credentials of the
// object in req: what a kubelet would pull the object's images with.
func credentialPod(req admission.Request) *corev1.Pod {
	var s credentialShape
	_ = json.Unmarshal(req.Object.Raw, &s) // the decision has read it already
	c := s.Spec.pullCredentials
	switch req.Kind.Kind {
	case "Pod":
	case "CronJob":
		c = s.Spec.JobTemplate.Spec.Template.Spec
	default:
		c = s.Spec.Template.Spec
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: req.Name},
		Spec:       corev1.PodSpec{ServiceAccountName: c.ServiceAccountName, ImagePullSecrets: c.ImagePullSecrets},
	}
}

// verification is what the decision of an admission request needs to verify
// signatures: the shared verifier, the object's credentials (read only if a
// registry is asked), the admission lane.
func (v *WorkloadValidator) verification(ctx context.Context, req admission.Request) policy.Verification {
	if v.Verifier == nil {
		return policy.Verification{}
	}
	return policy.Verification{
		Verifier:          v.Verifier,
		Keychain:          v.Keychains.Pod(ctx, credentialPod(req)),
		SignatureKeychain: v.Keychains.Signatures(ctx, req.Namespace),
		Lane:              verify.LaneAdmission,
	}
}
