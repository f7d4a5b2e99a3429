package admission

import (
	"context"
	"slices"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/verify"
)

// The credentials of a workload's images are its pod template's.
func TestCredentialPod(t *testing.T) {
	creds := `{"serviceAccountName": "builder", "imagePullSecrets": [{"name": "regcred"}], "containers": [{"name": "app", "image": "app"}]}`
	for _, tc := range []struct{ kind, object string }{
		{"Pod", `{"apiVersion": "v1", "kind": "Pod", "spec": ` + creds + `}`},
		{"Deployment", `{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": ` + creds + `}}}`},
		{"Job", `{"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": ` + creds + `}}}`},
		{"CronJob", `{"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": ` + creds + `}}}}}`},
	} {
		p := credentialPod(request(admissionv1.Create, tc.kind, []byte(tc.object), nil))
		if p.Namespace != "default" || p.Spec.ServiceAccountName != "builder" ||
			!slices.Equal(p.Spec.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}}) {
			t.Errorf("%s: credentials %s/%+v, want default/builder with regcred", tc.kind, p.Namespace, p.Spec)
		}
	}
	// A Deployment's own spec has no pull fields: the template's count, not
	// fields of the same names elsewhere.
	p := credentialPod(request(admissionv1.Create, "Deployment", []byte(`{"spec": {"serviceAccountName": "wrong", "template": {"spec": {}}}}`), nil))
	if p.Spec.ServiceAccountName != "" {
		t.Errorf("Deployment: service account %q read outside the pod template", p.Spec.ServiceAccountName)
	}
}

type stubVerifier struct {
	policy.Verifier // attestations and config files: not called here
}

func (stubVerifier) Verify(context.Context, *verify.Authority, verify.Request) (*verify.Evidence, error) {
	return nil, nil
}

func TestAdmissionVerification(t *testing.T) {
	req := request(admissionv1.Create, "Pod", []byte(`{"spec": {"containers": [{"name": "app", "image": "app"}]}}`), nil)
	if vf := (&WorkloadValidator{}).verification(context.Background(), req); vf.Verifier != nil || vf.Keychain != nil {
		t.Errorf("without a verifier: %+v, want the zero Verification", vf)
	}
	cs := fake.NewClientset()
	v := &WorkloadValidator{Verifier: stubVerifier{}, Keychains: &verify.Keychains{Client: cs}}
	vf := v.verification(context.Background(), req)
	if vf.Verifier == nil || vf.Lane != verify.LaneAdmission || vf.Keychain == nil || vf.SignatureKeychain == nil || vf.Digests != nil {
		t.Errorf("verification = %+v; want the verifier, the admission lane, the object's keychains and no digests", vf)
	}
	if n := len(cs.Actions()); n != 0 {
		t.Errorf("filling the verification read the API server %d times; credentials must wait for a registry", n)
	}
}
