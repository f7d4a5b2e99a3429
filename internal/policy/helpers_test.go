package policy

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// repoRoot is the directory holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// sharedDir is ../shared/<sub> next to the repository; tests skip when the
// third-party corpus is not present.
func sharedDir(t testing.TB, sub ...string) string {
	t.Helper()
	dir := filepath.Join(append([]string{repoRoot(t), "..", "shared"}, sub...)...)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("the third-party corpus in ../shared/%s is not present: %v", filepath.Join(sub...), err)
	}
	return dir
}

func readCIP(t testing.TB, path string) *v1beta1.ClusterImagePolicy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cip v1beta1.ClusterImagePolicy
	if err := yaml.UnmarshalStrict(data, &cip); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &cip
}

func readObject(t testing.TB, path string) *Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	o, err := DecodeObject(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return o
}

func mustCompile(t testing.TB, cip *v1beta1.ClusterImagePolicy) *CompiledPolicy {
	t.Helper()
	p, err := Compile(cip)
	if err != nil {
		t.Fatalf("compile %s: %v", cip.Name, err)
	}
	return p
}

func decide(t testing.TB, obj *Object, opts Options, cips ...*v1beta1.ClusterImagePolicy) Decision {
	t.Helper()
	var compiled []*CompiledPolicy
	for _, c := range cips {
		compiled = append(compiled, mustCompile(t, c))
	}
	return NewSet(compiled, nil).Decide(context.Background(), obj, opts)
}

// newCIP builds a policy covering every image with a static pass authority;
// the options change it.
func newCIP(name string, opts ...func(*v1beta1.ClusterImagePolicySpec)) *v1beta1.ClusterImagePolicy {
	cip := &v1beta1.ClusterImagePolicy{}
	cip.Name = name
	cip.Generation = 1
	cip.Spec = v1beta1.ClusterImagePolicySpec{
		Images:      []v1beta1.ImagePattern{{Glob: "**"}},
		Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
	}
	for _, o := range opts {
		o(&cip.Spec)
	}
	return cip
}

func withMode(mode string) func(*v1beta1.ClusterImagePolicySpec) {
	return func(s *v1beta1.ClusterImagePolicySpec) { s.Mode = mode }
}

func withGlobs(globs ...string) func(*v1beta1.ClusterImagePolicySpec) {
	return func(s *v1beta1.ClusterImagePolicySpec) {
		s.Images = nil
		for _, g := range globs {
			s.Images = append(s.Images, v1beta1.ImagePattern{Glob: g})
		}
	}
}

func withAuthorities(as ...v1beta1.Authority) func(*v1beta1.ClusterImagePolicySpec) {
	return func(s *v1beta1.ClusterImagePolicySpec) { s.Authorities = as }
}

func withMatch(ms ...v1beta1.MatchResource) func(*v1beta1.ClusterImagePolicySpec) {
	return func(s *v1beta1.ClusterImagePolicySpec) { s.Match = ms }
}

// withCUE and withRego set a CIP-level policy that includes the spec, the
// object metadata and the type metadata.
func withCUE(src string) func(*v1beta1.ClusterImagePolicySpec) {
	return withBody(v1beta1.PolicyTypeCUE, src)
}

func withRego(src string) func(*v1beta1.ClusterImagePolicySpec) {
	return withBody(v1beta1.PolicyTypeRego, src)
}

func withBody(typ, src string) func(*v1beta1.ClusterImagePolicySpec) {
	t := true
	return func(s *v1beta1.ClusterImagePolicySpec) {
		s.Policy = &v1beta1.Policy{Type: typ, Data: src, IncludeSpec: &t, IncludeObjectMeta: &t, IncludeTypeMeta: &t}
	}
}

func staticAuth(action, message string) v1beta1.Authority {
	return v1beta1.Authority{Static: &v1beta1.StaticRef{Action: action, Message: message}}
}

// obj decodes a YAML object or fails the test.
func obj(t testing.TB, y string) *Object {
	t.Helper()
	o, err := DecodeObject([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// podYAML is a Pod with one container per image, named c0, c1, ...
func podYAML(images ...string) string {
	s := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {app: web}\nspec:\n  containers:\n"
	for i, img := range images {
		s += "  - name: c" + string(rune('0'+i)) + "\n    image: " + img + "\n"
	}
	return s
}

func results(d Decision) map[string]string {
	out := map[string]string{}
	for _, r := range d.Results {
		out[r.Policy] = r.Result
	}
	return out
}
