package verifytest

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

// CatalogPolicy reads a ClusterImagePolicy of the supply-chain corpus (the
// first document of path) and points it at a test fixture: the images glob
// at registryHost (unless it names k8s.gcr.io, what the policy is about),
// key.data at pub, keyless authorities at the TrustRoot trustRoot with
// insecureIgnoreSCT (a VirtualSigstore's certificates carry no SCT), the
// trustRootRef of ctlog and rfc3161timestamp, where they name one, at
// trustRoot too (a ctlog without one takes the keyless authority's), and
// reading attestations as bundle referrers (the VirtualSigstore legacy
// writer keeps one attestation per .att tag).
// Identities, predicate types and policies stay as written.
func CatalogPolicy(t testing.TB, path, registryHost string, pub []byte, trustRoot string) *v1beta1.ClusterImagePolicy {
	t.Helper()
	raw, err := os.ReadFile(path) // #nosec G304 -- test support: a policy file of the conformance corpus the test names
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(raw), "\n---\n")
	var cip v1beta1.ClusterImagePolicy
	if err := yaml.UnmarshalStrict([]byte(first), &cip); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(cip.Spec.Images) == 0 || !strings.HasPrefix(cip.Spec.Images[0].Glob, "k8s.gcr.io") {
		cip.Spec.Images = []v1beta1.ImagePattern{{Glob: registryHost + "/**"}}
	}
	yes := true
	for i := range cip.Spec.Authorities {
		a := &cip.Spec.Authorities[i]
		if a.CTLog != nil && a.CTLog.TrustRootRef != "" {
			a.CTLog.TrustRootRef = trustRoot
		}
		if a.RFC3161Timestamp != nil && a.RFC3161Timestamp.TrustRootRef != "" {
			a.RFC3161Timestamp.TrustRootRef = trustRoot
		}
		if a.Key != nil {
			a.Key.Data = string(pub)
		}
		if a.Keyless != nil {
			a.Keyless.TrustRootRef, a.Keyless.InsecureIgnoreSCT = trustRoot, &yes
			if len(a.Attestations) > 0 {
				a.SignatureFormat = "bundle"
			}
		}
	}
	return &cip
}

// PushCreated pushes a linux/amd64 image to repo whose config says it was
// created at (what a maximum-image-age policy reads through fetchConfigFile).
func (r *Registry) PushCreated(t testing.TB, repo string, at time.Time) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", "amd64", v1.Time{Time: at}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return r.Push(t, repo, img)
}
