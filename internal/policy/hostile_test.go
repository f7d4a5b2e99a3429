package policy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

// Tests use short limits; a bound is what they check, not speed.
const (
	hostileTimeout = 200 * time.Millisecond
	hostileMemory  = 128 << 20
	// hostileWall is what a refusal may take: waiting for the compile slot
	// and compiling are each bounded by the timeout, starting the sandbox
	// process by minSandboxStartup; the rest is slack for a loaded machine.
	hostileWall = 2*hostileTimeout + minSandboxStartup + 2*time.Second
)

var hostileCompiler = Compiler{CompileTimeout: hostileTimeout, CompileMemoryLimit: hostileMemory}

const (
	tookTooLong = "took longer than its limit of 200ms"
	tooMuchMem  = "needed more than its limit of 128 MiB of memory"
)

// exponentialDisjunction unifies n disjunctions of two structs: CUE expands
// the 2^n combinations (about 500 bytes for n = 22; minutes and more than
// 500 MiB unbounded).
func exponentialDisjunction(n int) string {
	var terms []string
	for i := range n {
		terms = append(terms, fmt.Sprintf("({a%d: 1} | {b%d: 1})", i, i))
	}
	return "spec: x: " + strings.Join(terms, " & ") + "\n"
}

// doubling is a chain of n fields each the concatenation of the previous
// one with itself: 16 bytes * 2^n.
func doubling(n int) string {
	var b strings.Builder
	b.WriteString("c0: \"xxxxxxxxxxxxxxxx\"\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "c%d: c%d + c%d\n", i, i-1, i-1)
	}
	return b.String()
}

// hostileCompileCases explode when compiled or when evaluated for any pod.
// Each must be refused within hostileWall with a message naming the limit;
// want lists acceptable limit messages (time or memory, whichever comes
// first on this machine).
var hostileCompileCases = []struct {
	name, typ, src string
	want           []string
}{
	{"exponential disjunction", "cue", exponentialDisjunction(22), []string{"the compilation " + tookTooLong}},
	{"comprehension over list.Range(0, 1e8)", "cue", "import \"list\"\nx: [for i in list.Range(0, 1e8, 1) {i}]\n",
		[]string{"the compilation " + tookTooLong, "the compilation " + tooMuchMem}},
	{"nested comprehensions of 1e10 steps", "cue", "import \"list\"\nx: [for i in list.Range(0, 1e5, 1) for j in list.Range(0, 1e5, 1) if i < 0 {i}]\n",
		[]string{"the compilation " + tookTooLong, "the compilation " + tooMuchMem}},
	// One allocation of 1 TB is a fatal "out of memory" for a Go process:
	// in-process it would crash the webhook at once, whatever the timeout.
	{"string multiplied to 1 TB", "cue", "a: \"x\" * 1000000\nb: a * 1000000\n", []string{"the compilation " + tooMuchMem}},
	{"strings.Repeat to 1 TB", "cue", "import \"strings\"\na: strings.Repeat(\"x\", 1000000)\nb: strings.Repeat(a, 1000000)\n",
		[]string{"the compilation " + tooMuchMem}},
	{"string doubled 40 times", "cue", doubling(40), []string{"the compilation " + tookTooLong, "the compilation " + tooMuchMem}},
	// These compile (the runaway part depends on the input) but explode
	// for any pod: the sandbox's evaluation for a sample pod refuses them.
	{"1 TB string built from the input", "cue", "spec: containers: [...{name: string}]\n_a: \"x\" * (1000000 + 0*len(spec.containers[0].name))\n_b: _a * 1000000\n",
		[]string{"evaluating the policy for a sample pod " + tooMuchMem}},
	{"comprehension sized by the input", "cue", "import \"list\"\nspec: containers: [...{name: string}]\nslow: [for i in list.Range(0, len(spec.containers)*1e5, 1) for j in list.Range(0, 1e5, 1) if i < 0 {i}]\n",
		[]string{"evaluating the policy for a sample pod " + tookTooLong, "evaluating the policy for a sample pod " + tooMuchMem}},
	{"rego comprehension of 1e10 steps", "rego", "package sigstore\nisCompliant { count([x | numbers.range(1, 100000)[x]; numbers.range(1, 100000)[_]; input.spec.containers[_]]) > 0 }\n",
		[]string{"evaluating the policy for a sample pod " + tookTooLong, "evaluating the policy for a sample pod " + tooMuchMem}},
}

func TestHostilePoliciesAreRefusedInBoundedTime(t *testing.T) {
	for _, tc := range hostileCompileCases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := hostileCompiler.Compile(newCIP("hostile", withBody(tc.typ, tc.src)))
			took := time.Since(start)
			if took > hostileWall {
				t.Errorf("refusing it took %s, more than %s", took, hostileWall)
			}
			var ipe *InvalidPolicyError
			if !errors.As(err, &ipe) {
				t.Fatalf("err = %v, want an *InvalidPolicyError: a hostile policy compiled", err)
			}
			if ipe.Policy != "hostile" || ipe.Reason != v1beta1.ReasonCompileError || ipe.Field != "spec.policy.data" {
				t.Errorf("Policy, Reason, Field = %q, %q, %q", ipe.Policy, ipe.Reason, ipe.Field)
			}
			prefix := "spec.policy.data: failed to compile the " + tc.typ + " policy: "
			if !strings.HasPrefix(ipe.Message, prefix) || !containsAny(ipe.Message, tc.want) {
				t.Errorf("message %q, want %q followed by one of %q", ipe.Message, prefix, tc.want)
			}
			if ipe.Transient != strings.Contains(ipe.Message, "took longer") {
				t.Errorf("Transient = %v for %q: time limits are retried, memory limits are not", ipe.Transient, ipe.Message)
			}
			t.Logf("%s: %s", took.Round(time.Millisecond), ipe.Message)
		})
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// A hostile body in an attestation is bounded as well; its error names the
// attestation's field.
func TestHostileAttestationPolicy(t *testing.T) {
	cip := newCIP("hostile", withAuthorities(v1beta1.Authority{
		Key:          &v1beta1.KeyRef{KMS: "gcpkms://k"},
		Attestations: []v1beta1.Attestation{{Name: "a", PredicateType: "https://x", Policy: &v1beta1.Policy{Type: "cue", Data: exponentialDisjunction(22)}}},
	}))
	_, err := hostileCompiler.Compile(cip)
	var ipe *InvalidPolicyError
	if !errors.As(err, &ipe) || ipe.Field != "spec.authorities[0].attestations.policy.data" || !strings.Contains(ipe.Message, tookTooLong) {
		t.Fatalf("err = %v, want the time limit on spec.authorities[0].attestations.policy.data", err)
	}
}

// A refused policy is a broken one: every pod it matches gets an error
// result naming it, a denial in enforce mode, never a pass.
func TestHostilePolicyDeniesPods(t *testing.T) {
	for _, mode := range []string{v1beta1.ModeEnforce, v1beta1.ModeWarn} {
		cip := newCIP("exploding", withCUE(exponentialDisjunction(22)), withMode(mode))
		_, err := hostileCompiler.Compile(cip)
		if err == nil {
			t.Fatal("a hostile policy compiled")
		}
		d := NewSet(nil, []*BrokenPolicy{NewBrokenPolicy(cip, err)}).Decide(context.Background(), obj(t, podYAML("nginx")), Options{})
		if len(d.Results) != 1 || d.Results[0].Result != ResultError {
			t.Fatalf("%s mode: results %+v, want one error", mode, d.Results)
		}
		if !strings.Contains(d.Results[0].Message, tookTooLong) {
			t.Errorf("%s mode: result message %q does not name the limit", mode, d.Results[0].Message)
		}
		switch mode {
		case v1beta1.ModeEnforce:
			if d.Allowed || !strings.Contains(d.DenyMessage, "failed policy: exploding") || !strings.Contains(d.DenyMessage, "spec.policy.data") {
				t.Errorf("enforce mode: decision %+v, want a denial naming the policy and the field", d)
			}
		case v1beta1.ModeWarn:
			if !d.Allowed || len(d.Warnings) != 1 {
				t.Errorf("warn mode: decision %+v, want an admission with a warning", d)
			}
		}
	}
}

// Self-referential, cyclic, recursive and deeply nested policies are
// ordinary: CUE finishes quickly with an error, or compiles a policy that
// decides like policy-controller's. They compile within the default limits.
func TestHostileButFiniteCUE(t *testing.T) {
	tests := []struct {
		name, src, err string
	}{
		{"structural cycle", "spec: a: b: spec.a\n", "structural cycle"},
		{"recursive definition", "#L: {next: #L}\nspec: #L\n", "structural cycle"},
		{"nesting 20000 deep", "spec: x: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n", "maximum nesting depth"},
		{"self reference", "spec: x: spec.x + 1\n", ""},
		{"optional recursion", "#L: {next?: #L}\nspec: x: #L & {next: next: next: {}}\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			p, err := Compile(newCIP("finite", withCUE(tc.src)))
			if took := time.Since(start); took > hostileWall {
				t.Errorf("compiling took %s", took)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "limit") {
					t.Fatalf("err = %v, want a compile error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Incomplete values pass plain Validate, as in policy-controller.
			d := NewSet([]*CompiledPolicy{p}, nil).Decide(context.Background(), obj(t, podYAML("nginx")), Options{PolicyTimeout: hostileTimeout})
			if !d.Allowed || d.Results[0].Result != ResultPass {
				t.Errorf("decision %+v", d)
			}
		})
	}
}

// Rego nested 200,000 deep is refused by OPA's parser (max parsing
// recursion depth, about 0.7s unbounded), not by a stack overflow.
func TestDeeplyNestedRego(t *testing.T) {
	src := "package sigstore\nx := " + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + "\nisCompliant = true\n"
	start := time.Now()
	_, err := Compiler{CompileTimeout: 30 * time.Second}.Compile(newCIP("deep", withRego(src)))
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("compiling took %s", took)
	}
	if err == nil || !strings.Contains(err.Error(), "max parsing recursion depth exceeded") {
		t.Fatalf("err = %v, want OPA's parser to refuse it", err)
	}
}

// Ordinary policies compile within the default limits and decide as before.
func TestOrdinaryPoliciesCompileWithinLimits(t *testing.T) {
	netAdmin := obj(t, podYAML("nginx")+"    securityContext: {capabilities: {add: [NET_ADMIN]}}\n  hostNetwork: true\n")
	for _, cip := range []*v1beta1.ClusterImagePolicy{
		newCIP("cue", withCUE("spec: hostNetwork: false\n")),
		newCIP("rego", withRego("package sigstore\nisCompliant { not input.spec.hostNetwork }")),
		readCIP(t, filepath.Join(repoRoot(t), "config", "samples", "cip.yaml")),
	} {
		p, err := Compile(cip)
		if err != nil {
			t.Fatalf("%s: %v", cip.Name, err)
		}
		d := NewSet([]*CompiledPolicy{p}, nil).Decide(context.Background(), netAdmin, Options{})
		if d.Allowed || d.Results[0].Result != ResultFail {
			t.Errorf("%s: decision %+v, want a failure", cip.Name, d)
		}
	}
}

// A policy that explodes only for some pods compiles (the sample pod is
// harmless); for the pods that set it off, its evaluation is stopped at
// PolicyTimeout: an error result naming the policy, a denial in enforce
// mode. Evaluated in-process, CUE cannot be interrupted: the evaluation goes
// on in the background (here a second or two) and its result is dropped,
// but no other pod waits for it or depends on it: the next pod is judged at
// once. (worker_test.go: with a WorkerPool the runaway is killed.)
func TestHostileCUEForSomePodsIsStoppedAtPolicyTimeout(t *testing.T) {
	cip := newCIP("slow-for-some", withCUE(slowForLongNames))
	p, err := Compile(cip)
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet([]*CompiledPolicy{p}, nil)
	harmless := obj(t, podYAML("nginx"))
	if d := set.Decide(context.Background(), harmless, Options{PolicyTimeout: 10 * time.Second}); !d.Allowed {
		t.Fatalf("a harmless pod: %+v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostileWall)
	defer cancel()
	d := set.Decide(ctx, slowPod(t), Options{PolicyTimeout: hostileTimeout})
	if ctx.Err() != nil {
		t.Fatalf("the decision outlived %s despite a %s bound", hostileWall, hostileTimeout)
	}
	if d.Allowed || len(d.Results) != 1 || d.Results[0].Result != ResultError {
		t.Fatalf("decision = %+v, want a denial with one error result", d)
	}
	if !strings.Contains(d.DenyMessage, "failed policy: slow-for-some") || !strings.Contains(d.DenyMessage, "longer than its limit of 200ms") {
		t.Errorf("denial %q does not name the policy and the limit", d.DenyMessage)
	}
	// Another pod, not in the cache, while the abandoned evaluation runs.
	other := obj(t, podYAML("busybox"))
	if d = set.Decide(ctx, other, Options{PolicyTimeout: hostileTimeout}); !d.Allowed {
		t.Errorf("while the abandoned evaluation runs: decision %+v, want the pod admitted", d)
	}
}

// slowForLongNames is a CUE policy whose steps grow with the fourth power
// of the first container's name: 81 for the sample pod's "app", 8.1e5 (most
// of a second) for a name of 30 (slowPod), far more for longer ones.
const slowForLongNames = `import "list"
spec: containers: [...{name: string}]
_n: len(spec.containers[0].name) * len(spec.containers[0].name)
slow: [for i in list.Range(0, _n, 1) for j in list.Range(0, _n, 1) if i < 0 {i}]
`

func slowPod(t testing.TB) *Object {
	return obj(t, strings.Replace(podYAML("nginx"), "name: c0", "name: "+strings.Repeat("x", 30), 1))
}
