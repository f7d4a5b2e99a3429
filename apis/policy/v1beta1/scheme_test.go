package v1beta1

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// AddToScheme registers both kinds under policy.sigstore.dev/v1beta1, as
// controller-runtime's scheme.Builder did before the package stopped
// importing controller-runtime.
func TestAddToScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for kind, obj := range map[string]runtime.Object{"ClusterImagePolicy": &ClusterImagePolicy{}, "ClusterImagePolicyList": &ClusterImagePolicyList{}} {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil || len(gvks) != 1 || gvks[0] != GroupVersion.WithKind(kind) {
			t.Errorf("%s: %v, %v", kind, gvks, err)
		}
	}
	// metav1's options types, which list and watch requests use.
	if !s.Recognizes(GroupVersion.WithKind("ListOptions")) {
		t.Error("ListOptions is not registered for the group version")
	}
}
