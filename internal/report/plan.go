package report

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/policy"
)

// Plan is what a decision means for a pod's report.
type Plan struct {
	// Report is the report to store, in full: results unchanged since the
	// current report keep their timestamps.
	Report *reportsv1alpha2.PolicyReport
	// Fingerprint is Report's, as Vigil's cache will hold it.
	Fingerprint string
	// Changed says whether Report differs from the current report, so that
	// it must be written.
	Changed bool
	// Transitions are the results whose word changed, in policy order.
	Transitions []Transition
}

// Transition is one policy's result turning from one word to another.
type Transition struct {
	Policy string
	// From is "" when the current report had no result for the policy.
	From, To    reportsv1alpha2.Result
	Description string
	// Drift: a pod that already had a report turns fail or warn, from pass
	// or from no result (the policy is new or changed what it matches).
	Drift bool
}

// Violation says whether the policy now fails (enforce or warn mode).
func (t Transition) Violation() bool { return bad(t.To) }

// Compliant says whether a failing policy now passes.
func (t Transition) Compliant() bool {
	return t.To == reportsv1alpha2.ResultPass && bad(t.From)
}

func bad(r reportsv1alpha2.Result) bool {
	return r == reportsv1alpha2.ResultFail || r == reportsv1alpha2.ResultWarn
}

// MakePlan states decision d for pod against current, the pod's report as
// Vigil's cache holds it (compacted), or nil when it has none. The reports
// are stored in api.
func MakePlan(api API, pod *corev1.Pod, d policy.Decision, current *reportsv1alpha2.PolicyReport, now time.Time) Plan {
	want := Desired(pod, d, now)
	compact := Compacted(api, want)
	previous := map[string]reportsv1alpha2.PolicyReportResult{}
	if current != nil {
		for _, res := range current.Results {
			previous[res.Policy] = res
		}
	}
	p := Plan{Report: want}
	for i, res := range compact.Results {
		prev, had := previous[res.Policy]
		if had && prev.Result == res.Result && prev.Description == res.Description {
			// Unchanged: it keeps the time it was first stated.
			compact.Results[i].Timestamp = prev.Timestamp
			want.Results[i].Timestamp = prev.Timestamp
		}
		if prev.Result == res.Result {
			continue
		}
		t := Transition{Policy: res.Policy, From: prev.Result, To: res.Result, Description: want.Results[i].Description}
		t.Drift = current != nil && t.Violation() && (!had || prev.Result == reportsv1alpha2.ResultPass)
		p.Transitions = append(p.Transitions, t)
	}
	p.Fingerprint = Fingerprint(compact)
	p.Changed = current == nil || Fingerprint(current) != p.Fingerprint
	return p
}
