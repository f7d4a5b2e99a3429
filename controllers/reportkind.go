package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openreportsv1alpha1 "github.com/vigil-dev/vigil/apis/openreports/v1alpha1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/manager"
)

// reportKind is the API Vigil's reports are stored in (--report-api). The
// reconcilers work on PolicyReport values throughout; a reportKind converts
// them to and from the stored kind at the client boundary, so that both APIs
// get the same content from the same code.
type reportKind interface {
	// name is the stored kind, for messages.
	name() string
	// newObject and newList are empty stored objects, to read into and watch.
	newObject() client.Object
	newList() client.ObjectList
	// toStored converts a report to the stored kind.
	toStored(*reportsv1alpha2.PolicyReport) client.Object
	// fromStored converts a stored object back; false for another type.
	fromStored(client.Object) (*reportsv1alpha2.PolicyReport, bool)
	// items converts a stored list.
	items(client.ObjectList) []reportsv1alpha2.PolicyReport
	// scopeOf is a stored report's scope, or nil.
	scopeOf(client.Object) *corev1.ObjectReference
}

// reportKindFor is the reportKind of api.
func reportKindFor(api manager.ReportAPI) reportKind {
	if api == manager.ReportAPIOpenReports {
		return openReports{}
	}
	return policyReports{}
}

// getReport reads the report key in the stored kind, compacting it as
// Vigil's cache does (manager.CompactReport) when compact is true, for a
// reader past the cache.
func getReport(ctx context.Context, c client.Reader, k reportKind, key client.ObjectKey, compact bool) (*reportsv1alpha2.PolicyReport, error) {
	obj := k.newObject()
	if err := c.Get(ctx, key, obj); err != nil {
		return nil, err
	}
	if compact {
		_, _ = manager.CompactReport(obj)
	}
	rep, _ := k.fromStored(obj)
	return rep, nil
}

// compacted is rep as Vigil's cache would hold it once stored as k.
func compacted(k reportKind, rep *reportsv1alpha2.PolicyReport) *reportsv1alpha2.PolicyReport {
	stored := k.toStored(rep.DeepCopy())
	_, _ = manager.CompactReport(stored)
	out, _ := k.fromStored(stored)
	return out
}

// listReports lists the reports in the stored kind.
func listReports(ctx context.Context, c client.Reader, k reportKind, opts ...client.ListOption) ([]reportsv1alpha2.PolicyReport, error) {
	list := k.newList()
	if err := c.List(ctx, list, opts...); err != nil {
		return nil, err
	}
	return k.items(list), nil
}

// policyReports stores reports as wgpolicyk8s.io/v1alpha2 PolicyReports:
// nothing to convert.
type policyReports struct{}

func (policyReports) name() string                                           { return "PolicyReport" }
func (policyReports) newObject() client.Object                               { return &reportsv1alpha2.PolicyReport{} }
func (policyReports) newList() client.ObjectList                             { return &reportsv1alpha2.PolicyReportList{} }
func (policyReports) toStored(r *reportsv1alpha2.PolicyReport) client.Object { return r }

func (policyReports) fromStored(obj client.Object) (*reportsv1alpha2.PolicyReport, bool) {
	r, ok := obj.(*reportsv1alpha2.PolicyReport)
	return r, ok
}

func (policyReports) items(l client.ObjectList) []reportsv1alpha2.PolicyReport {
	if list, ok := l.(*reportsv1alpha2.PolicyReportList); ok {
		return list.Items
	}
	return nil
}

func (policyReports) scopeOf(obj client.Object) *corev1.ObjectReference {
	if r, ok := obj.(*reportsv1alpha2.PolicyReport); ok {
		return r.Scope
	}
	return nil
}

// openReports stores reports as openreports.io/v1alpha1 Reports: the same
// fields, with the engine named once at the top as well (source: vigil).
type openReports struct{}

func (openReports) name() string               { return "Report" }
func (openReports) newObject() client.Object   { return &openreportsv1alpha1.Report{} }
func (openReports) newList() client.ObjectList { return &openreportsv1alpha1.ReportList{} }

func (openReports) toStored(in *reportsv1alpha2.PolicyReport) client.Object {
	in = in.DeepCopy()
	out := &openreportsv1alpha1.Report{
		ObjectMeta:    in.ObjectMeta,
		Source:        ReportSource,
		Scope:         in.Scope,
		ScopeSelector: in.ScopeSelector,
		Summary:       openreportsv1alpha1.ReportSummary(in.Summary),
	}
	for _, r := range in.Results {
		out.Results = append(out.Results, openreportsv1alpha1.ReportResult{
			Source: r.Source, Policy: r.Policy, Rule: r.Rule, Category: r.Category,
			Severity: openreportsv1alpha1.Severity(r.Severity), Timestamp: r.Timestamp,
			Result: openreportsv1alpha1.Result(r.Result), Scored: r.Scored,
			Subjects: r.Subjects, SubjectSelector: r.SubjectSelector,
			Description: r.Description, Properties: r.Properties,
		})
	}
	return out
}

func (openReports) fromStored(obj client.Object) (*reportsv1alpha2.PolicyReport, bool) {
	in, ok := obj.(*openreportsv1alpha1.Report)
	if !ok {
		return nil, false
	}
	return fromReport(in), true
}

func (openReports) items(l client.ObjectList) []reportsv1alpha2.PolicyReport {
	list, ok := l.(*openreportsv1alpha1.ReportList)
	if !ok {
		return nil
	}
	out := make([]reportsv1alpha2.PolicyReport, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, *fromReport(&list.Items[i]))
	}
	return out
}

func (openReports) scopeOf(obj client.Object) *corev1.ObjectReference {
	if r, ok := obj.(*openreportsv1alpha1.Report); ok {
		return r.Scope
	}
	return nil
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
