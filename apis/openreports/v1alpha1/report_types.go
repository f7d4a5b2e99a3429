package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Result is the outcome of one policy for one resource.
// +kubebuilder:validation:Enum=pass;fail;warn;error;skip
type Result string

// The results of the openreports.io schema, those of wgpolicyk8s.io.
const (
	// ResultPass: the requirements were met.
	ResultPass Result = "pass"
	// ResultFail: an enforce-mode policy's requirements were not met.
	ResultFail Result = "fail"
	// ResultWarn: a warn-mode policy's requirements were not met.
	ResultWarn Result = "warn"
	// ResultError: the policy could not be evaluated.
	ResultError Result = "error"
	// ResultSkip: the resource was not selected for evaluation.
	ResultSkip Result = "skip"
)

// Severity of a result.
// +kubebuilder:validation:Enum=critical;high;low;medium;info
type Severity string

// StatusFilter names a result kind a report is meant to hold.
// +kubebuilder:validation:Enum=pass;fail;warn;error;skip
type StatusFilter string

// ReportSummary counts the results of a report by kind.
type ReportSummary struct {
	// Pass counts results whose requirements were met.
	// +optional
	Pass int `json:"pass"`
	// Fail counts results whose requirements were not met.
	// +optional
	Fail int `json:"fail"`
	// Warn counts results of non-scored policies whose requirements were not met.
	// +optional
	Warn int `json:"warn"`
	// Error counts results that could not be evaluated.
	// +optional
	Error int `json:"error"`
	// Skip counts results that were not selected for evaluation.
	// +optional
	Skip int `json:"skip"`
}

// ReportResult is the outcome of one policy (and rule) for its resources.
type ReportResult struct {
	// Source is the policy engine that produced the result; it overrides
	// the report's source.
	// +optional
	Source string `json:"source"`
	// Policy is the name of the policy.
	// +required
	Policy string `json:"policy"`
	// Rule within the policy.
	// +optional
	Rule string `json:"rule,omitempty"`
	// Category of the policy.
	// +optional
	Category string `json:"category,omitempty"`
	// Severity of a failure.
	// +optional
	Severity Severity `json:"severity,omitempty"`
	// Timestamp is when the result was found.
	// +optional
	Timestamp metav1.Timestamp `json:"timestamp,omitempty"`
	// Result of the policy.
	// +optional
	Result Result `json:"result,omitempty"`
	// Scored is false for informational policies.
	// +optional
	Scored bool `json:"scored,omitempty"`
	// Subjects are the resources the result is about.
	// +optional
	Subjects []corev1.ObjectReference `json:"resources,omitempty"`
	// SubjectSelector selects the resources the result is about.
	// +optional
	SubjectSelector *metav1.LabelSelector `json:"resourceSelector,omitempty"`
	// Description is a short message a person can act on.
	// +optional
	Description string `json:"message,omitempty"`
	// Properties are further facts about the result.
	// +optional
	Properties map[string]string `json:"properties,omitempty"`
}

// ReportConfiguration is what the writer of a report promises its readers.
type ReportConfiguration struct {
	// Limits bound what the report holds.
	// +optional
	Limits Limits `json:"limits"`
}

// Limits bound the results of a report.
type Limits struct {
	// MaxResults is the most results the report holds; 0 sets no bound.
	// +optional
	MaxResults int `json:"maxResults"`
	// StatusFilter lists the result kinds the report holds; empty means all.
	// +optional
	StatusFilter []StatusFilter `json:"statusFilter,omitempty"`
}

// Report holds the policy results of namespaced resources.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:resource:shortName=reps
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.scope.kind`
// +kubebuilder:printcolumn:name="Name",type=string,JSONPath=`.scope.name`
// +kubebuilder:printcolumn:name="Pass",type=integer,JSONPath=`.summary.pass`
// +kubebuilder:printcolumn:name="Fail",type=integer,JSONPath=`.summary.fail`
// +kubebuilder:printcolumn:name="Warn",type=integer,JSONPath=`.summary.warn`
// +kubebuilder:printcolumn:name="Error",type=integer,JSONPath=`.summary.error`
// +kubebuilder:printcolumn:name="Skip",type=integer,JSONPath=`.summary.skip`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Report struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Source is the policy engine that produced every result, when one did.
	// +optional
	Source string `json:"source,omitempty"`
	// Configuration states the limits the report keeps.
	// +optional
	Configuration *ReportConfiguration `json:"configuration,omitempty"`
	// Scope is the resource the report is about.
	// +optional
	Scope *corev1.ObjectReference `json:"scope,omitempty"`
	// ScopeSelector selects the resources the report is about; not with Scope.
	// +optional
	ScopeSelector *metav1.LabelSelector `json:"scopeSelector,omitempty"`
	// Summary counts the results by kind.
	// +optional
	Summary ReportSummary `json:"summary,omitempty"`
	// Results of the policies.
	// +optional
	Results []ReportResult `json:"results,omitempty"`
}

// ReportList is a list of Report.
//
// +kubebuilder:object:root=true
type ReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Report `json:"items"`
}

// ClusterReport holds the policy results of cluster-scoped findings.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:resource:scope=Cluster,shortName=creps
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.scope.kind`
// +kubebuilder:printcolumn:name="Name",type=string,JSONPath=`.scope.name`
// +kubebuilder:printcolumn:name="Pass",type=integer,JSONPath=`.summary.pass`
// +kubebuilder:printcolumn:name="Fail",type=integer,JSONPath=`.summary.fail`
// +kubebuilder:printcolumn:name="Warn",type=integer,JSONPath=`.summary.warn`
// +kubebuilder:printcolumn:name="Error",type=integer,JSONPath=`.summary.error`
// +kubebuilder:printcolumn:name="Skip",type=integer,JSONPath=`.summary.skip`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Source is the policy engine that produced every result, when one did.
	// +optional
	Source string `json:"source,omitempty"`
	// Configuration states the limits the report keeps.
	// +optional
	Configuration *ReportConfiguration `json:"configuration,omitempty"`
	// Scope is the resource the report is about.
	// +optional
	Scope *corev1.ObjectReference `json:"scope,omitempty"`
	// ScopeSelector selects the resources the report is about; not with Scope.
	// +optional
	ScopeSelector *metav1.LabelSelector `json:"scopeSelector,omitempty"`
	// Summary counts the results by kind.
	// +optional
	Summary ReportSummary `json:"summary,omitempty"`
	// Results of the policies.
	// +optional
	Results []ReportResult `json:"results,omitempty"`
}

// ClusterReportList is a list of ClusterReport.
//
// +kubebuilder:object:root=true
type ClusterReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterReport `json:"items"`
}
