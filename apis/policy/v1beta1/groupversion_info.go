// Package v1beta1 holds the ClusterImagePolicy API of policy.sigstore.dev, the
// schema of the Sigstore policy-controller, which Vigil reads unchanged.
// v1beta1 is the storage version; v1alpha1 is served with the same schema.
//
// +kubebuilder:object:generate=true
// +groupName=policy.sigstore.dev
package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The scheme is built with apimachinery alone (not controller-runtime's
// scheme.Builder), so that internal/policy, which reads these types, and
// `vigil test` do not link controller-runtime.
var (
	// GroupVersion is the group and version of this package's types.
	GroupVersion = schema.GroupVersion{Group: "policy.sigstore.dev", Version: "v1beta1"}

	// AddToScheme adds this package's types to a scheme.
	AddToScheme = func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &ClusterImagePolicy{}, &ClusterImagePolicyList{})
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	}
)

// IncludeLabel opts a namespace in to policy enforcement, as for
// policy-controller: the webhook judges the objects of namespaces labelled
// IncludeLabel=true, and so does the verify path by default.
const IncludeLabel = "policy.sigstore.dev/include"
