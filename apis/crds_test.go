// Integration tests of the generated CRDs against a real kube-apiserver and
// etcd: what users apply must be accepted and read back unchanged.
package apis_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/testenv"
)

var (
	env *envtest.Environment
	k8s client.Client
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // integration tests only: each skips itself
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	env, err = testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start kube-apiserver and etcd:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8s, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func TestCRDsInstalled(t *testing.T) {
	testenv.Integration(t)
	cases := []struct {
		name      string
		scope     apiextensionsv1.ResourceScope
		shortName string          // "" for none
		versions  map[string]bool // version -> storage
	}{
		{"clusterimagepolicies.policy.sigstore.dev", apiextensionsv1.ClusterScoped, "cip", map[string]bool{"v1alpha1": false, "v1beta1": true}},
		{"trustroots.policy.sigstore.dev", apiextensionsv1.ClusterScoped, "", map[string]bool{"v1alpha1": true}},
		{"policyreports.wgpolicyk8s.io", apiextensionsv1.NamespaceScoped, "polr", map[string]bool{"v1alpha2": true}},
		{"clusterpolicyreports.wgpolicyk8s.io", apiextensionsv1.ClusterScoped, "cpolr", map[string]bool{"v1alpha2": true}},
		{"reports.openreports.io", apiextensionsv1.NamespaceScoped, "reps", map[string]bool{"v1alpha1": true}},
		{"clusterreports.openreports.io", apiextensionsv1.ClusterScoped, "creps", map[string]bool{"v1alpha1": true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := k8s.Get(context.Background(), client.ObjectKey{Name: c.name}, &crd); err != nil {
				t.Fatalf("get CRD: %v", err)
			}
			if crd.Spec.Scope != c.scope {
				t.Errorf("scope = %s, want %s", crd.Spec.Scope, c.scope)
			}
			var wantShort []string
			if c.shortName != "" {
				wantShort = []string{c.shortName}
			}
			if !reflect.DeepEqual(crd.Spec.Names.ShortNames, wantShort) {
				t.Errorf("short names = %v, want %v", crd.Spec.Names.ShortNames, wantShort)
			}
			got := map[string]bool{}
			for _, v := range crd.Spec.Versions {
				if !v.Served {
					t.Errorf("version %s is not served", v.Name)
				}
				got[v.Name] = v.Storage
			}
			if !reflect.DeepEqual(got, c.versions) {
				t.Errorf("versions (name: storage) = %v, want %v", got, c.versions)
			}
			established := false
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					established = true
				}
			}
			if !established {
				t.Errorf("CRD is not Established: %+v", crd.Status.Conditions)
			}
		})
	}
}

// The walkthrough's policy must apply unchanged and read back field for field.
func TestSeedPolicyRoundTrips(t *testing.T) {
	testenv.Integration(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	roundTripPolicy(t, filepath.Join(root, "config", "samples", "cip.yaml"), "v1beta1")
}

// Every policy of the conformance corpus, written for policy-controller, is
// accepted unchanged (nothing pruned, nothing rejected).
func TestCatalogPoliciesRoundTrip(t *testing.T) {
	testenv.Integration(t)
	shared, err := testenv.SharedDir()
	if err != nil {
		t.Skip(err)
	}
	files, err := filepath.Glob(filepath.Join(shared, "conformance", "policy-catalog", "policies", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 19 {
		t.Fatalf("found %d catalog policies, want 19", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { roundTripPolicy(t, f, "v1beta1") })
	}
}

// v1alpha1 is served with the same schema: a policy written as v1alpha1 reads
// back unchanged as v1beta1.
func TestV1alpha1ServedWithSameSchema(t *testing.T) {
	testenv.Integration(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "cip.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	alpha := strings.Replace(string(data), "policy.sigstore.dev/v1beta1", "policy.sigstore.dev/v1alpha1", 1)
	alpha = strings.Replace(alpha, "name: non-default-capabilities-cue", "name: seed-as-v1alpha1", 1)
	path := filepath.Join(t.TempDir(), "cip-v1alpha1.yaml")
	if err := os.WriteFile(path, []byte(alpha), 0o600); err != nil {
		t.Fatal(err)
	}
	roundTripPolicy(t, path, "v1beta1")
}

// roundTripPolicy creates the policy in file as written and reads it back at
// readVersion; the spec must be equal, the only addition allowed being the
// defaulted mode.
func roundTripPolicy(t *testing.T, file, readVersion string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := yaml.Unmarshal(data, &want); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	obj := &unstructured.Unstructured{Object: want}
	ctx := context.Background()
	if err := k8s.Create(ctx, obj.DeepCopy()); err != nil {
		t.Fatalf("create %s: %v", file, err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })

	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(schema.GroupVersionKind{Group: "policy.sigstore.dev", Version: readVersion, Kind: "ClusterImagePolicy"})
	if err := k8s.Get(ctx, client.ObjectKey{Name: obj.GetName()}, got); err != nil {
		t.Fatalf("read back %s: %v", obj.GetName(), err)
	}
	wantSpec, _ := want["spec"].(map[string]any)
	gotSpec, _ := got.Object["spec"].(map[string]any)
	if _, ok := wantSpec["mode"]; !ok {
		wantSpec["mode"] = "enforce" // the schema's default, as policy-controller's defaulting webhook sets it
	}
	wantJSON, _ := yaml.Marshal(wantSpec)
	gotJSON, _ := yaml.Marshal(gotSpec)
	if string(wantJSON) != string(gotJSON) {
		t.Errorf("%s: spec read back differs\n--- applied\n%s\n--- read back\n%s", filepath.Base(file), wantJSON, gotJSON)
	}
}

// A PolicyReport created through the API is listed by the real kubectl with
// the printer columns users know from Kyverno.
func TestKubectlListsPolicyReports(t *testing.T) {
	testenv.Integration(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "reports"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	report := &reportsv1alpha2.PolicyReport{
		ObjectMeta: metav1.ObjectMeta{Name: "yolo", Namespace: ns.Name},
		Scope:      &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns.Name, Name: "yolo"},
		Summary:    reportsv1alpha2.PolicyReportSummary{Pass: 2, Fail: 1, Warn: 3},
		Results: []reportsv1alpha2.PolicyReportResult{{
			Source: "vigil", Policy: "non-default-capabilities-cue", Result: reportsv1alpha2.ResultFail,
			Description: `container "app" (docker.io/ubuntu) adds capability NET_ADMIN`,
			Timestamp:   metav1.Timestamp{Seconds: 1764000000},
			Properties:  map[string]string{"mode": "enforce"},
		}},
	}
	if err := k8s.Create(ctx, report); err != nil {
		t.Fatalf("create PolicyReport: %v", err)
	}

	kubectl := env.ControlPlane.KubeCtl()
	stdout, stderr, err := kubectl.Run("get", "policyreports", "-n", ns.Name)
	if err != nil {
		t.Fatalf("kubectl get policyreports: %v\n%s", err, readAll(stderr))
	}
	lines := strings.Split(strings.TrimSpace(readAll(stdout)), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl printed %d lines, want a header and one report:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	header, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	wantHeader := []string{"NAME", "KIND", "NAME", "PASS", "FAIL", "WARN", "ERROR", "SKIP", "AGE"}
	if !reflect.DeepEqual(header, wantHeader) {
		t.Errorf("header = %v, want %v", header, wantHeader)
	}
	wantRow := []string{"yolo", "Pod", "yolo", "2", "1", "3", "0", "0"}
	if len(row) != len(wantHeader) || !reflect.DeepEqual(row[:len(wantRow)], wantRow) {
		t.Errorf("row = %v, want %v followed by an age", row, wantRow)
	}

	// The short name works too.
	if _, stderr, err := kubectl.Run("get", "polr", "-n", ns.Name, "yolo"); err != nil {
		t.Errorf("kubectl get polr: %v\n%s", err, readAll(stderr))
	}
}

func readAll(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}
