package apis_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	policyv1alpha1 "github.com/vigil-dev/vigil/apis/policy/v1alpha1"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// A TrustRoot as policy-controller users write it (keys inline, PEM as
// base64) is accepted and reads back unchanged; the schema refuses a spec
// with no source or two, and empty sigstoreKeys.
func TestTrustRootSchema(t *testing.T) {
	testenv.Integration(t)
	ctx := context.Background()
	pem := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	dn := policyv1alpha1.DistinguishedName{Organization: "example", CommonName: "fulcio"}
	keys := &policyv1alpha1.SigstoreKeys{
		CertificateAuthorities: []policyv1alpha1.CertificateAuthority{{Subject: dn, URI: "https://fulcio.example.com", CertChain: pem}},
		TLogs:                  []policyv1alpha1.TransparencyLogInstance{{BaseURL: "https://rekor.example.com", HashAlgorithm: "sha256", PublicKey: pem}},
	}
	tr := &policyv1alpha1.TrustRoot{ObjectMeta: metav1.ObjectMeta{Name: "byo"}, Spec: policyv1alpha1.TrustRootSpec{SigstoreKeys: keys}}
	if err := k8s.Create(ctx, tr.DeepCopy()); err != nil {
		t.Fatalf("create TrustRoot: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, tr) })
	var got policyv1alpha1.TrustRoot
	if err := k8s.Get(ctx, client.ObjectKey{Name: "byo"}, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Spec, tr.Spec) {
		t.Errorf("spec read back differs:\n got %+v\nwant %+v", got.Spec, tr.Spec)
	}

	root := []byte(`{"signed": {}, "signatures": []}`)
	for _, tc := range []struct {
		name string
		spec policyv1alpha1.TrustRootSpec
		want string
	}{
		{"no source", policyv1alpha1.TrustRootSpec{}, "exactly one of remote, repository and sigstoreKeys must be set"},
		{"two sources", policyv1alpha1.TrustRootSpec{SigstoreKeys: keys, Remote: &policyv1alpha1.Remote{Root: root, Mirror: "https://tuf.example.com"}},
			"exactly one of remote, repository and sigstoreKeys must be set"},
		{"empty sigstoreKeys", policyv1alpha1.TrustRootSpec{SigstoreKeys: &policyv1alpha1.SigstoreKeys{}},
			"at least one of certificateAuthorities and timestampAuthorities must be set"},
		{"log hash", policyv1alpha1.TrustRootSpec{SigstoreKeys: &policyv1alpha1.SigstoreKeys{
			CertificateAuthorities: keys.CertificateAuthorities,
			TLogs:                  []policyv1alpha1.TransparencyLogInstance{{BaseURL: "https://rekor.example.com", HashAlgorithm: "md5", PublicKey: pem}},
		}}, `spec.sigstoreKeys.tLogs[0].hashAlgorithm: Unsupported value: "md5"`},
		{"repository without mirrorFS", policyv1alpha1.TrustRootSpec{Repository: &policyv1alpha1.Repository{Root: root}},
			"spec.repository.mirrorFS: Required value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := &policyv1alpha1.TrustRoot{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: tc.spec}
			err := k8s.Create(ctx, bad)
			if err == nil {
				_ = k8s.Delete(ctx, bad)
				t.Fatalf("the API server accepted %+v", tc.spec)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
