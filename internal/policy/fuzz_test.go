package policy_test

// FuzzDecide feeds random objects to the decision function through its
// exported API only (issue 9). `go test` runs it over the seeds below and the
// corpus in testdata/fuzz/FuzzDecide; `make fuzz` fuzzes it.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// fuzzRego denies host networking and privileged containers, in enforce mode.
const fuzzRego = `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: fuzz-rego-enforce
spec:
  images: [glob: '**']
  authorities: [static: {action: pass}]
  mode: enforce
  policy:
    includeSpec: true
    includeObjectMeta: true
    type: rego
    data: |
      package sigstore
      default isCompliant = false
      isCompliant {
        not input.spec.hostNetwork
        count([c | c := input.spec.containers[_]; c.securityContext.privileged == true]) == 0
      }
`

// fuzzRegoWarn reports every container by name (unicode and all), in warn mode.
const fuzzRegoWarn = `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: fuzz-rego-warn
spec:
  images: [glob: 'registry.test/**']
  authorities: [static: {action: pass}]
  mode: warn
  policy:
    includeSpec: true
    type: rego
    data: |
      package sigstore
      isCompliant[r] {
        c := input.spec.containers[_]
        r := {"result": false, "error": sprintf("container %v", [c.name]), "warning": ""}
      }
`

func compileDoc(tb testing.TB, doc []byte) *policy.CompiledPolicy {
	tb.Helper()
	var cip v1beta1.ClusterImagePolicy
	if err := yaml.Unmarshal(doc, &cip); err != nil {
		tb.Fatal(err)
	}
	cip.Generation = 1
	p, err := policy.Compile(&cip)
	if err != nil {
		tb.Fatalf("%s: %v", cip.Name, err)
	}
	return p
}

var validResults = map[string]bool{
	policy.ResultPass: true, policy.ResultFail: true, policy.ResultWarn: true, policy.ResultError: true, policy.ResultSkip: true,
}

var fuzzNoMatch = []policy.NoMatchPolicy{policy.NoMatchDeny, policy.NoMatchWarn, policy.NoMatchAllow, "", "bogus"}

func FuzzDecide(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "cip.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	sets := []*policy.Set{
		policy.NewSet([]*policy.CompiledPolicy{compileDoc(f, seed)}, nil),
		policy.NewSet([]*policy.CompiledPolicy{compileDoc(f, []byte(fuzzRego)), compileDoc(f, []byte(fuzzRegoWarn))}, nil),
		policy.NewSet([]*policy.CompiledPolicy{compileDoc(f, seed), compileDoc(f, []byte(fuzzRego)), compileDoc(f, []byte(fuzzRegoWarn))}, nil),
	}
	for _, name := range []string{"pod-fixed.yaml", "pod-net-admin.yaml"} {
		pod, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pod, uint8(0))
	}
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"h"},"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"registry.test/x"}]}}`), uint8(1))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"c","image":"x","securityContext":{"privileged":true}}]}}`), uint8(3))
	// Many containers (issue 14): one image adding NET_ADMIN, and distinct
	// images, some privileged.
	f.Add(manyContainers(200, func(i int) string {
		return fmt.Sprintf(`{"name":"c%d","image":"nginx","securityContext":{"capabilities":{"add":["NET_ADMIN"]}}}`, i)
	}), uint8(0))
	f.Add(manyContainers(200, func(i int) string {
		return fmt.Sprintf(`{"name":"c%d","image":"registry.test/team-%d/app:1","securityContext":{"privileged":%v}}`, i, i, i%7 == 0)
	}), uint8(1))

	// noMatch 5 and up multiply the containers (see the fuzz function).
	f.Add([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"name":"a","image":"registry.test/a"},{"name":"b","image":"x","securityContext":{"privileged":true}}]}}}}`), uint8(5*50))

	f.Fuzz(func(t *testing.T, raw []byte, noMatch uint8) {
		// The no-match byte also says how many containers the object gets:
		// noMatch/5 times 8, up to 408 (0: as given).
		if times := int(noMatch) / len(fuzzNoMatch); times > 0 {
			raw = testenv.MultiplyContainers(raw, times*8)
		}
		obj, err := policy.DecodeObject(raw)
		if err != nil {
			if obj != nil {
				t.Errorf("DecodeObject returned an object and the error %v", err)
			}
			return
		}
		opts := policy.Options{NoMatchPolicy: fuzzNoMatch[int(noMatch)%len(fuzzNoMatch)]}
		for i, set := range sets {
			d := set.Decide(context.Background(), obj, opts)
			checkDecision(t, i, d)
			if again := set.Decide(context.Background(), obj, opts); !reflect.DeepEqual(d, again) {
				t.Errorf("set %d: two decisions of the same object differ:\n%+v\n%+v", i, d, again)
			}
		}
	})
}

// manyContainers is a Pod of n containers, container(i) giving each one's JSON.
func manyContainers(n int, container func(i int) string) []byte {
	cs := make([]string, n)
	for i := range cs {
		cs[i] = container(i)
	}
	return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"many"},"spec":{"containers":[` + strings.Join(cs, ",") + `]}}`)
}

// maxMessage bounds every message of a decision, whatever the object.
const maxMessage = 16 << 10

// checkDecision asserts what holds for every decision: known result words,
// a denial exactly when a result in enforce mode failed or errored, and
// messages of bounded size.
func checkDecision(t *testing.T, set int, d policy.Decision) {
	t.Helper()
	if len(d.DenyMessage) > maxMessage {
		t.Errorf("set %d: a denial of %d bytes", set, len(d.DenyMessage))
	}
	for _, r := range d.Results {
		if len(r.Message) > maxMessage || len(r.Explanation) > maxMessage {
			t.Errorf("set %d: policy %s: a message of %d bytes, an explanation of %d", set, r.Policy, len(r.Message), len(r.Explanation))
		}
	}
	enforcedFailure := false
	for _, r := range d.Results {
		if !validResults[r.Result] {
			t.Errorf("set %d: policy %s: result %q is not one of pass, fail, warn, error, skip", set, r.Policy, r.Result)
		}
		if (r.Result == policy.ResultFail || r.Result == policy.ResultError) && r.Mode != v1beta1.ModeWarn {
			enforcedFailure = true
			if d.Allowed {
				t.Errorf("set %d: allowed although policy %s (mode %q) says %s: %s", set, r.Policy, r.Mode, r.Result, r.Message)
			}
		}
	}
	if !d.Allowed && !enforcedFailure {
		t.Errorf("set %d: denied (%s) without an enforced fail or error result: %+v", set, d.DenyMessage, d.Results)
	}
	if d.Allowed != (d.DenialReason() == "") {
		t.Errorf("set %d: Allowed = %v but DenialReason = %q", set, d.Allowed, d.DenialReason())
	}
}
