package report

import (
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	openreportsv1alpha1 "github.com/vigil-dev/vigil/apis/openreports/v1alpha1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
)

// API is the group/version reports are stored in (--report-api). Vigil works
// on PolicyReport values throughout; an API converts them to and from the
// stored kind at the client boundary, so both APIs get the same content from
// the same code.
type API string

// The report APIs Vigil writes.
const (
	// WGPolicy stores PolicyReports of wgpolicyk8s.io/v1alpha2, the default.
	WGPolicy API = "wgpolicyk8s.io/v1alpha2"
	// OpenReports stores Reports of openreports.io/v1alpha1.
	OpenReports API = "openreports.io/v1alpha1"
)

// ParseAPI reads the value of --report-api; empty means WGPolicy.
func ParseAPI(s string) (API, error) {
	switch a := API(s); a {
	case "":
		return WGPolicy, nil
	case WGPolicy, OpenReports:
		return a, nil
	}
	return "", fmt.Errorf("%q is not one of %s, %s", s, WGPolicy, OpenReports)
}

// Kind is the stored kind, for messages.
func (a API) Kind() string {
	if a == OpenReports {
		return "Report"
	}
	return "PolicyReport"
}

// NewObject is an empty stored report, to read into and watch.
func (a API) NewObject() client.Object {
	if a == OpenReports {
		return &openreportsv1alpha1.Report{}
	}
	return &reportsv1alpha2.PolicyReport{}
}

// NewList is an empty stored list.
func (a API) NewList() client.ObjectList {
	if a == OpenReports {
		return &openreportsv1alpha1.ReportList{}
	}
	return &reportsv1alpha2.PolicyReportList{}
}

// ToStored converts a report to the stored kind, with its type meta set.
func (a API) ToStored(r *reportsv1alpha2.PolicyReport) client.Object {
	if a != OpenReports {
		r.SetGroupVersionKind(reportsv1alpha2.GroupVersion.WithKind("PolicyReport"))
		return r
	}
	r = r.DeepCopy()
	out := &openreportsv1alpha1.Report{
		ObjectMeta:    r.ObjectMeta,
		Source:        Source,
		Scope:         r.Scope,
		ScopeSelector: r.ScopeSelector,
		Summary:       openreportsv1alpha1.ReportSummary(r.Summary),
	}
	out.SetGroupVersionKind(openreportsv1alpha1.GroupVersion.WithKind("Report"))
	for _, res := range r.Results {
		out.Results = append(out.Results, openreportsv1alpha1.ReportResult{
			Source: res.Source, Policy: res.Policy, Rule: res.Rule, Category: res.Category,
			Severity: openreportsv1alpha1.Severity(res.Severity), Timestamp: res.Timestamp,
			Result: openreportsv1alpha1.Result(res.Result), Scored: res.Scored,
			Subjects: res.Subjects, SubjectSelector: res.SubjectSelector,
			Description: res.Description, Properties: res.Properties,
		})
	}
	return out
}

// FromStored converts a stored report back; false for an object of
// another type.
func (a API) FromStored(obj client.Object) (*reportsv1alpha2.PolicyReport, bool) {
	switch in := obj.(type) {
	case *reportsv1alpha2.PolicyReport:
		return in, a != OpenReports
	case *openreportsv1alpha1.Report:
		return fromReport(in), a == OpenReports
	}
	return nil, false
}

// fromReport converts a Report to a PolicyReport. The top-level source and
// configuration have no place there; Vigil writes the source on every
// result too, and no configuration.
func fromReport(in *openreportsv1alpha1.Report) *reportsv1alpha2.PolicyReport {
	in = in.DeepCopy()
	out := &reportsv1alpha2.PolicyReport{
		ObjectMeta:    in.ObjectMeta,
		Scope:         in.Scope,
		ScopeSelector: in.ScopeSelector,
		Summary:       reportsv1alpha2.PolicyReportSummary(in.Summary),
	}
	for _, r := range in.Results {
		out.Results = append(out.Results, reportsv1alpha2.PolicyReportResult{
			Source: r.Source, Policy: r.Policy, Rule: r.Rule, Category: r.Category,
			Severity: reportsv1alpha2.Severity(r.Severity), Timestamp: r.Timestamp,
			Result: reportsv1alpha2.Result(r.Result), Scored: r.Scored,
			Subjects: r.Subjects, SubjectSelector: r.SubjectSelector,
			Description: r.Description, Properties: r.Properties,
		})
	}
	return out
}
