package admission

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
)

// sample reads a file of config/samples as JSON.
func sample(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func seedStore(t *testing.T, cipFiles ...string) *policystore.Store {
	t.Helper()
	s := policystore.New(policy.Compiler{})
	for _, f := range cipFiles {
		var cip v1beta1.ClusterImagePolicy
		if err := json.Unmarshal(sample(t, f), &cip); err != nil {
			t.Fatal(err)
		}
		cip.Generation = 1
		if err := s.Apply(&cip); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	s.MarkSynced()
	return s
}

func request(op admissionv1.Operation, kind string, obj, old []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "1", Operation: op, Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind},
		Namespace: "default", Name: "yolo",
		Object: runtime.RawExtension{Raw: obj}, OldObject: runtime.RawExtension{Raw: old},
	}}
}

type fixedNoMatch policy.NoMatchPolicy

func (f fixedNoMatch) NoMatchPolicy() policy.NoMatchPolicy { return policy.NoMatchPolicy(f) }

func TestWorkloadValidatorWalkthrough(t *testing.T) {
	ctx := context.Background()
	v := &WorkloadValidator{Policies: seedStore(t, "cip.yaml"), NoMatch: fixedNoMatch(policy.NoMatchDeny)}

	resp := v.Handle(ctx, request(admissionv1.Create, "Pod", sample(t, "pod-net-admin.yaml"), nil))
	if resp.Allowed {
		t.Fatal("the NET_ADMIN pod was admitted")
	}
	if resp.Result.Code != http.StatusBadRequest || resp.Result.Reason != metav1.StatusReasonBadRequest {
		t.Errorf("status = %d %s, want 400 BadRequest (kubectl prints it as such)", resp.Result.Code, resp.Result.Reason)
	}
	wantPrefix := "validation failed: failed policy: non-default-capabilities-cue: spec.containers[0].image\n" +
		"docker.io/ubuntu failed evaluating cue policy for ClusterImagePolicy: failed to evaluate the policy with error: spec.containers.0.securityContext.capabilities.add.0: "
	if !strings.HasPrefix(resp.Result.Message, wantPrefix) {
		t.Errorf("message =\n%s\nwant prefix\n%s", resp.Result.Message, wantPrefix)
	}

	if resp := v.Handle(ctx, request(admissionv1.Create, "Pod", sample(t, "pod-fixed.yaml"), nil)); !resp.Allowed || len(resp.Warnings) != 0 {
		t.Errorf("the fixed pod: allowed=%v warnings=%v, want allowed without warnings", resp.Allowed, resp.Warnings)
	}
}

func TestWorkloadValidatorNoMatchWarnSplitsLines(t *testing.T) {
	v := &WorkloadValidator{Policies: seedStore(t), NoMatch: fixedNoMatch(policy.NoMatchWarn)}
	resp := v.Handle(context.Background(), request(admissionv1.Create, "Pod", sample(t, "pod-fixed.yaml"), nil))
	if !resp.Allowed {
		t.Fatalf("denied under no-match-policy warn: %v", resp.Result)
	}
	want := []string{"no matching policies: spec.containers[0].image", "docker.io/ubuntu"}
	if strings.Join(resp.Warnings, "|") != strings.Join(want, "|") {
		t.Errorf("warnings = %q, want %q (kube-apiserver drops warnings with a newline)", resp.Warnings, want)
	}
}

func TestWorkloadValidatorMalformed(t *testing.T) {
	v := &WorkloadValidator{Policies: seedStore(t, "cip.yaml"), NoMatch: fixedNoMatch(policy.NoMatchDeny)}
	for name, raw := range map[string]string{
		"truncated":   `{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a"`,
		"wrong types": `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":"not a list"}}`,
		"empty":       ``,
	} {
		t.Run(name, func(t *testing.T) {
			resp := v.Handle(context.Background(), request(admissionv1.Create, "Pod", []byte(raw), nil))
			if resp.Allowed {
				t.Fatal("a malformed object was admitted")
			}
			if !strings.Contains(resp.Result.Message, `Pod "yolo" in namespace "default"`) {
				t.Errorf("message %q does not name the object", resp.Result.Message)
			}
		})
	}
}

// TestWorkloadValidatorInvalidUTF8: an object that is not UTF-8 is bad
// input, denied naming the object, the byte and the key or value holding it,
// even by a policy that admits every image (issue 19), through Handle and
// through controller-runtime's HTTP handler.
func TestWorkloadValidatorInvalidUTF8(t *testing.T) {
	permissive := &WorkloadValidator{Policies: seedStore(t, "cip-permissive.yaml"), NoMatch: fixedNoMatch(policy.NoMatchAllow)}
	pod := func(labelKey, container string) []byte {
		return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"yolo","labels":{"` + labelKey +
			`":"x"}},"spec":{"containers":[{"name":"` + container + `","image":"docker.io/ubuntu"}]}}`)
	}
	if resp := permissive.Handle(context.Background(), request(admissionv1.Create, "Pod", pod("app", "c"), nil)); !resp.Allowed {
		t.Fatalf("the valid pod was denied: %v", resp.Result)
	}
	for _, c := range []struct {
		name string
		obj  []byte
		want string
	}{
		{"key", pod("app\xf3", "c"), `Pod "yolo" in namespace "default": not valid UTF-8: byte 0xf3 at line 1, column 73 (offset 72), in a key in metadata.labels`},
		{"value", pod("app", "c\xc3\x28"), `Pod "yolo" in namespace "default": not valid UTF-8: byte 0xc3 at line 1, column 113 (offset 112), in the value of spec.containers[0].name`},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := permissive.Handle(context.Background(), request(admissionv1.Create, "Pod", c.obj, nil))
			if resp.Allowed || resp.Result.Code != http.StatusBadRequest || resp.Result.Message != c.want {
				t.Errorf("Handle: allowed=%v %+v;\nwant a 400 denial %q", resp.Allowed, resp.Result, c.want)
			}
			viaHTTP, _ := serve(t, permissive, review(metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, admissionv1.Create, c.obj))
			if viaHTTP.Allowed || viaHTTP.Result == nil || !strings.Contains(viaHTTP.Result.Message, "not valid UTF-8: byte") {
				t.Errorf("HTTP: allowed=%v %+v", viaHTTP.Allowed, viaHTTP.Result)
			}
		})
	}
}

func TestWorkloadValidatorWaitsForPolicies(t *testing.T) {
	v := &WorkloadValidator{Policies: policystore.New(policy.Compiler{}), NoMatch: fixedNoMatch(policy.NoMatchAllow)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the store never syncs; the request must not be decided on an empty set
	resp := v.Handle(ctx, request(admissionv1.Create, "Pod", sample(t, "pod-fixed.yaml"), nil))
	if resp.Allowed || resp.Result.Code != http.StatusServiceUnavailable {
		t.Errorf("allowed=%v code=%d, want a 503 error before the policies are loaded", resp.Allowed, resp.Result.Code)
	}
}

func TestSkipRequest(t *testing.T) {
	deploymentWith := func(replicas int, deleting bool, capability string) []byte {
		container := map[string]any{"name": "app", "image": "docker.io/ubuntu"}
		if capability != "" {
			container["securityContext"] = map[string]any{"capabilities": map[string]any{"add": []string{capability}}}
		}
		obj := map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "d"},
			"spec": map[string]any{"replicas": replicas, "template": map[string]any{"spec": map[string]any{"containers": []any{container}}}}}
		if deleting {
			obj["metadata"].(map[string]any)["deletionTimestamp"] = "2026-01-01T00:00:00Z"
		}
		b, _ := json.Marshal(obj)
		return b
	}
	deployment := func(replicas int, deleting bool) []byte { return deploymentWith(replicas, deleting, "") }
	cases := []struct {
		name string
		req  admission.Request
		skip bool
	}{
		{"create", request(admissionv1.Create, "Deployment", deployment(3, false), nil), false},
		{"scale up", request(admissionv1.Update, "Deployment", deployment(5, false), deployment(3, false)), false},
		{"scale down", request(admissionv1.Update, "Deployment", deployment(1, false), deployment(3, false)), true},
		// Unlike policy-controller: a template change riding on a scale-down is judged.
		{"scale down with a new capability", request(admissionv1.Update, "Deployment", deploymentWith(1, false, "NET_ADMIN"), deployment(3, false)), false},
		{"being deleted", request(admissionv1.Update, "Deployment", deployment(3, true), deployment(3, false)), true},
		{"delete", request(admissionv1.Delete, "Deployment", nil, deployment(3, false)), true},
	}
	status := request(admissionv1.Update, "Pod", []byte(`{}`), []byte(`{}`))
	status.SubResource = "status"
	cases = append(cases, struct {
		name string
		req  admission.Request
		skip bool
	}{"status subresource", status, true})
	for _, c := range cases {
		if skip, why := skipRequest(c.req, readShape(c.req.Object.Raw)); skip != c.skip {
			t.Errorf("%s: skip = %v (%s), want %v", c.name, skip, why, c.skip)
		}
	}
}

func TestPolicyValidator(t *testing.T) {
	v := &PolicyValidator{}
	if resp := v.Handle(context.Background(), request(admissionv1.Create, "ClusterImagePolicy", sample(t, "cip.yaml"), nil)); !resp.Allowed {
		t.Fatalf("the walkthrough's policy was refused: %v", resp.Result)
	}
	cases := map[string]struct{ doc, want string }{
		"cue does not compile": {
			`{"apiVersion":"policy.sigstore.dev/v1beta1","kind":"ClusterImagePolicy","metadata":{"name":"bad"},
			  "spec":{"images":[{"glob":"**"}],"authorities":[{"static":{"action":"pass"}}],"policy":{"type":"cue","data":"spec: {"}}}`,
			"spec.policy.data",
		},
		"unknown field": {
			`{"apiVersion":"policy.sigstore.dev/v1beta1","kind":"ClusterImagePolicy","metadata":{"name":"bad"},
			  "spec":{"images":[{"glob":"**"}],"authoritys":[]}}`,
			"authoritys",
		},
		"no authority kind": {
			`{"apiVersion":"policy.sigstore.dev/v1beta1","kind":"ClusterImagePolicy","metadata":{"name":"bad"},
			  "spec":{"images":[{"glob":"**"}],"authorities":[{"name":"x"}]}}`,
			"expected exactly one, got neither: spec.authorities[0].key, spec.authorities[0].keyless, spec.authorities[0].static",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			resp := v.Handle(context.Background(), request(admissionv1.Create, "ClusterImagePolicy", []byte(c.doc), nil))
			if resp.Allowed {
				t.Fatal("an invalid policy was admitted")
			}
			if !strings.Contains(resp.Result.Message, c.want) {
				t.Errorf("message %q does not contain %q", resp.Result.Message, c.want)
			}
		})
	}
}

func TestConfigurationScopesWorkloads(t *testing.T) {
	vwc := Configuration(ConfigurationOptions{Name: "n", WorkloadWebhookName: "policy.sigstore.dev", Namespace: "vigil-system", URL: "https://localhost:1"})
	w := vwc.Webhooks[0]
	if w.Name != "policy.sigstore.dev" || *w.FailurePolicy != "Fail" || *w.TimeoutSeconds != TimeoutSeconds {
		t.Errorf("workload webhook: %s failurePolicy=%s timeout=%d", w.Name, *w.FailurePolicy, *w.TimeoutSeconds)
	}
	sel, _ := json.Marshal(w.NamespaceSelector)
	for _, want := range []string{v1beta1.IncludeLabel, "kube-system", "vigil-system"} {
		if !strings.Contains(string(sel), want) {
			t.Errorf("namespaceSelector %s does not mention %s", sel, want)
		}
	}
	if *w.ClientConfig.URL != "https://localhost:1"+WorkloadPath {
		t.Errorf("url = %s", *w.ClientConfig.URL)
	}
}
