package manager

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openreportsv1alpha1 "github.com/vigil-dev/vigil/apis/openreports/v1alpha1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
)

func fullResult(desc string, ts int64) reportsv1alpha2.PolicyReportResult {
	return reportsv1alpha2.PolicyReportResult{
		Source: "vigil", Policy: "p", Result: reportsv1alpha2.ResultFail, Scored: true,
		Description: desc, Properties: map[string]string{"mode": "enforce"},
		Subjects:  []corev1.ObjectReference{{Kind: "Pod", Name: "a"}},
		Timestamp: metav1.Timestamp{Seconds: ts},
	}
}

func compactedResult(t *testing.T, res reportsv1alpha2.PolicyReportResult) reportsv1alpha2.PolicyReportResult {
	t.Helper()
	r := &reportsv1alpha2.PolicyReport{Results: []reportsv1alpha2.PolicyReportResult{res}}
	if _, err := CompactReport(r); err != nil {
		t.Fatal(err)
	}
	return r.Results[0]
}

func TestCompactReport(t *testing.T) {
	a := compactedResult(t, fullResult("adds NET_ADMIN", 1))
	if !strings.HasPrefix(a.Description, digestPrefix) || a.Source != "" || a.Subjects != nil || a.Properties != nil {
		t.Errorf("compacted result %+v: want only policy, result, timestamp and the digest", a)
	}
	if a.Policy != "p" || a.Result != reportsv1alpha2.ResultFail || a.Timestamp.Seconds != 1 {
		t.Errorf("compacted result %+v lost its policy, result or timestamp", a)
	}
	if again := compactedResult(t, a); again.Description != a.Description {
		t.Errorf("compacting twice changed the digest")
	}
	if b := compactedResult(t, fullResult("adds NET_ADMIN", 2)); b.Description != a.Description {
		t.Errorf("the digest depends on the timestamp")
	}
	if c := compactedResult(t, fullResult("adds SYS_ADMIN", 1)); c.Description == a.Description {
		t.Errorf("the digest misses a changed description")
	}
	changed := fullResult("adds NET_ADMIN", 1)
	changed.Properties["mode"] = "warn"
	if d := compactedResult(t, changed); d.Description == a.Description {
		t.Errorf("the digest misses a changed property")
	}

	rep := &openreportsv1alpha1.Report{Results: []openreportsv1alpha1.ReportResult{{Policy: "p", Result: "pass", Description: "ok"}}}
	rep.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "x"}}
	if _, err := CompactReport(rep); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Results[0].Description, digestPrefix) || rep.ManagedFields != nil {
		t.Errorf("openreports Report not compacted: %+v", rep)
	}
	labelled := &reportsv1alpha2.PolicyReport{}
	labelled.Labels = map[string]string{ManagedByLabel: ManagedByValue}
	other := &reportsv1alpha2.PolicyReport{}
	other.Labels = map[string]string{ManagedByLabel: ManagedByValue, "team": "a"}
	_, _ = CompactReport(labelled)
	_, _ = CompactReport(other)
	if len(labelled.Labels) != 1 || labelled.Labels[ManagedByLabel] != ManagedByValue || len(other.Labels) != 2 {
		t.Errorf("labels changed: %v, %v", labelled.Labels, other.Labels)
	}
	pod := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n"}}
	if out, _ := CompactReport(pod); out.(*corev1.Pod).Spec.NodeName != "n" {
		t.Errorf("another type was changed")
	}
}
