package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
)

// PolicyValidator rejects a ClusterImagePolicy whose fields break
// policy-controller's validation rules or whose CUE or Rego does not compile,
// so a broken policy is refused when it is written, not found at the first pod.
// Compiling is bounded in time and memory (policy.Compiler's CompileTimeout
// and CompileMemoryLimit, in a sandbox process): a policy that explodes is
// refused with the limit it broke and the field that holds it.
type PolicyValidator struct {
	Compiler policy.Compiler
}

// Handle implements admission.Handler.
func (v *PolicyValidator) Handle(_ context.Context, req admission.Request) admission.Response {
	if err := knownOperation(req); err != nil {
		return badRequest(err)
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	var cip v1beta1.ClusterImagePolicy // v1alpha1 has the same schema
	dec := json.NewDecoder(bytes.NewReader(req.Object.Raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cip); err != nil {
		return badRequest(fmt.Errorf("ClusterImagePolicy %q: %w", req.Name, err))
	}
	compiled, err := v.Compiler.Compile(&cip)
	var invalid *policy.InvalidPolicyError
	switch {
	case err == nil:
		resp := admission.Allowed("")
		resp.Warnings = warningLines(compiled.Warnings)
		return resp
	case errors.As(err, &invalid) && (invalid.Reason == policy.ReasonBodyUnavailable || invalid.Reason == policy.ReasonReferenceUnavailable):
		// A configMapRef or remote body is not resolved (no resolver
		// yet), or a Secret or TrustRoot it names is missing or not
		// usable yet: the policy is admitted and shows Ready=False until
		// it is, as a policy applied before its Secret must be.
		return admission.Allowed("")
	case errors.As(err, &invalid) && invalid.Transient:
		// A compile time limit hit, perhaps only because the replica was
		// busy: refused (fail closed), but worth another try.
		return badRequest(fmt.Errorf("validation failed: %w (applying the policy again may succeed if this replica was busy)", err))
	default:
		return badRequest(fmt.Errorf("validation failed: %w", err))
	}
}
