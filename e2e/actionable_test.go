package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// TestActionableOutput checks, against `vigil dev`, what a platform team acts
// on: a policy that cannot be evaluated for a running pod shows in the ERROR
// column, a PolicyError event and the Evaluated condition; a pod that got in
// while the webhook configuration was absent counts as drift, and the drift
// alert's expression holds for it until it is deleted; every result carries
// a rule, a category and a severity.
func TestActionableOutput(t *testing.T) {
	testenv.EndToEnd(t)
	d := startDev(t)
	const ns = "act"
	d.namespace(t, ns, true)
	d.deleteCIPsAtCleanup(t, "act-signed", "act-caps")

	t.Run("a policy that cannot be evaluated for a running pod says so", func(t *testing.T) {
		signed := func(authority string) string {
			return fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: act-signed
  annotations:
    vigil.dev/category: Supply Chain Security
spec:
  images: [glob: 'example.com/act-signed/**']
  authorities:
  - name: sigstore
    %s
`, authority)
		}
		d.apply(t, signed(`static: {action: pass}`))
		d.apply(t, fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: signed, namespace: %s}\nspec:\n  containers:\n  - {name: app, image: example.com/act-signed/app:1}\n", ns))
		uid := podUID(t, d, ns, "signed")
		waitReport(t, d, ns, uid, "the pod to pass act-signed", func(r *reportsv1alpha2.PolicyReport) bool {
			return resultOf(r, "act-signed") == reportsv1alpha2.ResultPass
		})

		// A keyless authority: Vigil cannot verify signatures yet, so the
		// running pod's result is error.
		d.apply(t, signed(`keyless: {url: "https://fulcio.example", identities: [{issuer: "https://issuer.example", subject: "ci@example.com"}]}`))
		rep := waitReport(t, d, ns, uid, "the pod's act-signed result to be error", func(r *reportsv1alpha2.PolicyReport) bool {
			return resultOf(r, "act-signed") == reportsv1alpha2.ResultError
		})
		res := findResult(rep, "act-signed")
		if res.Rule != "sigstore" || res.Category != "Supply Chain Security" || res.Severity != "high" {
			t.Errorf("error result rule %q category %q severity %q, want sigstore, the annotation's category, high (enforce)", res.Rule, res.Category, res.Severity)
		}
		waitCIPTable(t, d, map[string]string{"act-signed": "enforce True 0 0 0 1"})
		ev := waitEvent(t, d, ns, uid, "Warning", "PolicyError")
		if !strings.Contains(ev.Message, "act-signed") || !strings.Contains(ev.Message, "sigstore") {
			t.Errorf("PolicyError event %q does not name the policy and the authority", ev.Message)
		}
		waitFor(t, waitTimeout, "act-signed's Evaluated condition to be False", func() (bool, string) {
			out := d.MustKubectl(t, "get", "cip", "act-signed", "-o", "json")
			var cip v1beta1.ClusterImagePolicy
			if err := json.Unmarshal([]byte(out), &cip); err != nil {
				return false, err.Error()
			}
			ready := meta.FindStatusCondition(cip.Status.Conditions, v1beta1.ConditionReady)
			c := meta.FindStatusCondition(cip.Status.Conditions, v1beta1.ConditionEvaluated)
			return c != nil && c.Status == "False" && c.Reason == v1beta1.ReasonEvaluationErrors &&
				strings.Contains(c.Message, "1 running pod(s)") && ready != nil && ready.Status == "True", out
		})
		waitMetric(t, d, "vigil_policy_results", map[string]string{"policy": "act-signed", "result": "error"}, "= 1",
			func(v float64, _ bool) bool { return v == 1 })

		// Back to an authority that passes: compliant again.
		d.apply(t, signed(`static: {action: pass}`))
		waitEvent(t, d, ns, uid, "Normal", "PolicyCompliant")
		waitCIPTable(t, d, map[string]string{"act-signed": "enforce True 1 0 0 0"})
	})

	t.Run("a pod that got in while the webhook configuration was absent is drift, until it goes", func(t *testing.T) {
		d.apply(t, capsPolicy("act-caps", "example.com/act-caps/**"))
		expr := driftAlertExpr(t)
		d.MustKubectl(t, "delete", "validatingwebhookconfiguration", "vigil-validating-webhook-configuration")
		pod := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: slipped, namespace: %s}\nspec:\n  containers:\n  - name: app\n    image: example.com/act-caps/app:1\n    securityContext: {capabilities: {add: [NET_ADMIN]}}\n", ns)
		waitFor(t, waitTimeout, "the NET_ADMIN pod to be admitted without the webhook", func() (bool, string) {
			r := d.run(t, pod, "create", "-f", "-")
			return r.Code == 0, r.String()
		})
		uid := podUID(t, d, ns, "slipped")
		waitReport(t, d, ns, uid, "the pod to fail act-caps", func(r *reportsv1alpha2.PolicyReport) bool {
			return resultOf(r, "act-caps") == reportsv1alpha2.ResultFail
		})
		waitEvent(t, d, ns, uid, "Warning", "PolicyViolation")
		waitMetric(t, d, "vigil_drift_total", map[string]string{"policy": "act-caps"}, ">= 1",
			func(v float64, _ bool) bool { return v >= 1 })
		waitMetric(t, d, "vigil_drifted_pods", map[string]string{"policy": "act-caps"}, "= 1",
			func(v float64, _ bool) bool { return v == 1 })
		if fires := driftAlertFires(t, d, expr); !slices.Contains(fires, "act-caps") {
			t.Errorf("%s holds for %v, want act-caps among them", expr, fires)
		}

		d.MustKubectl(t, "-n", ns, "delete", "pod", "slipped", "--wait=false")
		waitMetric(t, d, "vigil_drifted_pods", map[string]string{"policy": "act-caps"}, "= 0",
			func(v float64, _ bool) bool { return v == 0 })
		if fires := driftAlertFires(t, d, expr); slices.Contains(fires, "act-caps") {
			t.Errorf("%s still holds for act-caps once its pod is gone", expr)
		}
	})

	t.Run("every result has a rule, a category and a severity", func(t *testing.T) {
		// More kinds of results: a pass of a CIP-level policy, and an image
		// no policy covers (let in: the webhook configuration is still
		// absent).
		for name, image := range map[string]string{"caps-ok": "example.com/act-caps/app:1", "uncovered": "example.com/act-nobody/app:1"} {
			d.apply(t, fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\nspec:\n  containers:\n  - {name: app, image: %q}\n", name, ns, image))
			uid := podUID(t, d, ns, name)
			waitReport(t, d, ns, uid, name+"'s report", func(*reportsv1alpha2.PolicyReport) bool { return true })
		}
		out := d.MustKubectl(t, "get", "polr", "-A", "-o", "json")
		var list reportsv1alpha2.PolicyReportList
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, rep := range list.Items {
			for _, res := range rep.Results {
				n++
				if res.Rule == "" || res.Category == "" || !slices.Contains([]string{"info", "low", "medium", "high", "critical"}, string(res.Severity)) {
					t.Errorf("%s/%s, policy %s: rule %q category %q severity %q", rep.Namespace, rep.Name, res.Policy, res.Rule, res.Category, res.Severity)
				}
			}
		}
		if n == 0 {
			t.Fatalf("no results in any report:\n%s", out)
		}
		t.Logf("%d results in %d reports:\n%s", n, len(list.Items), d.MustKubectl(t, "get", "polr", "-A", "-o",
			`jsonpath={range .items[*].results[*]}{.policy}{"\t"}{.rule}{"\t"}{.category}{"\t"}{.severity}{"\t"}{.result}{"\n"}{end}`))
	})
}

// capsPolicy is a policy in enforce mode over the images of glob whose
// containers may add the capabilities CHOWN and KILL only.
func capsPolicy(name, glob string) string {
	return fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: %s
spec:
  images: [glob: '%s']
  authorities: [static: {action: pass}]
  policy:
    includeSpec: true
    type: cue
    data: |
      spec: containers: [...{securityContext: capabilities: add: [...("CHOWN" | "KILL")]}]
`, name, glob)
}

// The drift alert's expression, as the rules ship it. This test evaluates it
// on scraped samples itself (max by policy over the gauge, above 0); should
// the rule change, it says so instead of testing something else.
const wantDriftExpr = "max by (policy) (vigil_drifted_pods) > 0"

func driftAlertExpr(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "config", "prometheus", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "VigilDrift" {
				if got := strings.Join(strings.Fields(r.Expr), " "); got != wantDriftExpr {
					t.Fatalf("VigilDrift's expression is %q; this test evaluates %q: update it", got, wantDriftExpr)
				}
				return wantDriftExpr
			}
		}
	}
	t.Fatal("rules.yaml has no VigilDrift alert")
	return ""
}

// driftAlertFires evaluates wantDriftExpr on one scrape: the policies it
// holds for.
func driftAlertFires(t *testing.T, d *devEnv, expr string) []string {
	t.Helper()
	samples, err := scrape(t, d.MetricsAddr)
	if err != nil {
		t.Fatalf("scrape for %s: %v", expr, err)
	}
	maxByPolicy := map[string]float64{}
	for _, s := range samples {
		if s.name == "vigil_drifted_pods" {
			if v, ok := maxByPolicy[s.labels["policy"]]; !ok || s.value > v {
				maxByPolicy[s.labels["policy"]] = s.value
			}
		}
	}
	var fires []string
	for p, v := range maxByPolicy {
		if v > 0 {
			fires = append(fires, p)
		}
	}
	return fires
}

// TestDevKilledTakesItsChildren kills `vigil dev` with SIGKILL, which it
// cannot catch: etcd, kube-apiserver and the other children must still go,
// by their parent-death signal, within seconds.
func TestDevKilledTakesItsChildren(t *testing.T) {
	testenv.EndToEnd(t)
	d := startDev(t)
	children := descendants(t, d.Pid())
	var names []string
	for _, p := range children {
		names = append(names, filepath.Base(strings.Fields(p.cmdline + " ?")[0]))
	}
	for _, want := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if !slices.Contains(names, want) {
			t.Fatalf("no %s among vigil dev's children %v", want, names)
		}
	}
	if err := syscall.Kill(d.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	waitFor(t, 10*time.Second, "vigil dev's children to go after it was killed", func() (bool, string) {
		left := survivors(t, children, d.TmpDir)
		var s []string
		for _, p := range left {
			s = append(s, p.cmdline)
		}
		return len(left) == 0, strings.Join(s, "\n")
	})
	t.Logf("%d children (%s) gone %s after vigil dev was killed", len(children), strings.Join(names, ", "), time.Since(began).Round(10*time.Millisecond))
}
