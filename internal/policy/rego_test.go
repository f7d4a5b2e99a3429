package policy

import (
	"strings"
	"testing"
)

func TestRegoResultForms(t *testing.T) {
	const prefix = "failed evaluating rego policy for type ClusterImagePolicy: "
	notCompliant := prefix + "policy is not compliant for query 'isCompliant = data.sigstore.isCompliant'"
	tests := []struct {
		name, rego string
		// result in enforce mode and in warn mode
		enforce, warn string
		message       string
		explanation   string
	}{
		{"true", `isCompliant = true`, ResultPass, ResultPass, "", ""},
		{"false", `isCompliant = false`, ResultFail, ResultWarn, notCompliant, "its Rego policy is not satisfied"},
		{"default false", "default isCompliant = false\nisCompliant { input.spec.hostNetwork }", ResultFail, ResultWarn, notCompliant, ""},
		{"undefined", `isCompliant { input.nothing }`, ResultFail, ResultWarn, notCompliant, ""},
		{"reads the input", `isCompliant {
			input.typemeta.kind == "Pod"
			input.metadata.labels.app == "web"
			input.authorityMatches["authority-0"].static == true
			input.spec.containers[0].name == "c0"
		}`, ResultPass, ResultPass, "", ""},
		{"set with a passing result", `isCompliant[r] { r := {"result": true, "error": "", "warning": ""} }`, ResultPass, ResultPass, "", ""},
		{"set with an error", `isCompliant[r] { r := {"result": false, "error": "Found HIGH '9' vulnerabilities", "warning": ""} }`,
			ResultFail, ResultWarn, notCompliant + " with errors: Found HIGH '9' vulnerabilities", `fails p: Found HIGH '9' vulnerabilities`},
		{"a warning fails the policy at its mode", `isCompliant[r] { r := {"result": true, "error": "", "warning": "image is old"} }`,
			ResultFail, ResultWarn, prefix + "warning: image is old", "fails p: image is old"},
		{"empty set", `isCompliant[r] { r := {"result": true}; false }`, ResultFail, ResultWarn,
			prefix + `policy is not compliant for query "isCompliant = data.sigstore.isCompliant"`, ""},
		{"array", `isCompliant = [{"result": false, "error": "from an array"}]`, ResultFail, ResultWarn, "with errors: from an array", ""},
		{"evaluation error", "isCompliant = true { true }\nisCompliant = false { true }", ResultError, ResultError,
			prefix, ""},
	}
	o := obj(t, podYAML("nginx"))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "package sigstore\n" + tc.rego
			for _, mode := range []string{"enforce", "warn"} {
				d := decide(t, o, Options{}, newCIP("p", withRego(src), withMode(mode)))
				r := d.Results[0]
				want := tc.enforce
				if mode == "warn" {
					want = tc.warn
				}
				if r.Result != want {
					t.Fatalf("%s mode: result = %s, want %s: %s", mode, r.Result, want, r.Message)
				}
				if !strings.Contains(r.Message, tc.message) {
					t.Errorf("message %q does not contain %q", r.Message, tc.message)
				}
				if !strings.Contains(r.Explanation, tc.explanation) {
					t.Errorf("explanation %q does not contain %q", r.Explanation, tc.explanation)
				}
				if d.Allowed != (want != ResultFail && !(want == ResultError && mode == "enforce")) {
					t.Errorf("%s mode: Allowed = %v with result %s", mode, d.Allowed, want)
				}
			}
		})
	}
}
