// Package v1alpha1 serves ClusterImagePolicy at policy.sigstore.dev/v1alpha1
// with exactly the schema of v1beta1, as policy-controller does, so that
// policies written against either version apply unchanged. The API server
// converts between the two by rewriting apiVersion (conversion strategy None).
//
// +kubebuilder:object:generate=true
// +groupName=policy.sigstore.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

var (
	// GroupVersion is the group and version of this package's types.
	GroupVersion = schema.GroupVersion{Group: "policy.sigstore.dev", Version: "v1alpha1"}

	// AddToScheme adds this package's types to a scheme.
	AddToScheme = func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &ClusterImagePolicy{}, &ClusterImagePolicyList{}, &TrustRoot{}, &TrustRootList{})
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	}
)

// ClusterImagePolicy is the v1alpha1 view of v1beta1.ClusterImagePolicy.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cip
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Pass",type=integer,JSONPath=`.status.pods.pass`
// +kubebuilder:printcolumn:name="Fail",type=integer,JSONPath=`.status.pods.fail`
// +kubebuilder:printcolumn:name="Warn",type=integer,JSONPath=`.status.pods.warn`
// +kubebuilder:printcolumn:name="Error",type=integer,JSONPath=`.status.pods.error`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterImagePolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy.
	// +required
	Spec v1beta1.ClusterImagePolicySpec `json:"spec"`
	// Status is what Vigil observed.
	// +optional
	Status v1beta1.ClusterImagePolicyStatus `json:"status,omitempty"`
}

// ClusterImagePolicyList is a list of ClusterImagePolicy.
//
// +kubebuilder:object:root=true
type ClusterImagePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterImagePolicy `json:"items"`
}
