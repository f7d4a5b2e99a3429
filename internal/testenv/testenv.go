// Package testenv starts the real kube-apiserver and etcd that `make tools`
// builds into bin/, with Vigil's CRDs installed, for integration tests.
package testenv

import (
	"fmt"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/vigil-dev/vigil/apis"
)

// RepoRoot returns the directory of Vigil's go.mod, found by walking up from
// the working directory (go test runs in the package's directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod")) // #nosec G304 -- go.mod of the working directory's parents, in tests
		if err == nil && strings.HasPrefix(string(data), "module github.com/vigil-dev/vigil\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of github.com/vigil-dev/vigil above the working directory")
		}
		dir = parent
	}
}

// SharedDir returns ../shared beside the repository (the design, the seed
// walkthrough and the third-party conformance corpus), or an error that says
// why tests needing it skip.
func SharedDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(filepath.Dir(root), "shared")
	if _, err := os.Stat(filepath.Join(dir, "conformance")); err != nil {
		return "", fmt.Errorf("the third-party corpus ../shared/conformance is not beside this checkout (%s): CI always has it", dir)
	}
	return dir, nil
}

// Scheme returns Vigil's scheme plus CustomResourceDefinitions, which tests inspect.
func Scheme() *runtime.Scheme {
	s := apis.NewScheme()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// New returns an envtest environment on bin/'s binaries with Vigil's CRDs.
// It fails, naming `make tools`, when the binaries are missing.
func New() (*envtest.Environment, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil { // #nosec G703 -- KUBEBUILDER_ASSETS is set by whoever runs the tests
			return nil, fmt.Errorf("%s is missing from %s: run `make tools` to build it", b, assets)
		}
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme(),
	}, nil
}
