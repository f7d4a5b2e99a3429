package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Vigil's tests come in three tiers: unit tests, beside the code they test,
// that need nothing but Go; integration tests, which start the real
// kube-apiserver and etcd that `make tools` builds (envtest); and the
// end-to-end tests of e2e/, which run the built bin/vigil and kubectl.
// `go test -short ./...` runs the unit tests alone.

// Integration marks t as an integration test: under -short it is skipped.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (kube-apiserver and etcd from make tools): skipped with -short")
	}
}

// EndToEnd marks t as an end-to-end test (bin/vigil, kubectl and the
// control plane's binaries): under -short it is skipped.
func EndToEnd(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test (bin/vigil and the binaries of make tools): skipped with -short")
	}
}

// UserKubeconfig writes a kubeconfig of env's cluster for a user with a
// client certificate of name and groups, in a directory of t's, and returns
// its path.
func UserKubeconfig(t testing.TB, env *envtest.Environment, name string, groups ...string) string {
	t.Helper()
	user, err := env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatalf("add user %s: %v", name, err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
