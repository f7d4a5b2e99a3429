package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runVigil runs the root command in-process and returns stdout and the exit
// code main would use.
func runVigil(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	code := exitOK
	if err != nil {
		code = exitBadInput
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return out.String(), code, err
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const capsPolicy = `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: no-net-admin
spec:
  images: [glob: '**']
  authorities: [static: {action: pass}]
  policy:
    includeSpec: true
    type: cue
    data: |
      spec: containers: [...{securityContext: capabilities: add: [..."CHOWN"]}]
`

const warnPolicy = `apiVersion: policy.sigstore.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: no-host-network
spec:
  mode: warn
  images: [glob: '**']
  authorities: [static: {action: pass}]
  policy:
    includeSpec: true
    type: rego
    data: |
      package sigstore
      default isCompliant = false
      isCompliant { not input.spec.hostNetwork; not input.spec.template.spec.hostNetwork }
`

const goodPod = `apiVersion: v1
kind: Pod
metadata: {name: good, namespace: shop}
spec:
  containers: [{name: app, image: nginx}]
`

const netAdminPod = `apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  containers:
  - name: app
    image: nginx
    securityContext: {capabilities: {add: [NET_ADMIN]}}
`

const hostNetworkDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      hostNetwork: true
      containers: [{name: app, image: nginx}]
`

type jsonReport struct {
	Results []map[string]any `json:"results"`
	Summary map[string]int   `json:"summary"`
}

func TestVigilTestExitCodesAndJSON(t *testing.T) {
	dir := t.TempDir()
	policies := writeFile(t, dir, "policies/caps.yaml", capsPolicy+"---\n"+warnPolicy)
	good := writeFile(t, dir, "good.yaml", goodPod)
	bad := writeFile(t, dir, "bad.json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad"},
		"spec":{"containers":[{"name":"app","image":"nginx","securityContext":{"capabilities":{"add":["NET_ADMIN"]}}}]}}`)
	warns := writeFile(t, dir, "warn.yaml", hostNetworkDeployment)

	tests := []struct {
		name      string
		resources []string
		extra     []string
		code      int
		summary   map[string]int
	}{
		{"admitted", []string{good}, nil, exitOK, map[string]int{"pass": 2}},
		{"warnings are admitted", []string{warns}, nil, exitOK, map[string]int{"pass": 1, "warn": 1}},
		{"denied", []string{good, bad}, nil, exitDenied, map[string]int{"pass": 3, "fail": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"test", "--policy", filepath.Join(dir, "policies"), "-o", "json"}
			for _, r := range tc.resources {
				args = append(args, "--resource", r)
			}
			out, code, err := runVigil(t, append(args, tc.extra...)...)
			if code != tc.code {
				t.Fatalf("exit code %d (%v), want %d\n%s", code, err, tc.code, out)
			}
			var rep jsonReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			for _, k := range []string{"pass", "fail", "warn", "error", "skip"} {
				if got, ok := rep.Summary[k]; !ok || got != tc.summary[k] {
					t.Errorf("summary[%s] = %d (present %v), want %d", k, got, ok, tc.summary[k])
				}
			}
			for _, r := range rep.Results {
				for _, k := range []string{"file", "kind", "namespace", "name", "policy", "result", "message"} {
					if _, ok := r[k]; !ok {
						t.Errorf("result %v has no %q", r, k)
					}
				}
			}
		})
	}

	t.Run("failure details", func(t *testing.T) {
		out, _, _ := runVigil(t, "test", "-p", policies, "-r", bad, "-o", "json")
		var rep jsonReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		var fail map[string]any
		for _, r := range rep.Results {
			if r["result"] == "fail" {
				fail = r
			}
		}
		if fail == nil || fail["file"] != bad || fail["kind"] != "Pod" || fail["name"] != "bad" || fail["policy"] != "no-net-admin" {
			t.Fatalf("results = %v", rep.Results)
		}
		if msg := fail["message"].(string); !strings.HasPrefix(msg, "failed policy: no-net-admin: spec.containers[0].image\nnginx failed evaluating cue policy") {
			t.Errorf("message = %q", msg)
		}
	})

	t.Run("no matching policies", func(t *testing.T) {
		only := writeFile(t, dir, "ghcr.yaml", strings.Replace(capsPolicy, "glob: '**'", "glob: 'ghcr.io/**'", 1))
		for mode, want := range map[string]int{"deny": exitDenied, "warn": exitOK, "allow": exitOK} {
			out, code, _ := runVigil(t, "test", "-p", only, "-r", good, "-o", "json", "--no-match-policy", mode)
			if code != want || !strings.Contains(out, `"policy": "no-matching-policies"`) {
				t.Errorf("--no-match-policy %s: exit %d, want %d\n%s", mode, code, want, out)
			}
		}
	})

	t.Run("table", func(t *testing.T) {
		out, code, _ := runVigil(t, "test", "-p", policies, "-r", netAdminFile(t, dir))
		if code != exitDenied {
			t.Fatalf("exit %d", code)
		}
		for _, want := range []string{"FILE", "POLICY", "RESULT", "no-net-admin", "fail",
			`container "app" (nginx) adds capability NET_ADMIN`, "1 pass, 1 fail, 0 warn, 0 error, 0 skip", "deny 1 of 1"} {
			if !strings.Contains(out, want) {
				t.Errorf("table does not contain %q:\n%s", want, out)
			}
		}
	})
}

func netAdminFile(t *testing.T, dir string) string {
	return writeFile(t, dir, "netadmin.yaml", netAdminPod)
}

func TestVigilTestBadInput(t *testing.T) {
	dir := t.TempDir()
	policy := writeFile(t, dir, "policy.yaml", capsPolicy)
	pod := writeFile(t, dir, "pod.yaml", goodPod)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"malformed YAML", []string{"-p", policy, "-r", writeFile(t, dir, "broken.yaml", goodPod+"---\nkind: Pod\nmetadata: [\n")},
			[]string{"broken.yaml: document 2:", "malformed YAML"}},
		{"unknown kind", []string{"-p", policy, "-r", writeFile(t, dir, "svc.yaml", goodPod+"---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n")},
			[]string{"svc.yaml: document 2:", "unsupported kind v1 Service"}},
		{"invalid policy", []string{"-p", writeFile(t, dir, "bad-policy.yaml", "---\n"+warnPolicy+"---\n"+strings.Replace(capsPolicy, "images:", "mode: garbage\n  images:", 1)), "-r", pod},
			[]string{"bad-policy.yaml: document 2:", `ClusterImagePolicy "no-net-admin" is invalid`, "invalid value: garbage: spec.mode\nunsupported mode"}},
		{"policy that does not compile", []string{"-p", writeFile(t, dir, "cue.yaml", strings.Replace(capsPolicy, `[..."CHOWN"]`, `[..."CHOWN"`, 1)), "-r", pod},
			[]string{"cue.yaml: document 1:", "spec.policy.data: failed to compile the cue policy", "line 1"}},
		{"unknown policy field", []string{"-p", writeFile(t, dir, "unknown.yaml", strings.Replace(capsPolicy, "images:", "imagez: []\n  images:", 1)), "-r", pod},
			[]string{"unknown.yaml: document 1:", `unknown field "spec.imagez"`}},
		{"not a policy", []string{"-p", pod, "-r", pod}, []string{"pod.yaml: document 1: expected a ClusterImagePolicy", "got v1 Pod"}},
		{"duplicate policy", []string{"-p", policy, "-p", policy, "-r", pod}, []string{`ClusterImagePolicy "no-net-admin" is also defined in`}},
		{"type error in a resource", []string{"-p", policy, "-r", writeFile(t, dir, "typed.yaml", "apiVersion: v1\nkind: Pod\nspec: {hostNetwork: maybe}\n")},
			[]string{"typed.yaml: document 1: v1 Pod:"}},
		// Not UTF-8: YAML alone would say "invalid leading UTF-8 octet", naming neither line nor key.
		{"invalid UTF-8 in a key", []string{"-p", policy, "-r", writeFile(t, dir, "key.yaml", goodPod+"---\n"+strings.Replace(goodPod, "name: good", "name: good, labels: {\"te\xf3m\": a}", 1))},
			[]string{"key.yaml: document 2: not valid UTF-8: byte 0xf3 at line 3, column 36 (offset 60)"}},
		{"invalid UTF-8 in a value", []string{"-p", policy, "-r", writeFile(t, dir, "value.json", "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"caf\xe9\"},\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"nginx\"}]}}")},
			[]string{"value.json: document 1: not valid UTF-8: byte 0xe9 at line 1, column 56 (offset 55), in the value of metadata.name"}},
		{"invalid UTF-8 in a policy", []string{"-p", writeFile(t, dir, "policy-latin1.yaml", strings.Replace(capsPolicy, "no-net-admin", "no-net-admin\n  annotations: {owner: \"J\xfcrgen\"}", 1)), "-r", pod},
			[]string{"policy-latin1.yaml: document 1: not valid UTF-8: byte 0xfc"}},
		{"missing file", []string{"-p", policy, "-r", filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml"}},
		{"no resources", []string{"-p", policy}, []string{"--policy and --resource are required"}},
		{"empty directory", []string{"-p", policy, "-r", t.TempDir()}, []string{"no .yaml, .yml or .json files"}},
		{"bad output", []string{"-p", policy, "-r", pod, "-o", "xml"}, []string{`invalid --output "xml"`}},
		{"bad no-match-policy", []string{"-p", policy, "-r", pod, "--no-match-policy", "maybe"}, []string{"invalid --no-match-policy"}},
		{"unknown flag", []string{"--polcy", policy}, []string{"unknown flag"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code, err := runVigil(t, append([]string{"test"}, tc.args...)...)
			if code != exitBadInput || err == nil {
				t.Fatalf("exit %d (%v), want %d", code, err, exitBadInput)
			}
			if out != "" {
				t.Errorf("stdout is not empty on bad input: %q", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestVigilTestWalkthrough runs the reference walkthrough's files.
func TestVigilTestWalkthrough(t *testing.T) {
	seed := filepath.Join("..", "..", "..", "shared", "seed")
	if _, err := os.Stat(seed); err != nil {
		t.Skipf("the third-party corpus in ../shared/seed is not present: %v", err)
	}
	_, code, _ := runVigil(t, "test", "-p", filepath.Join(seed, "cip.yaml"), "-r", filepath.Join(seed, "pod-net-admin.yaml"))
	if code != exitDenied {
		t.Errorf("pod-net-admin: exit %d, want %d", code, exitDenied)
	}
	_, code, _ = runVigil(t, "test", "-p", filepath.Join(seed, "cip.yaml"), "-r", filepath.Join(seed, "pod-fixed.yaml"))
	if code != exitOK {
		t.Errorf("pod-fixed: exit %d, want %d", code, exitOK)
	}
}
