package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vigil-dev/vigil/internal/admission"
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

		// A CI gate (issue 14): nothing may pass because the input was not what it seemed.
		{"empty policy file", []string{"-p", writeFile(t, dir, "empty.yaml", ""), "-r", pod, "--no-match-policy", "allow"},
			[]string{"empty.yaml: no document: the file is empty or holds only comments"}},
		{"policy file of comments and blank lines", []string{"-p", writeFile(t, dir, "comments.yaml", "# policies to come\n\n---\n   \n"), "-r", pod, "--no-match-policy", "allow"},
			[]string{"comments.yaml: no document"}},
		{"empty policy file in a directory", []string{"-p", filepath.Dir(writeFile(t, dir, "policies/z-empty.yaml", "")), "-r", pod},
			[]string{"z-empty.yaml: no document"}},
		{"empty resource file", []string{"-p", policy, "-r", pod, "-r", writeFile(t, dir, "empty-resources.yaml", "\n")},
			[]string{"empty-resources.yaml: no document"}},
		{"Pod of apiVersion v2", []string{"-p", policy, "-r", writeFile(t, dir, "v2.yaml", strings.Replace(netAdminPod, "apiVersion: v1", "apiVersion: v2", 1))},
			[]string{"v2.yaml: document 1: Pod has apiVersion v2", "a Pod is v1"}},
		{"Pod of apiVersion apps/v1", []string{"-p", policy, "-r", writeFile(t, dir, "apps-pod.yaml", strings.Replace(goodPod, "apiVersion: v1", "apiVersion: apps/v1", 1))},
			[]string{"apps-pod.yaml: document 1: Pod has apiVersion apps/v1", "a Pod is v1"}},
		{"Deployment of apps/v1beta1", []string{"-p", policy, "-r", writeFile(t, dir, "beta.yaml", strings.Replace(hostNetworkDeployment, "apps/v1", "apps/v1beta1", 1))},
			[]string{"beta.yaml: document 1: Deployment has apiVersion apps/v1beta1", "a Deployment is apps/v1"}},
		{"CronJob of batch/v1beta1", []string{"-p", policy, "-r", writeFile(t, dir, "cron.yaml", "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {name: c}\n")},
			[]string{"cron.yaml: document 1: CronJob has apiVersion batch/v1beta1", "a CronJob is batch/v1"}},
		{"Pod without apiVersion", []string{"-p", policy, "-r", writeFile(t, dir, "noversion.yaml", "kind: Pod\nmetadata: {name: p}\n")},
			[]string{"noversion.yaml: document 1: Pod has no apiVersion: a Pod is v1"}},
		{"no kind", []string{"-p", policy, "-r", writeFile(t, dir, "nokind.yaml", "apiVersion: v1\nmetadata: {name: p}\n")},
			[]string{"nokind.yaml: document 1: a document of apiVersion v1 without a kind: a resource needs a kind, one of Pod, Deployment"}},
		{"symlink to /dev/zero", []string{"-p", policy, "-r", symlink(t, "/dev/zero", filepath.Join(dir, "zero.yaml"))},
			[]string{"zero.yaml is a device (through a symlink): vigil test reads only regular files"}},
		{"symlink to /dev/zero in a directory", []string{"-p", policy, "-r", filepath.Dir(symlink(t, "/dev/zero", filepath.Join(dir, "tree", "zero.yaml")))},
			[]string{"zero.yaml is a device (through a symlink)"}},
		{"a device", []string{"-p", "/dev/null", "-r", pod}, []string{"/dev/null is a device"}},
		{"a FIFO", []string{"-p", policy, "-r", fifo(t, filepath.Join(dir, "fifo.yaml"))},
			[]string{"fifo.yaml is a named pipe (FIFO): vigil test reads only regular files"}},
		{"a file past 16 MiB", []string{"-p", sparse(t, filepath.Join(dir, "huge.yaml"), maxInputFile+1), "-r", pod},
			[]string{"huge.yaml: 16777217 bytes, more than 16 MiB, the most vigil test reads from one file"}},
		{"too many containers", []string{"-p", policy, "-r", writeFile(t, dir, "many.json", manyContainers(admission.MaxContainers+1))},
			[]string{"many.json: document 1: v1 Pod: spec: 5001 containers", "exceed Vigil's bound of 5000 containers per object"}},
		{"type error in a policy", []string{"-p", writeFile(t, dir, "mode.yaml", strings.Replace(capsPolicy, "images:", "mode: 5\n  images:", 1)), "-r", pod},
			[]string{"mode.yaml: document 1: ClusterImagePolicy: spec.mode: expected a string, got a number"}},
		{"type error in a container", []string{"-p", policy, "-r", writeFile(t, dir, "port.yaml", "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, ports: [{containerPort: http}]}]}\n")},
			[]string{"port.yaml: document 1: v1 Pod: spec.containers.ports.containerPort: expected an integer, got a string"}},
		{"a list, not an object", []string{"-p", policy, "-r", writeFile(t, dir, "list.yaml", "- a\n- b\n")},
			[]string{"list.yaml: document 1: not a Kubernetes object: the document: expected an object, got a list"}},
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
			// Messages speak of YAML fields and values, not of Go types.
			for _, goWord := range []string{"Go struct", "Go value", "of type", "map[", "int32", "v1.", "unsupported kind v1 :"} {
				if strings.Contains(err.Error(), goWord) {
					t.Errorf("error %q contains %q", err, goWord)
				}
			}
		})
	}
}

func symlink(t *testing.T, target, link string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}

func fifo(t *testing.T, path string) string {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	return path
}

// sparse makes a file of size bytes that takes no room on disk.
func sparse(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

func manyContainers(n int) string {
	var b strings.Builder
	b.WriteString(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"many"},"spec":{"containers":[`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"name":"c%d","image":"nginx"}`, i)
	}
	b.WriteString("]}}")
	return b.String()
}

// TestVigilTestFileChecks: the bounds of readInput, at the edge.
func TestVigilTestFileChecks(t *testing.T) {
	dir := t.TempDir()
	policy := writeFile(t, dir, "policy.yaml", capsPolicy)
	// A regular file through a symlink is read.
	link := symlink(t, writeFile(t, dir, "real/pod.yaml", goodPod), filepath.Join(dir, "link.yaml"))
	if _, code, err := runVigil(t, "test", "-p", policy, "-r", link); code != exitOK {
		t.Errorf("a symlink to a regular file: exit %d (%v), want 0", code, err)
	}
	// A file of exactly 16 MiB is read: padded with a YAML comment.
	exact := goodPod + "#" + strings.Repeat("x", maxInputFile-len(goodPod)-2) + "\n"
	if _, code, err := runVigil(t, "test", "-p", policy, "-r", writeFile(t, dir, "exact.yaml", exact)); code != exitOK {
		t.Errorf("a file of %d bytes: exit %d (%v), want 0", len(exact), code, err)
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
