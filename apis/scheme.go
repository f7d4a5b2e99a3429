// Package apis gathers the API types Vigil reads and writes.
package apis

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	openreportsv1alpha1 "github.com/vigil-dev/vigil/apis/openreports/v1alpha1"
	policyv1alpha1 "github.com/vigil-dev/vigil/apis/policy/v1alpha1"
	policyv1beta1 "github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
)

// NewScheme returns a scheme with the Kubernetes built-in types and Vigil's APIs.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, policyv1beta1.AddToScheme, policyv1alpha1.AddToScheme, reportsv1alpha2.AddToScheme,
		openreportsv1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err) // only a programming error: the scheme builders are static
		}
	}
	return s
}
