// Package v1alpha1 holds Report and ClusterReport of openreports.io/v1alpha1,
// the successor of wgpolicyk8s.io's PolicyReport that Kyverno and Kubewarden
// can write instead. The results and the summary have the same JSON as
// wgpolicyk8s.io/v1alpha2; a report adds a top-level source (the engine that
// produced every result) and limits agreed between writers and readers.
// Vigil writes Reports when `vigil controller --report-api=openreports.io/v1alpha1`.
//
// +kubebuilder:object:generate=true
// +groupName=openreports.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this package's types.
	GroupVersion = schema.GroupVersion{Group: "openreports.io", Version: "v1alpha1"}

	// AddToScheme adds this package's types to a scheme.
	AddToScheme = func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &Report{}, &ReportList{}, &ClusterReport{}, &ClusterReportList{})
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	}
)
