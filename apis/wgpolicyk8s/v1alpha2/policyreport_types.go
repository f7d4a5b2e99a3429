package v1alpha2

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Result is the outcome of one policy for one resource.
// +kubebuilder:validation:Enum=pass;fail;warn;error;skip
type Result string

// The results of the wgpolicyk8s.io schema.
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

// PolicyReportSummary counts the results of a report by kind.
type PolicyReportSummary struct {
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

// PolicyReportResult is the outcome of one policy (and rule) for its resources.
type PolicyReportResult struct {
	// Source is the policy engine that produced the result.
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

// PolicyReport holds the policy results of namespaced resources.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=polr
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.scope.kind`
// +kubebuilder:printcolumn:name="Name",type=string,JSONPath=`.scope.name`
// +kubebuilder:printcolumn:name="Pass",type=integer,JSONPath=`.summary.pass`
// +kubebuilder:printcolumn:name="Fail",type=integer,JSONPath=`.summary.fail`
// +kubebuilder:printcolumn:name="Warn",type=integer,JSONPath=`.summary.warn`
// +kubebuilder:printcolumn:name="Error",type=integer,JSONPath=`.summary.error`
// +kubebuilder:printcolumn:name="Skip",type=integer,JSONPath=`.summary.skip`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PolicyReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Scope is the resource the report is about.
	// +optional
	Scope *corev1.ObjectReference `json:"scope,omitempty"`
	// ScopeSelector selects the resources the report is about; not with Scope.
	// +optional
	ScopeSelector *metav1.LabelSelector `json:"scopeSelector,omitempty"`
	// Summary counts the results by kind.
	// +optional
	Summary PolicyReportSummary `json:"summary,omitempty"`
	// Results of the policies.
	// +optional
	Results []PolicyReportResult `json:"results,omitempty"`
}

// PolicyReportList is a list of PolicyReport.
//
// +kubebuilder:object:root=true
type PolicyReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PolicyReport `json:"items"`
}

// ClusterPolicyReport holds the policy results of cluster-scoped findings,
// such as a policy that cannot compile.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cpolr
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.scope.kind`
// +kubebuilder:printcolumn:name="Name",type=string,JSONPath=`.scope.name`
// +kubebuilder:printcolumn:name="Pass",type=integer,JSONPath=`.summary.pass`
// +kubebuilder:printcolumn:name="Fail",type=integer,JSONPath=`.summary.fail`
// +kubebuilder:printcolumn:name="Warn",type=integer,JSONPath=`.summary.warn`
// +kubebuilder:printcolumn:name="Error",type=integer,JSONPath=`.summary.error`
// +kubebuilder:printcolumn:name="Skip",type=integer,JSONPath=`.summary.skip`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterPolicyReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Scope is the resource the report is about.
	// +optional
	Scope *corev1.ObjectReference `json:"scope,omitempty"`
	// ScopeSelector selects the resources the report is about; not with Scope.
	// +optional
	ScopeSelector *metav1.LabelSelector `json:"scopeSelector,omitempty"`
	// Summary counts the results by kind.
	// +optional
	Summary PolicyReportSummary `json:"summary,omitempty"`
	// Results of the policies.
	// +optional
	Results []PolicyReportResult `json:"results,omitempty"`
}

// ClusterPolicyReportList is a list of ClusterPolicyReport.
//
// +kubebuilder:object:root=true
type ClusterPolicyReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterPolicyReport `json:"items"`
}
