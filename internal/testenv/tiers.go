package testenv

import "testing"

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
