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
	// Drift: a running pod is now out of the policy and was not before, or
	// got in without being judged; see IsDrift.
	Drift bool
}

// Violation says whether the policy now fails (enforce or warn mode).
func (t Transition) Violation() bool { return Bad(t.To) }

// Errored says whether the policy can no longer be evaluated for the pod.
func (t Transition) Errored() bool { return t.To == reportsv1alpha2.ResultError }

// Compliant says whether a policy that failed, or could not be evaluated,
// now passes.
func (t Transition) Compliant() bool {
	return t.To == reportsv1alpha2.ResultPass && (Bad(t.From) || t.From == reportsv1alpha2.ResultError)
}

// Bad says whether a result puts the pod out of its policy: fail (enforce
// mode) or warn (warn mode).
func Bad(r reportsv1alpha2.Result) bool {
	return r == reportsv1alpha2.ResultFail || r == reportsv1alpha2.ResultWarn
}

// IsDrift says whether a result turning from `from` to `to` is drift: a
// running pod is out of its policy (fail or warn) and was not before, or got
// in without being judged. firstJudgement is set when the pod has no report
// yet.
//
//   - pass, skip or error -> fail or warn: drift. The pod was in policy, not
//     covered, or in an unknown state (an error stands for no verdict, so
//     pass -> error -> fail still counts, once).
//   - no result -> fail or warn, the pod having a report: drift (the policy
//     is new or now matches the pod).
//   - first judgement of a pod -> fail: drift. Admission would deny the pod,
//     so it got in without being judged: the webhook was off or ignored, or
//     its namespace has just been brought into scope.
//   - first judgement -> warn: not drift. Admission lets such a pod in with a
//     warning; nothing was bypassed.
//   - fail <-> warn (the mode changed): not drift; the pod was already out.
//   - anything -> error: not drift (vigil_policy_results{result="error"}
//     and the PolicyError event say it).
func IsDrift(from, to reportsv1alpha2.Result, firstJudgement bool) bool {
	if !Bad(to) || Bad(from) {
		return false
	}
	return !firstJudgement || to == reportsv1alpha2.ResultFail
}

// MakePlan states decision d for pod against current, what Vigil holds of
// the pod's report, or nil when it has none. The reports are stored in api.
func MakePlan(api API, pod *corev1.Pod, d policy.Decision, current *Held, now time.Time) Plan {
	want := Desired(pod, d, now)
	compact := Compacted(api, want)
	previous := map[string]HeldResult{}
	if current != nil {
		for _, res := range current.Results {
			previous[res.Policy] = res
		}
	}
	p := Plan{Report: want}
	for i, res := range compact.Results {
		prev, had := previous[res.Policy]
		if had && prev.Result == res.Result && prev.Digest == res.Description {
			// Unchanged: it keeps the time it was first stated.
			compact.Results[i].Timestamp = prev.Timestamp
			want.Results[i].Timestamp = prev.Timestamp
		}
		if prev.Result == res.Result {
			continue
		}
		t := Transition{Policy: res.Policy, From: prev.Result, To: res.Result, Description: want.Results[i].Description}
		t.Drift = IsDrift(prev.Result, res.Result, current == nil)
		p.Transitions = append(p.Transitions, t)
	}
	p.Fingerprint = Fingerprint(compact)
	p.Changed = current == nil || current.Fingerprint != p.Fingerprint
	return p
}
