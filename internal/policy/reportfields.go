package policy

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

// Annotations of a ClusterImagePolicy that file its results in reports, as
// Kyverno's policies.kyverno.io/category and policies.kyverno.io/severity do.
const (
	// AnnotationCategory is the category of the policy's results, free text
	// (at most MaxCategoryLength characters, one line).
	AnnotationCategory = "vigil.dev/category"
	// AnnotationSeverity is the severity of the policy's results: one of
	// Severities.
	AnnotationSeverity = "vigil.dev/severity"
	// MaxCategoryLength bounds AnnotationCategory.
	MaxCategoryLength = 128
)

// Severities are the severities a PolicyReport result may carry, lowest
// first.
var Severities = []string{"info", "low", "medium", "high", "critical"}

// Rules of the results, when the result is about one part of the policy.
const (
	// RuleBody: the CIP-level policy (spec.policy), which an image must
	// satisfy once an authority vouched for it.
	RuleBody = "policy"
	// RuleAuthorities: several authorities, any one of which suffices.
	RuleAuthorities = "authorities"
)

// reportFields are what a policy's results carry for reports besides the
// verdict: the rule, and the author's category and severity.
type reportFields struct{ rule, category, severity string }

// stamp copies the fields into r.
func (f reportFields) stamp(r *Result) {
	r.Rule, r.Category, r.Severity = f.rule, f.category, f.severity
}

// reportFieldsOf reads the report fields of cip, whose defaulted spec is
// spec. The rule is the part of the policy its results are about, the same
// for every result so that a reader can follow one rule over time: the
// CIP-level policy when there is one (a pod that no authority vouches for
// fails it too), else the only authority, else the authorities together; ""
// when the policy has neither (its name is then the rule).
func reportFieldsOf(cip *v1beta1.ClusterImagePolicy, spec *v1beta1.ClusterImagePolicySpec) (reportFields, error) {
	f := reportFields{category: cip.Annotations[AnnotationCategory], severity: cip.Annotations[AnnotationSeverity]}
	switch {
	case spec.Policy != nil:
		f.rule = RuleBody
	case len(spec.Authorities) == 1:
		f.rule = spec.Authorities[0].Name
	case len(spec.Authorities) > 1:
		f.rule = RuleAuthorities
	}
	// An invalid value is dropped as well as reported, so that a broken
	// policy's results still carry the valid ones.
	field := func(key string) string { return fmt.Sprintf("metadata.annotations[%s]", key) }
	var err error
	if f.severity != "" && !slices.Contains(Severities, f.severity) {
		err = &InvalidPolicyError{Policy: cip.Name, Reason: v1beta1.ReasonInvalid, Field: field(AnnotationSeverity),
			Message: fmt.Sprintf("%s: invalid value %q: must be one of %s", field(AnnotationSeverity), f.severity, strings.Join(Severities, ", "))}
		f.severity = ""
	}
	if n := utf8.RuneCountInString(f.category); n > MaxCategoryLength || strings.ContainsAny(f.category, "\r\n") {
		err = &InvalidPolicyError{Policy: cip.Name, Reason: v1beta1.ReasonInvalid, Field: field(AnnotationCategory),
			Message: fmt.Sprintf("%s: must be one line of at most %d characters (it has %d)", field(AnnotationCategory), MaxCategoryLength, n)}
		f.category = ""
	}
	return f, err
}
