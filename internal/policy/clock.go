package policy

import (
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

// TimeDependent reports whether the policy reads the clock (Rego's
// time.now_ns), in its CIP-level body or in an attestation policy: its
// result may change as time passes with nothing else changed, so the body
// is never taken from the result cache and a caller judges it again on a
// schedule.
func (p *CompiledPolicy) TimeDependent() bool {
	return p.attestationClock || (p.body != nil && p.body.timeDependent())
}

// attestationsReadClock reports whether an inline Rego attestation policy
// of spec refers to the clock. The bodies compiled already; a parse error
// here means nothing more than that.
func attestationsReadClock(spec *v1beta1.ClusterImagePolicySpec) bool {
	for _, a := range spec.Authorities {
		for _, att := range a.Attestations {
			if att.Policy == nil || att.Policy.Type != v1beta1.PolicyTypeRego || att.Policy.Data == "" {
				continue
			}
			mod, err := ast.ParseModuleWithOpts(regoModule, att.Policy.Data, ast.ParserOptions{RegoVersion: ast.RegoV0})
			if err == nil && callsClock(mod) {
				return true
			}
		}
	}
	return false
}
