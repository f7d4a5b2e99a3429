package controllers

import (
	"reflect"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/policy"
)

// Report labels and result properties.
const (
	ManagedByLabel = manager.ManagedByLabel
	ManagedByValue = manager.ManagedByValue
	// ReportSource is every result's source.
	ReportSource = "vigil"

	propertyMode       = "mode"
	propertyGeneration = "policyGeneration"
	propertyDetails    = "details"
)

// reportName is the report's name: the pod's UID, as Kyverno names its
// per-resource reports, so a pod re-created under the same name never meets
// its predecessor's report.
func reportName(pod *corev1.Pod) string { return string(pod.UID) }

// desiredReport is the report that states decision d for pod, with every
// result stamped now (see keepTimestamps).
func desiredReport(pod *corev1.Pod, d policy.Decision, now time.Time) *reportsv1alpha2.PolicyReport {
	ref := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	r := &reportsv1alpha2.PolicyReport{
		ObjectMeta: metav1.ObjectMeta{
			Name:      reportName(pod),
			Namespace: pod.Namespace,
			Labels:    map[string]string{ManagedByLabel: ManagedByValue},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
			}},
		},
		Scope: &ref,
	}
	for _, res := range d.Results {
		out := reportsv1alpha2.PolicyReportResult{
			Source:      ReportSource,
			Policy:      res.Policy,
			Result:      reportsv1alpha2.Result(res.Result),
			Scored:      true,
			Subjects:    []corev1.ObjectReference{ref},
			Description: message(res),
			Properties:  properties(res),
			Timestamp:   metav1.Timestamp{Seconds: now.Unix(), Nanos: int32(now.Nanosecond())}, // #nosec G115 -- Nanosecond() is below 1e9, within int32
		}
		r.Results = append(r.Results, out)
		countResult(&r.Summary, out.Result)
	}
	return r
}

// keepTimestamps gives every result of want that did not change since old
// (both compacted, manager.CompactReport) the timestamp it had in old, in
// want and in compact alike.
func keepTimestamps(want, compact, old *reportsv1alpha2.PolicyReport) {
	if old == nil {
		return
	}
	previous := make(map[string]reportsv1alpha2.PolicyReportResult, len(old.Results))
	for _, res := range old.Results {
		previous[res.Policy] = res
	}
	for i := range compact.Results {
		if prev, ok := previous[compact.Results[i].Policy]; ok && sameResult(prev, compact.Results[i]) {
			compact.Results[i].Timestamp = prev.Timestamp
			want.Results[i].Timestamp = prev.Timestamp
		}
	}
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

func properties(r policy.Result) map[string]string {
	p := map[string]string{}
	if r.Mode != "" {
		p[propertyMode] = r.Mode
	}
	if r.Generation != 0 {
		p[propertyGeneration] = strconv.FormatInt(r.Generation, 10)
	}
	if r.Message != "" && r.Message != r.Explanation {
		// policy-controller's own words, as its webhook would say them.
		p[propertyDetails] = r.Message
	}
	return p
}

func countResult(s *reportsv1alpha2.PolicyReportSummary, r reportsv1alpha2.Result) {
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

// sameResult compares two results, timestamps aside.
func sameResult(a, b reportsv1alpha2.PolicyReportResult) bool {
	a.Timestamp, b.Timestamp = metav1.Timestamp{}, metav1.Timestamp{}
	return reflect.DeepEqual(a, b)
}

// sameContent says whether writing want over have would change anything but
// timestamps. Both are compacted (manager.CompactReport), so their results
// compare by digest.
func sameContent(have, want *reportsv1alpha2.PolicyReport) bool {
	if len(have.Results) != len(want.Results) || have.Summary != want.Summary ||
		!reflect.DeepEqual(have.Scope, want.Scope) ||
		have.Labels[ManagedByLabel] != ManagedByValue ||
		!reflect.DeepEqual(have.OwnerReferences, want.OwnerReferences) {
		return false
	}
	for i := range have.Results {
		if !sameResult(have.Results[i], want.Results[i]) {
			return false
		}
	}
	return true
}
