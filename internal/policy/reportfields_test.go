package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

func annotated(cip *v1beta1.ClusterImagePolicy, kv ...string) *v1beta1.ClusterImagePolicy {
	cip.Annotations = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		cip.Annotations[kv[i]] = kv[i+1]
	}
	return cip
}

// A result carries the part of the policy it is about and the author's
// category and severity, whatever the verdict.
func TestResultReportFields(t *testing.T) {
	keyless := v1beta1.Authority{Name: "sigstore", Keyless: &v1beta1.KeylessRef{URL: "https://fulcio.example", Identities: []v1beta1.Identity{{Issuer: "i", Subject: "s"}}}}
	cases := []struct {
		name                             string
		cip                              *v1beta1.ClusterImagePolicy
		result, rule, category, severity string
	}{
		{"one static authority, no annotations", newCIP("p"), ResultPass, "authority-0", "", ""},
		{"one authority that errors", annotated(newCIP("p", withAuthorities(keyless)), AnnotationSeverity, "critical"),
			ResultError, "sigstore", "", "critical"},
		{"several authorities", newCIP("p", withAuthorities(staticAuth("fail", "no"), staticAuth("fail", "never"))), ResultFail, RuleAuthorities, "", ""},
		{"a CIP-level policy", annotated(newCIP("p", withCUE(`spec: containers: [...{name: "nope"}]`)),
			AnnotationCategory, "Pod Security", AnnotationSeverity, "low"), ResultFail, RuleBody, "Pod Security", "low"},
		{"a CIP-level policy that passes", newCIP("p", withCUE(`spec: containers: [...{name: "c0"}]`)), ResultPass, RuleBody, "", ""},
		{"neither authorities nor body", newCIP("p", withAuthorities()), ResultFail, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Compiler{AllowEmptyAuthorities: true}.Compile(c.cip)
			if err != nil {
				t.Fatal(err)
			}
			r := NewSet([]*CompiledPolicy{p}, nil).Decide(t.Context(), obj(t, podYAML("nginx")), Options{}).Results[0]
			if r.Result != c.result || r.Rule != c.rule || r.Category != c.category || r.Severity != c.severity {
				t.Errorf("got %s rule %q category %q severity %q, want %s %q %q %q: %s",
					r.Result, r.Rule, r.Category, r.Severity, c.result, c.rule, c.category, c.severity, r.Message)
			}
		})
	}
}

// A bad annotation makes the policy invalid, with a message naming it; the
// broken policy's results keep what is valid of the others.
func TestReportAnnotationsValidated(t *testing.T) {
	cases := []struct {
		name, key, value, field, message string
	}{
		{"unknown severity", AnnotationSeverity, "urgent", "metadata.annotations[vigil.dev/severity]",
			`metadata.annotations[vigil.dev/severity]: invalid value "urgent": must be one of info, low, medium, high, critical`},
		{"category too long", AnnotationCategory, strings.Repeat("x", MaxCategoryLength+1), "metadata.annotations[vigil.dev/category]",
			"metadata.annotations[vigil.dev/category]: must be one line of at most 128 characters (it has 129)"},
		{"category of two lines", AnnotationCategory, "a\nb", "metadata.annotations[vigil.dev/category]",
			"metadata.annotations[vigil.dev/category]: must be one line of at most 128 characters (it has 3)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cip := annotated(newCIP("p"), c.key, c.value)
			if c.key == AnnotationSeverity {
				cip.Annotations[AnnotationCategory] = "Supply Chain Security"
			} else {
				cip.Annotations[AnnotationSeverity] = "high"
			}
			_, err := Compile(cip)
			var ie *InvalidPolicyError
			if !errors.As(err, &ie) || ie.Field != c.field || ie.Message != c.message || ie.Reason != v1beta1.ReasonInvalid {
				t.Fatalf("error %#v, want field %s and message %q", err, c.field, c.message)
			}
			r := NewSet(nil, []*BrokenPolicy{NewBrokenPolicy(cip, err)}).Decide(t.Context(), obj(t, podYAML("nginx")), Options{}).Results[0]
			if r.Result != ResultError || r.Rule != "authority-0" {
				t.Errorf("broken policy result %s rule %q", r.Result, r.Rule)
			}
			if c.key == AnnotationSeverity && (r.Severity != "" || r.Category != "Supply Chain Security") {
				t.Errorf("broken policy severity %q category %q, want the invalid severity dropped and the category kept", r.Severity, r.Category)
			}
			if c.key == AnnotationCategory && (r.Category != "" || r.Severity != "high") {
				t.Errorf("broken policy category %q severity %q, want the invalid category dropped and the severity kept", r.Category, r.Severity)
			}
		})
	}
}
