// Package v1alpha2 holds PolicyReport and ClusterPolicyReport of
// wgpolicyk8s.io/v1alpha2, the schema that Kyverno, Kubewarden and
// policy-reporter read, so `kubectl get policyreports` works as users expect.
//
// +kubebuilder:object:generate=true
// +groupName=wgpolicyk8s.io
package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this package's types.
	GroupVersion = schema.GroupVersion{Group: "wgpolicyk8s.io", Version: "v1alpha2"}

	// AddToScheme adds this package's types to a scheme.
	AddToScheme = func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &PolicyReport{}, &PolicyReportList{}, &ClusterPolicyReport{}, &ClusterPolicyReportList{})
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	}
)
