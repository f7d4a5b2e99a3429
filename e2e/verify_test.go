package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// TestVerify checks the verify path with real kubectl against one
// `vigil dev`: reports of warn-mode results, pods judged again when a
// stricter policy appears, one report per replica and none after the
// Deployment, and the metrics that say so.
//
// The subtests run one after another, each in its own namespace with images
// under example.com/<subtest>/ that only its own policies match.
//
// It runs Vigil's webhook under another name, as beside policy-controller.
func TestVerify(t *testing.T) {
	testenv.EndToEnd(t)
	d := startDev(t, "--webhook-name", "vigil.policy.sigstore.dev")
	t.Logf("vigil dev ready after %s", d.ReadyAfter.Round(100*time.Millisecond))

	t.Run("a pod admitted under a warn-mode policy gets a warn result", func(t *testing.T) {
		const ns = "ver-warn"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, "ver-warn")
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: ver-warn
spec:
  mode: warn
  images: [glob: 'example.com/vwarn/*']
  authorities: [static: {action: fail, message: "unsigned"}]
`)
		var r kubectlResult
		waitFor(t, waitTimeout, "the pod to be admitted with a warning", func() (bool, string) {
			r = d.run(t, "", "-n", ns, "run", "warned", "--image=example.com/vwarn/app:1")
			return r.Code == 0, r.String()
		})
		if !strings.Contains(r.Stderr, "Warning: failed policy: ver-warn: spec.containers[0].image") {
			t.Errorf("stderr %q, want the warning", r.Stderr)
		}
		uid := podUID(t, d, ns, "warned")
		rep := waitReport(t, d, ns, uid, "a warn result", func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, "ver-warn") == reportsv1alpha2.ResultWarn
		})
		checkReportShape(t, rep, "warned", uid)
		if rep.Summary != (reportsv1alpha2.PolicyReportSummary{Warn: 1}) {
			t.Errorf("summary %+v, want 1 warn", rep.Summary)
		}
		res := findResult(rep, "ver-warn")
		if res.Properties["mode"] != "warn" || !strings.Contains(res.Description, "example.com/vwarn/app:1") || !strings.Contains(res.Description, "unsigned") {
			t.Errorf("result %+v: want mode warn and a message naming the image and the reason", res)
		}
		waitPolicyReportTable(t, d, ns, map[string]string{uid: "Pod warned 0 0 1 0 0"})
		waitCIPTable(t, d, map[string]string{"ver-warn": "warn True 0 0 1"})
		ev := waitEvent(t, d, ns, uid, "Warning", "PolicyViolation")
		if !strings.Contains(ev.Message, "ver-warn") {
			t.Errorf("event %q does not name ver-warn", ev.Message)
		}
		waitMetric(t, d, "vigil_policy_results", map[string]string{"policy": "ver-warn", "result": "warn"}, "= 1",
			func(v float64, _ bool) bool { return v == 1 })
	})

	t.Run("pods that exist before a policy are judged when it appears", func(t *testing.T) {
		const ns = "ver-existing"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, "ver-permissive", "ver-strict")
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: ver-permissive
spec:
  images: [glob: 'example.com/vexisting/**']
  authorities: [static: {action: pass}]
`)
		pod := func(name, add string) string {
			return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
spec:
  containers:
  - name: app
    image: example.com/vexisting/app:1
    securityContext:
      capabilities:
        add: [%s]
        drop: [ALL]
`, name, ns, add)
		}
		pods := []string{"bad-1", "bad-2", "good"}
		uids := map[string]string{}
		for _, name := range pods {
			add := "NET_ADMIN"
			if name == "good" {
				add = "CHOWN"
			}
			waitFor(t, waitTimeout, "pod "+name+" to be admitted", func() (bool, string) {
				r := d.run(t, pod(name, add), "apply", "-f", "-")
				return r.Code == 0, r.String()
			})
			uids[name] = podUID(t, d, ns, name)
		}
		for _, name := range pods {
			waitReport(t, d, ns, uids[name], name+"'s report to pass", func(rep *reportsv1alpha2.PolicyReport) bool {
				return resultOf(rep, "ver-permissive") == reportsv1alpha2.ResultPass
			})
		}
		waitCIPTable(t, d, map[string]string{"ver-permissive": "enforce True 3 0 0"})

		// The walkthrough's policy, scoped to this subtest's images.
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: ver-strict
spec:
  match:
  - version: "v1"
    resource: "pods"
  images: [glob: 'example.com/vexisting/**']
  authorities: [static: {action: pass}]
  mode: enforce
  policy:
    includeSpec: true
    type: "cue"
    data: |
      #Allowed: "AUDIT_WRITE" | "CHOWN" | "DAC_OVERRIDE" | "FOWNER" | "FSETID" | "KILL" | "MKNOD" |
                "NET_BIND_SERVICE" | "SETFCAP" | "SETGID" | "SETPCAP" | "SETUID" | "SYS_CHROOT"
      spec: containers: [...{securityContext: capabilities: add: [...#Allowed]}]
`)
		for _, name := range pods {
			want := reportsv1alpha2.ResultFail
			if name == "good" {
				want = reportsv1alpha2.ResultPass
			}
			rep := waitReport(t, d, ns, uids[name], fmt.Sprintf("%s's ver-strict result to be %s", name, want), func(rep *reportsv1alpha2.PolicyReport) bool {
				return resultOf(rep, "ver-strict") == want
			})
			checkReportShape(t, rep, name, uids[name])
			if want == reportsv1alpha2.ResultFail {
				if msg := findResult(rep, "ver-strict").Description; !strings.Contains(msg, "NET_ADMIN") || !strings.Contains(msg, `"app"`) {
					t.Errorf("%s: message %q does not name the container and NET_ADMIN", name, msg)
				}
				waitEvent(t, d, ns, uids[name], "Warning", "PolicyViolation")
			}
		}
		waitPolicyReportTable(t, d, ns, map[string]string{
			uids["bad-1"]: "Pod bad-1 1 1 0 0 0",
			uids["bad-2"]: "Pod bad-2 1 1 0 0 0",
			uids["good"]:  "Pod good 2 0 0 0 0",
		})
		waitCIPTable(t, d, map[string]string{"ver-permissive": "enforce True 3 0 0", "ver-strict": "enforce True 1 2 0"})

		// Metrics: the gauge counts the failing pods now; drift counts the
		// pods that had a report and turned fail.
		waitMetric(t, d, "vigil_policy_results", map[string]string{"policy": "ver-strict", "result": "fail"}, "= 2",
			func(v float64, _ bool) bool { return v == 2 })
		waitMetric(t, d, "vigil_policy_results", map[string]string{"policy": "ver-strict", "result": "pass"}, "= 1",
			func(v float64, _ bool) bool { return v == 1 })
		drift := waitMetric(t, d, "vigil_drift_total", map[string]string{"policy": "ver-strict"}, ">= 1",
			func(v float64, _ bool) bool { return v >= 1 })
		if drift != 2 {
			t.Errorf("vigil_drift_total{policy=\"ver-strict\"} = %v, want 2 (two pods drifted)", drift)
		}

		// Admission agrees with the reports: a new NET_ADMIN pod is denied.
		r := d.run(t, pod("bad-3", "NET_ADMIN"), "apply", "-f", "-")
		if r.Code == 0 || !strings.Contains(r.Stderr, `admission webhook "vigil.policy.sigstore.dev" denied the request: validation failed: failed policy: ver-strict: spec.containers[0].image`) {
			t.Errorf("a new NET_ADMIN pod: %s; want a denial by ver-strict from the webhook named by --webhook-name", r)
		}
		waitMetric(t, d, "vigil_admission_requests_total", map[string]string{"decision": "denied"}, ">= 1",
			func(v float64, _ bool) bool { return v >= 1 })

		// One failing pod goes: the gauge follows, and its report goes too.
		d.MustKubectl(t, "-n", ns, "delete", "pod", "bad-1")
		waitMetric(t, d, "vigil_policy_results", map[string]string{"policy": "ver-strict", "result": "fail"}, "= 1",
			func(v float64, _ bool) bool { return v == 1 })
		waitPolicyReportTable(t, d, ns, map[string]string{
			uids["bad-2"]: "Pod bad-2 1 1 0 0 0",
			uids["good"]:  "Pod good 2 0 0 0 0",
		})
		waitCIPTable(t, d, map[string]string{"ver-strict": "enforce True 1 1 0"})
	})

	t.Run("a Deployment of 5 gets 5 reports, and none once it is deleted", func(t *testing.T) {
		const ns = "ver-deploy"
		d.namespace(t, ns, true)
		d.deleteCIPsAtCleanup(t, "ver-deploy")
		d.apply(t, `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: ver-deploy
spec:
  images: [glob: 'example.com/vdeploy/**']
  authorities: [static: {action: pass}]
`)
		waitFor(t, waitTimeout, "the Deployment to be admitted", func() (bool, string) {
			r := d.run(t, "", "-n", ns, "create", "deployment", "web", "--image=example.com/vdeploy/web:1", "--replicas=5")
			return r.Code == 0, r.String()
		})
		d.MustKubectl(t, "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
		waitFor(t, waitTimeout, "5 reports, one per pod", func() (bool, string) {
			pods := d.run(t, "", "-n", ns, "get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.metadata.uid}{"\n"}{end}`)
			reports := d.run(t, "", "-n", ns, "get", "policyreports", "-l", "app.kubernetes.io/managed-by=vigil",
				"-o", `jsonpath={range .items[*]}{.metadata.name} {.summary.pass}{"\n"}{end}`)
			podUIDs := strings.Fields(pods.Stdout)
			var names []string
			for line := range strings.Lines(reports.Stdout) {
				f := strings.Fields(line)
				if len(f) != 2 || f[1] != "1" {
					return false, reports.String()
				}
				names = append(names, f[0])
			}
			slices.Sort(podUIDs)
			slices.Sort(names)
			return len(podUIDs) == 5 && slices.Equal(podUIDs, names), pods.String() + "\n" + reports.String()
		})
		waitCIPTable(t, d, map[string]string{"ver-deploy": "enforce True 5 0 0"})

		d.MustKubectl(t, "-n", ns, "delete", "deployment", "web")
		waitFor(t, waitTimeout, "the pods and their reports to be gone", func() (bool, string) {
			r := d.run(t, "", "-n", ns, "get", "pods,policyreports", "-o", "name")
			return r.Code == 0 && strings.TrimSpace(r.Stdout) == "", r.String()
		})
		waitCIPTable(t, d, map[string]string{"ver-deploy": "enforce True 0 0 0"})
		waitMetric(t, d, "vigil_policy_results", map[string]string{"policy": "ver-deploy", "result": "pass"}, "= 0",
			func(v float64, _ bool) bool { return v == 0 })
	})
}
