package metrics

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The label set of the per-pod metrics is chosen once per process, so each
// case runs in a process of its own.
func TestPerPodLabels(t *testing.T) {
	for _, name := range []string{"default", "namespace"} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestLabelsChild$", "-test.v")
			cmd.Env = append(os.Environ(), "VIGIL_METRICS_CHILD="+name)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestLabelsChild") {
				t.Errorf("%s labels: %v\n%s", name, err, out)
			}
		})
	}
}

func TestLabelsChild(t *testing.T) {
	switch os.Getenv("VIGIL_METRICS_CHILD") {
	case "":
		t.Skip("run by TestPerPodLabels in a process of its own")
	case "default":
		SetPolicyResults("caps", "fail", "team-a", 2)
		AddDrift("caps", "team-a")
		SetDriftedPods("caps", "team-a", 1)
		if err := UseNamespaceLabel(); err == nil {
			t.Error("UseNamespaceLabel after a result was recorded: no error")
		}
		compare(t, `
# HELP vigil_policy_results Running pods per policy and result (pass, fail, warn, error, skip), as their PolicyReports say now.
# TYPE vigil_policy_results gauge
vigil_policy_results{policy="caps",result="fail"} 2
# HELP vigil_drift_total Drift: results of running pods that turned fail or warn from pass, skip, error or no result (a new policy), and first judgements of fail (the pod got in unjudged).
# TYPE vigil_drift_total counter
vigil_drift_total{policy="caps"} 1
# HELP vigil_drifted_pods Running pods that drifted out of the policy and are still out of it (fail or warn), now.
# TYPE vigil_drifted_pods gauge
vigil_drifted_pods{policy="caps"} 1
`)
	case "namespace":
		if err := UseNamespaceLabel(); err != nil {
			t.Fatal(err)
		}
		SetPolicyResults("caps", "fail", "team-a", 1)
		SetPolicyResults("caps", "fail", "team-b", 3)
		SetPolicyResults("other", "pass", "team-b", 1)
		AddDrift("caps", "team-b")
		SetDriftedPods("caps", "team-b", 1)
		compare(t, `
# HELP vigil_policy_results Running pods per policy and result (pass, fail, warn, error, skip), as their PolicyReports say now.
# TYPE vigil_policy_results gauge
vigil_policy_results{namespace="team-a",policy="caps",result="fail"} 1
vigil_policy_results{namespace="team-b",policy="caps",result="fail"} 3
vigil_policy_results{namespace="team-b",policy="other",result="pass"} 1
# HELP vigil_drift_total Drift: results of running pods that turned fail or warn from pass, skip, error or no result (a new policy), and first judgements of fail (the pod got in unjudged).
# TYPE vigil_drift_total counter
vigil_drift_total{namespace="team-b",policy="caps"} 1
# HELP vigil_drifted_pods Running pods that drifted out of the policy and are still out of it (fail or warn), now.
# TYPE vigil_drifted_pods gauge
vigil_drifted_pods{namespace="team-b",policy="caps"} 1
`)
		ForgetPolicy("caps")
		if n := testutil.CollectAndCount(PolicyResults); n != 1 {
			t.Errorf("%d vigil_policy_results series after forgetting caps, want 1 (other's)", n)
		}
		if n := testutil.CollectAndCount(DriftedPods); n != 0 {
			t.Errorf("%d vigil_drifted_pods series after forgetting caps, want 0", n)
		}
	}
}

func compare(t *testing.T, want string) {
	t.Helper()
	if err := testutil.GatherAndCompare(crmetrics.Registry, strings.NewReader(want), "vigil_policy_results", "vigil_drift_total", "vigil_drifted_pods"); err != nil {
		t.Error(err)
	}
}
