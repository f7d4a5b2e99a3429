package report

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/policy"
)

// Labels of everything Vigil writes, and the source of every result.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "vigil"
	Source         = "vigil"
)

// Result properties.
const (
	PropertyMode       = "mode"
	PropertyGeneration = "policyGeneration"
	PropertyDetails    = "details"
)

// Name is the name of pod's report: the pod's UID, as Kyverno names its
// per-resource reports, so a pod re-created under the same name never meets
// its predecessor's report.
func Name(pod *corev1.Pod) string { return string(pod.UID) }

// Desired is the report that states decision d for pod, with every result
// stamped now (Plan carries the timestamps of unchanged results over).
func Desired(pod *corev1.Pod, d policy.Decision, now time.Time) *reportsv1alpha2.PolicyReport {
	ref := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	r := &reportsv1alpha2.PolicyReport{
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(pod),
			Namespace: pod.Namespace,
			Labels:    map[string]string{ManagedByLabel: ManagedByValue},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
			}},
		},
		Scope: &ref,
	}
	ts := metav1.Timestamp{Seconds: now.Unix(), Nanos: int32(now.Nanosecond())} // #nosec G115 -- Nanosecond() is below 1e9, within int32
	for _, res := range d.Results {
		out := reportsv1alpha2.PolicyReportResult{
			Source:      Source,
			Policy:      res.Policy,
			Rule:        rule(res),
			Category:    category(res),
			Severity:    severity(res),
			Result:      reportsv1alpha2.Result(res.Result),
			Scored:      true,
			Subjects:    []corev1.ObjectReference{ref},
			Description: message(res),
			Properties:  properties(res),
			Timestamp:   ts,
		}
		r.Results = append(r.Results, out)
		count(&r.Summary, out.Result)
	}
	return r
}

// message is what a person reads first: the explanation when there is one,
// else policy-controller's message.
func message(r policy.Result) string {
	switch {
	case r.Result == policy.ResultPass:
		return "the pod satisfies " + r.Policy
	case r.Explanation != "":
		return r.Explanation
	default:
		return r.Message
	}
}

// DefaultCategory files the results of a policy whose author gave none
// (policy.AnnotationCategory): every ClusterImagePolicy judges the images a
// pod runs, whatever else it checks.
const DefaultCategory = "Image Policy"

// Severities Vigil gives by default (Policy Reporter's levels are info, low,
// medium, high, critical).
const (
	severityHigh   reportsv1alpha2.Severity = "high"
	severityMedium reportsv1alpha2.Severity = "medium"
	severityInfo   reportsv1alpha2.Severity = "info"
)

// rule is the result's rule, or the policy's name when nothing finer is
// known (a policy with neither authorities nor body, one that is not ready,
// no-matching-policies): stable either way, never empty.
func rule(r policy.Result) string {
	if r.Rule != "" {
		return r.Rule
	}
	return r.Policy
}

func category(r policy.Result) string {
	if r.Category != "" {
		return r.Category
	}
	return DefaultCategory
}

// severity is the author's (policy.AnnotationSeverity), else what the mode
// says of a failure: high when admission denies it (enforce mode; or
// no-matching-policies in deny mode), medium when admission lets it in with a
// warning, info when it is not judged at all (no-matching-policies in allow
// mode). critical and low are left to authors. Severity belongs to the rule,
// not the outcome, so a pass carries it too, as Kyverno's results do.
func severity(r policy.Result) reportsv1alpha2.Severity {
	switch {
	case r.Severity != "":
		return reportsv1alpha2.Severity(r.Severity)
	case r.Mode == v1beta1.ModeEnforce:
		return severityHigh
	case r.Mode == v1beta1.ModeWarn:
		return severityMedium
	}
	// No mode: no-matching-policies, whose weight is the no-match setting's.
	switch r.Result {
	case policy.ResultFail:
		return severityHigh
	case policy.ResultWarn:
		return severityMedium
	default:
		return severityInfo
	}
}

func properties(r policy.Result) map[string]string {
	p := map[string]string{}
	if r.Mode != "" {
		p[PropertyMode] = r.Mode
	}
	if r.Generation != 0 {
		p[PropertyGeneration] = strconv.FormatInt(r.Generation, 10)
	}
	if r.Message != "" && r.Message != r.Explanation {
		// policy-controller's own words, as its webhook would say them.
		p[PropertyDetails] = r.Message
	}
	return p
}

func count(s *reportsv1alpha2.PolicyReportSummary, r reportsv1alpha2.Result) {
	switch r {
	case reportsv1alpha2.ResultPass:
		s.Pass++
	case reportsv1alpha2.ResultFail:
		s.Fail++
	case reportsv1alpha2.ResultWarn:
		s.Warn++
	case reportsv1alpha2.ResultError:
		s.Error++
	case reportsv1alpha2.ResultSkip:
		s.Skip++
	}
}
