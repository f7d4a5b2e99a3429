package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/testenv"
)

// TestAdmission checks the enforce path with real kubectl against one
// `vigil dev`: workload kinds and their field paths, warn mode, namespace
// opt-in, no-match-policy from the ConfigMap without a restart, the
// ClusterImagePolicy webhook, scale-downs and ephemeral containers.
//
// The subtests run one after another. Each uses its own namespace and images
// under example.com/<subtest>/, which only its own policies match, and
// deletes its policies when it ends.
func TestAdmission(t *testing.T) {
	testenv.EndToEnd(t)
	d := startDev(t)
	t.Logf("vigil dev ready after %s", d.ReadyAfter.Round(100*time.Millisecond))

	t.Run("Deployment denied with the spec.template.spec path", func(t *testing.T) {
		const ns = "adm-deploy"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, "adm-deploy-caps")
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: adm-deploy-caps
spec:
  images: [glob: 'example.com/deploy/**']
  authorities: [static: {action: pass}]
  policy:
    includeSpec: true
    type: cue
    data: |
      #Allowed: "CHOWN" | "KILL"
      spec: template: spec: containers: [...{securityContext: capabilities: add: [...#Allowed]}]
`)
		deployment := func(name, capability string) string {
			return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
  namespace: %s
spec:
  replicas: 1
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      containers:
      - name: app
        image: example.com/deploy/app:1
        securityContext: {capabilities: {add: [%s]}}
`, name, ns, name, name, capability)
		}
		var r kubectlResult
		waitFor(t, waitTimeout, "the Deployment to be denied by adm-deploy-caps", func() (bool, string) {
			r = d.run(t, deployment("net-admin", "NET_ADMIN"), "apply", "-f", "-")
			return r.Code != 0 && strings.Contains(r.Stderr, "adm-deploy-caps"), r.String()
		})
		lines := strings.Split(strings.TrimSuffix(r.Stderr, "\n"), "\n")
		wantFirst := `Error from server (BadRequest): error when creating "STDIN": admission webhook "policy.sigstore.dev" denied the request: validation failed: failed policy: adm-deploy-caps: spec.template.spec.containers[0].image`
		wantSecond := "example.com/deploy/app:1 failed evaluating cue policy for ClusterImagePolicy: failed to evaluate the policy with error: spec.template.spec.containers.0.securityContext.capabilities.add.0: "
		if len(lines) != 2 || lines[0] != wantFirst || !strings.HasPrefix(lines[1], wantSecond) {
			t.Errorf("stderr:\n%s\nwant:\n%s\n%s...", r.Stderr, wantFirst, wantSecond)
		}
		if out, err := d.Kubectl("-n", ns, "get", "deployment", "net-admin"); err == nil {
			t.Errorf("the denied Deployment exists:\n%s", out)
		}
		// The same Deployment with an allowed capability is created, and its
		// ReplicaSet and pod too (the policy matches every kind).
		if out := d.apply(t, deployment("chown", "CHOWN")); strings.TrimSpace(out) != "deployment.apps/chown created" {
			t.Errorf("stdout %q", out)
		}
		d.MustKubectl(t, "-n", ns, "rollout", "status", "deployment/chown", "--timeout=60s")
	})

	t.Run("CronJob denied with the spec.jobTemplate path", func(t *testing.T) {
		const ns = "adm-cron"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, "adm-cron-deny")
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: adm-cron-deny
spec:
  images: [glob: 'example.com/cron/**']
  authorities: [static: {action: fail, message: "no cron images today"}]
`)
		cronJob := `apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  namespace: ` + ns + `
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: job
            image: example.com/cron/job:1
`
		var r kubectlResult
		waitFor(t, waitTimeout, "the CronJob to be denied by adm-cron-deny", func() (bool, string) {
			r = d.run(t, cronJob, "apply", "-f", "-")
			return r.Code != 0 && strings.Contains(r.Stderr, "adm-cron-deny"), r.String()
		})
		want := `Error from server (BadRequest): error when creating "STDIN": admission webhook "policy.sigstore.dev" denied the request: validation failed: failed policy: adm-cron-deny: spec.jobTemplate.spec.template.spec.containers[0].image` +
			"\nexample.com/cron/job:1 disallowed by static policy: no cron images today"
		if got := strings.TrimSuffix(r.Stderr, "\n"); got != want {
			t.Errorf("stderr:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("warn mode admits with a kubectl Warning", func(t *testing.T) {
		const ns = "adm-warn"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, "adm-warn")
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: adm-warn
spec:
  mode: warn
  images: [glob: 'example.com/warn/**']
  authorities: [static: {action: fail, message: "not vouched for"}]
`)
		var r kubectlResult
		waitFor(t, waitTimeout, "a pod to be admitted with adm-warn's warning", func() (bool, string) {
			r = d.run(t, "", "-n", ns, "run", "warned", "--image=example.com/warn/app:1", "--dry-run=server")
			return r.Code == 0 && strings.Contains(r.Stderr, "adm-warn"), r.String()
		})
		r = d.run(t, "", "-n", ns, "run", "warned", "--image=example.com/warn/app:1")
		r.mustSucceed(t)
		if got := strings.TrimSpace(r.Stdout); got != "pod/warned created" {
			t.Errorf("stdout %q, want pod/warned created", r.Stdout)
		}
		// kube-apiserver drops a warning with a newline, so the two lines of
		// policy-controller's message are two warnings, as with knative.
		want := "Warning: failed policy: adm-warn: spec.containers[0].image\n" +
			"Warning: example.com/warn/app:1 disallowed by static policy: not vouched for\n"
		if r.Stderr != want {
			t.Errorf("stderr:\n%s\nwant:\n%s", r.Stderr, want)
		}
		r = d.run(t, "", "-n", ns, "create", "deployment", "warned", "--image=example.com/warn/app:1")
		r.mustSucceed(t)
		if !strings.Contains(r.Stderr, "Warning: failed policy: adm-warn: spec.template.spec.containers[0].image\n") {
			t.Errorf("Deployment: stderr %q, want the warning with the spec.template.spec path", r.Stderr)
		}
	})

	t.Run("an unlabelled namespace is not judged", func(t *testing.T) {
		const ns = "adm-unlabelled"
		d.namespace(t, ns, false)
		// No policy matches this image and no-match-policy is deny: judged,
		// the pod would be refused.
		r := d.run(t, "", "-n", ns, "run", "free", "--image=example.com/nopolicy/app:1")
		r.mustSucceed(t)
		if strings.TrimSpace(r.Stdout) != "pod/free created" || r.Stderr != "" {
			t.Errorf("stdout %q, stderr %q; want the pod created silently", r.Stdout, r.Stderr)
		}
		d.namespace(t, "adm-labelled", true)
		r = d.run(t, "", "-n", "adm-labelled", "run", "free", "--image=example.com/nopolicy/app:1")
		if r.Code == 0 || !strings.Contains(r.Stderr, "no matching policies: spec.containers[0].image") {
			t.Errorf("the same pod in a labelled namespace: %s; want no matching policies", r)
		}
	})

	t.Run("kube-system is never judged, even labelled", func(t *testing.T) {
		// An unlabelled sentinel namespace, labelled right after kube-system:
		// once the API server's webhook judges the sentinel, it has seen
		// kube-system's label too (the watch delivers changes in order).
		d.namespace(t, "adm-sentinel", false)
		d.MustKubectl(t, "label", "namespace", "kube-system", "policy.sigstore.dev/include=true")
		t.Cleanup(func() {
			if _, err := d.Kubectl("label", "namespace", "kube-system", "policy.sigstore.dev/include-"); err != nil {
				t.Error(err)
			}
		})
		d.MustKubectl(t, "label", "namespace", "adm-sentinel", "policy.sigstore.dev/include=true")
		waitFor(t, waitTimeout, "the sentinel namespace to be judged", func() (bool, string) {
			r := d.run(t, "", "-n", "adm-sentinel", "run", "probe", "--image=example.com/nopolicy/app:1", "--dry-run=server")
			return r.Code != 0 && strings.Contains(r.Stderr, "no matching policies"), r.String()
		})
		r := d.run(t, "", "-n", "kube-system", "run", "adm-system", "--image=example.com/nopolicy/app:1")
		r.mustSucceed(t)
		if strings.TrimSpace(r.Stdout) != "pod/adm-system created" || r.Stderr != "" {
			t.Errorf("stdout %q, stderr %q; want the pod created silently", r.Stdout, r.Stderr)
		}
		d.MustKubectl(t, "-n", "kube-system", "delete", "pod", "adm-system", "--wait=false")
	})

	t.Run("no-match-policy follows the ConfigMap without a restart", func(t *testing.T) {
		const ns = "adm-nomatch"
		const image = "example.com/nomatch/app:1"
		d.namespace(t, ns, true)
		t.Cleanup(func() {
			if _, err := d.Kubectl("-n", "vigil-system", "delete", "configmap", "config-policy-controller", "--ignore-not-found"); err != nil {
				t.Error(err)
			}
		})
		denial := `Error from server (BadRequest): admission webhook "policy.sigstore.dev" denied the request: validation failed: no matching policies: spec.containers[0].image` +
			"\n" + image
		warning := "Warning: no matching policies: spec.containers[0].image\nWarning: " + image + "\n"
		probe := func() kubectlResult {
			return d.run(t, "", "-n", ns, "run", "probe", "--image="+image, "--dry-run=server")
		}
		configMap := func(value string) string {
			return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-policy-controller\n  namespace: vigil-system\ndata:\n  no-match-policy: %s\n", value)
		}

		r := d.run(t, "", "-n", ns, "run", "denied", "--image="+image)
		if r.Code == 0 || strings.TrimSuffix(r.Stderr, "\n") != denial {
			t.Fatalf("without the ConfigMap: %s\nwant the denial:\n%s", r, denial)
		}

		d.apply(t, configMap("warn"))
		waitFor(t, waitTimeout, "no-match-policy warn to take effect", func() (bool, string) {
			r := probe()
			return r.Code == 0 && r.Stderr == warning, r.String()
		})
		r = d.run(t, "", "-n", ns, "run", "warned", "--image="+image)
		r.mustSucceed(t)
		if strings.TrimSpace(r.Stdout) != "pod/warned created" || r.Stderr != warning {
			t.Errorf("warn: stdout %q, stderr %q; want the pod created with the warning %q", r.Stdout, r.Stderr, warning)
		}

		d.apply(t, configMap("allow"))
		waitFor(t, waitTimeout, "no-match-policy allow to take effect", func() (bool, string) {
			r := probe()
			return r.Code == 0 && r.Stderr == "", r.String()
		})
		r = d.run(t, "", "-n", ns, "run", "allowed", "--image="+image)
		r.mustSucceed(t)
		if strings.TrimSpace(r.Stdout) != "pod/allowed created" || r.Stderr != "" {
			t.Errorf("allow: stdout %q, stderr %q; want the pod created silently", r.Stdout, r.Stderr)
		}

		d.MustKubectl(t, "-n", "vigil-system", "delete", "configmap", "config-policy-controller")
		waitFor(t, waitTimeout, "deny to be back once the ConfigMap is gone", func() (bool, string) {
			r := probe()
			return r.Code != 0 && strings.TrimSuffix(r.Stderr, "\n") == denial, r.String()
		})
	})

	t.Run("the ClusterImagePolicy webhook refuses what cannot work", func(t *testing.T) {
		t.Cleanup(func() {
			_, _ = d.Kubectl("delete", "cip", "adm-bad-cue", "adm-bad-rego", "adm-bad-mode", "--ignore-not-found")
		})
		cip := func(name, extra string) string {
			return fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: %s
spec:
  images: [glob: 'example.com/invalid/**']
  authorities: [static: {action: pass}]
%s`, name, extra)
		}
		for _, tc := range []struct {
			name, extra string
			want        []string
		}{
			{"adm-bad-cue", "  policy:\n    type: cue\n    data: |\n      spec: {\n", []string{
				`admission webhook "validating.clusterimagepolicy.sigstore.dev" denied the request`,
				"spec.policy.data", "expected '}', found 'EOF'",
			}},
			{"adm-bad-rego", "  policy:\n    type: rego\n    data: |\n      package sigstore\n      isCompliant {\n", []string{
				`admission webhook "validating.clusterimagepolicy.sigstore.dev" denied the request`,
				"spec.policy.data", "rego_parse_error",
			}},
			{"adm-bad-mode", "  mode: garbage\n", []string{"spec.mode", "garbage"}},
		} {
			r := d.run(t, cip(tc.name, tc.extra), "apply", "-f", "-")
			if r.Code == 0 {
				t.Errorf("%s was admitted: %s", tc.name, r)
				continue
			}
			for _, want := range tc.want {
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("%s: stderr %q does not contain %q", tc.name, r.Stderr, want)
				}
			}
			if out, err := d.Kubectl("get", "cip", tc.name); err == nil {
				t.Errorf("%s exists although it was refused:\n%s", tc.name, out)
			}
		}
	})

	t.Run("scaling a Deployment down is never blocked", func(t *testing.T) {
		const ns = "adm-scale"
		const image = "example.com/scale/app:1"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, "adm-scale-allow", "adm-scale-deny")
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: adm-scale-allow
spec:
  images: [glob: 'example.com/scale/**']
  authorities: [static: {action: pass}]
`)
		waitFor(t, waitTimeout, "the Deployment to be admitted", func() (bool, string) {
			r := d.run(t, "", "-n", ns, "create", "deployment", "scaler", "--image="+image, "--replicas=3")
			return r.Code == 0, r.String()
		})
		d.MustKubectl(t, "-n", ns, "rollout", "status", "deployment/scaler", "--timeout=60s")

		// A new enforce policy that the template now fails.
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: adm-scale-deny
spec:
  images: [glob: 'example.com/scale/**']
  authorities: [static: {action: fail, message: "frozen"}]
`)
		scaleUp := `{"spec":{"replicas":5}}`
		waitFor(t, waitTimeout, "scaling up to be denied by adm-scale-deny", func() (bool, string) {
			r := d.run(t, "", "-n", ns, "patch", "deployment", "scaler", "-p", scaleUp, "--dry-run=server")
			return r.Code != 0 && strings.Contains(r.Stderr, "failed policy: adm-scale-deny: spec.template.spec.containers[0].image"), r.String()
		})

		// Through the scale subresource, then the object itself; the
		// Deployment controller then scales the ReplicaSet down (an UPDATE of
		// the ReplicaSet, judged too and let through).
		d.MustKubectl(t, "-n", ns, "scale", "deployment", "scaler", "--replicas=2")
		r := d.run(t, "", "-n", ns, "patch", "deployment", "scaler", "-p", `{"spec":{"replicas":1}}`)
		r.mustSucceed(t)
		if r.Stderr != "" {
			t.Errorf("scaling down warned: %q", r.Stderr)
		}
		waitFor(t, waitTimeout, "one pod left", func() (bool, string) {
			r := d.run(t, "", "-n", ns, "get", "pods", "-l", "app=scaler", "-o", "name")
			return r.Code == 0 && len(strings.Fields(r.Stdout)) == 1, r.String()
		})
		waitFor(t, waitTimeout, "the ReplicaSet at 1", func() (bool, string) {
			r := d.run(t, "", "-n", ns, "get", "replicasets", "-l", "app=scaler", "-o", "jsonpath={.items[*].spec.replicas}")
			return r.Code == 0 && r.Stdout == "1", r.String()
		})

		// Every other UPDATE is judged again.
		r = d.run(t, "", "-n", ns, "patch", "deployment", "scaler", "-p", scaleUp)
		if r.Code == 0 || !strings.Contains(r.Stderr, "failed policy: adm-scale-deny: spec.template.spec.containers[0].image") {
			t.Errorf("scaling up: %s; want a denial", r)
		}
		r = d.run(t, "", "-n", ns, "label", "deployment", "scaler", "touched=yes")
		if r.Code == 0 || !strings.Contains(r.Stderr, "failed policy: adm-scale-deny") {
			t.Errorf("a label change: %s; want a denial", r)
		}
	})

	t.Run("ephemeral containers are judged", func(t *testing.T) {
		const ns = "adm-ephemeral"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, "adm-eph-allow", "adm-eph-deny")
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: adm-eph-allow
spec:
  images: [glob: 'example.com/eph/ok/*']
  authorities: [static: {action: pass}]
---
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: adm-eph-deny
spec:
  images: [glob: 'example.com/eph/bad/*']
  authorities: [static: {action: fail, message: "no debugging with this image"}]
`)
		waitFor(t, waitTimeout, "the target pod to be admitted", func() (bool, string) {
			r := d.run(t, "", "-n", ns, "run", "target", "--image=example.com/eph/ok/app:1")
			return r.Code == 0, r.String()
		})
		wantDenial := `admission webhook "policy.sigstore.dev" denied the request: validation failed: failed policy: adm-eph-deny: spec.ephemeralContainers[0].image` +
			"\nexample.com/eph/bad/debug:1 disallowed by static policy: no debugging with this image"
		waitFor(t, waitTimeout, "the policies to be in force", func() (bool, string) {
			r := d.run(t, "", "-n", ns, "run", "probe", "--image=example.com/eph/bad/debug:1", "--dry-run=server")
			return r.Code != 0 && strings.Contains(r.Stderr, "adm-eph-deny"), r.String()
		})

		// The pods/ephemeralcontainers subresource, directly.
		r := d.run(t, "", "-n", ns, "patch", "pod", "target", "--subresource=ephemeralcontainers", "--type=strategic",
			"-p", `{"spec":{"ephemeralContainers":[{"name":"dbg","image":"example.com/eph/bad/debug:1","terminationMessagePolicy":"File"}]}}`)
		if r.Code == 0 || !strings.Contains(r.Stderr, wantDenial) {
			t.Errorf("patch --subresource=ephemeralcontainers: %s\nwant the denial:\n%s", r, wantDenial)
		}
		// kubectl debug uses the same subresource.
		r = d.run(t, "", "-n", ns, "debug", "target", "--image=example.com/eph/bad/debug:1", "-c", "dbg")
		if r.Code == 0 || !strings.Contains(r.Stderr, wantDenial) {
			t.Errorf("kubectl debug: %s\nwant the denial:\n%s", r, wantDenial)
		}
		r = d.run(t, "", "-n", ns, "get", "pod", "target", "-o", "jsonpath={.spec.ephemeralContainers[*].name}")
		if r.Code != 0 || r.Stdout != "" {
			t.Errorf("ephemeral containers after the denials: %s; want none", r)
		}
		// An allowed image is added.
		d.run(t, "", "-n", ns, "debug", "target", "--image=example.com/eph/ok/tools:1", "-c", "tools").mustSucceed(t)
		r = d.run(t, "", "-n", ns, "get", "pod", "target", "-o", "jsonpath={.spec.ephemeralContainers[*].name}")
		if r.Code != 0 || r.Stdout != "tools" {
			t.Errorf("ephemeral containers: %s; want tools", r)
		}
	})

	t.Run("denials are counted", func(t *testing.T) {
		waitMetric(t, d, "vigil_admission_requests_total", map[string]string{"decision": "denied"}, ">= 1", func(v float64, _ bool) bool { return v >= 1 })
		waitMetric(t, d, "vigil_admission_requests_total", map[string]string{"decision": "warned"}, ">= 1", func(v float64, _ bool) bool { return v >= 1 })
	})
}
