// Package v1beta1 holds the ClusterImagePolicy API of policy.sigstore.dev, the
// schema of the Sigstore policy-controller, which Vigil reads unchanged.
// v1beta1 is the storage version; v1alpha1 is served with the same schema.
//
// +kubebuilder:object:generate=true
// +groupName=policy.sigstore.dev
package v1beta1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this package's types.
	GroupVersion = schema.GroupVersion{Group: "policy.sigstore.dev", Version: "v1beta1"}

	// SchemeBuilder adds this package's types to a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this package's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
