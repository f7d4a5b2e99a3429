package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
)

// explodingCUE unifies 22 disjunctions of two structs: minutes of CPU and
// hundreds of MiB when compiled without bounds.
func explodingCUE() string {
	var terms []string
	for i := range 22 {
		terms = append(terms, fmt.Sprintf("({a%d: 1} | {b%d: 1})", i, i))
	}
	return "spec: x: " + strings.Join(terms, " & ") + "\n"
}

func cipJSON(t *testing.T, spec v1beta1.ClusterImagePolicySpec) []byte {
	t.Helper()
	cip := v1beta1.ClusterImagePolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy.sigstore.dev/v1beta1", Kind: "ClusterImagePolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "hostile"},
		Spec:       spec,
	}
	raw, err := json.Marshal(&cip)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// The ClusterImagePolicy webhook refuses hostile policies within a bounded
// time, naming the field and the limit, and does not crash: a 1 TB string
// compiled in this process would end it with a fatal "out of memory".
func TestPolicyValidatorHostilePolicies(t *testing.T) {
	const timeout = 200 * time.Millisecond
	v := &PolicyValidator{Compiler: policy.Compiler{CompileTimeout: timeout, CompileMemoryLimit: 128 << 20}}
	body := func(typ, data string) v1beta1.ClusterImagePolicySpec {
		return v1beta1.ClusterImagePolicySpec{
			Images:      []v1beta1.ImagePattern{{Glob: "**"}},
			Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
			Policy:      &v1beta1.Policy{Type: typ, Data: data},
		}
	}
	forAnyPod := body("cue", "spec: containers: [...{name: string}]\n_a: \"x\" * (1000000 + 0*len(spec.containers[0].name))\n_b: _a * 1000000\n")
	forAnyPod.Policy.IncludeSpec = new(true)
	attestation := body("cue", "spec: hostNetwork: false")
	attestation.Authorities = []v1beta1.Authority{{
		Key:          &v1beta1.KeyRef{KMS: "gcpkms://k"},
		Attestations: []v1beta1.Attestation{{Name: "a", PredicateType: "https://x", Policy: &v1beta1.Policy{Type: "cue", Data: explodingCUE()}}},
	}}
	cases := []struct {
		name string
		spec v1beta1.ClusterImagePolicySpec
		want []string
	}{
		{"exponential CUE", body("cue", explodingCUE()),
			[]string{"spec.policy.data: failed to compile the cue policy: the compilation took longer than its limit of 200ms", "applying the policy again may succeed"}},
		{"1 TB string", body("cue", "a: \"x\" * 1000000\nb: a * 1000000\n"),
			[]string{"spec.policy.data: failed to compile the cue policy: the compilation needed more than its limit of 128 MiB of memory"}},
		{"1 TB string for any pod", forAnyPod,
			[]string{"spec.policy.data: failed to compile the cue policy: evaluating the policy for a sample pod needed more than its limit of 128 MiB of memory"}},
		{"exponential CUE in an attestation", attestation,
			[]string{"spec.authorities[0].attestations.policy.data: failed to compile the cue policy: the compilation took longer than its limit of 200ms"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			resp := v.Handle(context.Background(), request(admissionv1.Create, "ClusterImagePolicy", cipJSON(t, c.spec), nil))
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the webhook took %s", took)
			}
			if resp.Allowed {
				t.Fatal("a hostile policy was admitted")
			}
			for _, w := range c.want {
				if !strings.Contains(resp.Result.Message, w) {
					t.Errorf("message %q does not contain %q", resp.Result.Message, w)
				}
			}
		})
	}
	// An ordinary policy passes the webhook with the default limits.
	v = &PolicyValidator{}
	if resp := v.Handle(context.Background(), request(admissionv1.Create, "ClusterImagePolicy", sample(t, "cip.yaml"), nil)); !resp.Allowed {
		t.Fatalf("the walkthrough's policy was refused: %v", resp.Result)
	}
}
