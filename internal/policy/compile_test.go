package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, typ, src string
		contains       []string
	}{
		{"cue syntax", "cue", "spec: {\n  hostNetwork: \"x\n}", []string{"string literal not terminated (line 2, column 16)"}},
		{"cue undefined reference", "cue", "spec: hostNetwork: #Missing", []string{"reference \"#Missing\" not found (line 1, column 20)"}},
		{"cue conflicts with itself", "cue", "spec: hostNetwork: true & false", []string{"conflicting values"}},
		{"rego syntax", "rego", "package sigstore\nisCompliant {", []string{"sigstore.rego:2", "rego_parse_error"}},
		{"rego v1 syntax is not v0", "rego", "package sigstore\nisCompliant if { true }", []string{"sigstore.rego:2"}},
		{"rego package", "rego", "package other\nisCompliant = true", []string{"sigstore.rego:1: the package must be sigstore, not other"}},
		{"rego http.send", "rego", "package sigstore\nisCompliant { http.send({\"method\": \"get\", \"url\": \"https://example.com\"}) }", []string{"http.send"}},
		{"rego opa.runtime", "rego", "package sigstore\nisCompliant { opa.runtime() }", []string{"opa.runtime"}},
		{"rego net.lookup_ip_addr", "rego", "package sigstore\nisCompliant { net.lookup_ip_addr(\"example.com\") }", []string{"net.lookup_ip_addr"}},
		{"rego rand.intn", "rego", "package sigstore\nisCompliant { rand.intn(\"x\", 2) == 0 }", []string{"rand.intn"}},
		{"rego uuid.rfc4122", "rego", "package sigstore\nisCompliant { uuid.rfc4122(\"x\") }", []string{"uuid.rfc4122"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(newCIP("p", withBody(tc.typ, tc.src)))
			var ipe *InvalidPolicyError
			if !errors.As(err, &ipe) {
				t.Fatalf("err = %v, want *InvalidPolicyError", err)
			}
			if ipe.Reason != v1beta1.ReasonCompileError || ipe.Field != "spec.policy.data" {
				t.Errorf("Reason, Field = %q, %q", ipe.Reason, ipe.Field)
			}
			msg := ipe.Error()
			if want := "spec.policy.data: failed to compile the " + tc.typ + " policy: "; !strings.HasPrefix(msg, want) {
				t.Errorf("message %q does not start with %q", msg, want)
			}
			for _, c := range tc.contains {
				if !strings.Contains(msg, c) {
					t.Errorf("message %q does not contain %q", msg, c)
				}
			}
		})
	}
}

func TestCompileKeepsPureBuiltins(t *testing.T) {
	src := "package sigstore\nisCompliant { net.cidr_contains(\"10.0.0.0/8\", \"10.1.2.3\"); regex.match(\"^c\", input.spec.containers[0].name) }"
	d := decide(t, obj(t, podYAML("nginx")), Options{}, newCIP("p", withRego(src)))
	if d.Results[0].Result != ResultPass {
		t.Errorf("result = %+v", d.Results[0])
	}
}

func TestCompileAttestationPolicy(t *testing.T) {
	cip := newCIP("p", withAuthorities(v1beta1.Authority{
		Key:          &v1beta1.KeyRef{KMS: "gcpkms://k"},
		Attestations: []v1beta1.Attestation{{Name: "a", PredicateType: "https://x", Policy: &v1beta1.Policy{Type: "cue", Data: "a: \"x"}}},
	}))
	_, err := Compile(cip)
	var ipe *InvalidPolicyError
	if !errors.As(err, &ipe) || ipe.Field != "spec.authorities[0].attestations.policy.data" {
		t.Fatalf("err = %v", err)
	}
}

type fakeResolver map[string]string

func (f fakeResolver) ResolvePolicyBody(cip string, p *v1beta1.Policy) (string, error) {
	if body, ok := f[cip]; ok {
		return body, nil
	}
	return "", fmt.Errorf("configmap %q contains no data", p.ConfigMapRef.Name)
}

func TestPolicyBodyResolver(t *testing.T) {
	const body = `spec: hostNetwork: false`
	sum := sha256.Sum256([]byte(body))
	yes := true
	fromConfigMap := func(s *v1beta1.ClusterImagePolicySpec) {
		s.Policy = &v1beta1.Policy{Type: "cue", IncludeSpec: &yes, ConfigMapRef: &v1beta1.ConfigMapReference{Name: "cm", Key: "k"}}
	}
	fromRemote := func(sum string) func(s *v1beta1.ClusterImagePolicySpec) {
		return func(s *v1beta1.ClusterImagePolicySpec) {
			s.Policy = &v1beta1.Policy{Type: "cue", IncludeSpec: &yes, Remote: &v1beta1.RemotePolicy{URL: "https://example.com/p.cue", Sha256sum: sum}}
		}
	}
	tests := []struct {
		name     string
		compiler Compiler
		cip      *v1beta1.ClusterImagePolicy
		err      string
	}{
		{"offline configMapRef", Compiler{}, newCIP("p", fromConfigMap),
			"spec.policy.configMapRef: policy body from configMapRef is not available offline"},
		{"offline remote", Compiler{}, newCIP("p", fromRemote(hex.EncodeToString(sum[:]))),
			"spec.policy.remote: policy body from remote is not available offline"},
		{"resolved configMapRef", Compiler{Resolver: fakeResolver{"p": body}}, newCIP("p", fromConfigMap), ""},
		{"resolver error", Compiler{Resolver: fakeResolver{}}, newCIP("p", fromConfigMap), `spec.policy.configMapRef: configmap "cm" contains no data`},
		{"remote checked", Compiler{Resolver: fakeResolver{"p": body}}, newCIP("p", fromRemote(hex.EncodeToString(sum[:]))), ""},
		{"remote sha256 mismatch", Compiler{Resolver: fakeResolver{"p": body}}, newCIP("p", fromRemote(strings.Repeat("0", 64))),
			"failed to check sha256sum from policy remote: " + strings.Repeat("0", 64) + " got " + hex.EncodeToString(sum[:])},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.compiler.Compile(tc.cip)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				d := NewSet([]*CompiledPolicy{p}, nil).Decide(t.Context(), obj(t, podYAML("nginx")+"  hostNetwork: true\n"), Options{})
				if d.Results[0].Result != ResultFail {
					t.Errorf("resolved policy was not applied: %+v", d.Results[0])
				}
				return
			}
			var ipe *InvalidPolicyError
			if !errors.As(err, &ipe) || ipe.Reason != ReasonBodyUnavailable {
				t.Fatalf("err = %#v, want ReasonBodyUnavailable", err)
			}
			if !strings.Contains(ipe.Error(), tc.err) {
				t.Errorf("message %q does not contain %q", ipe.Error(), tc.err)
			}
		})
	}
}

const largePolicySize = 1 << 20

// largePolicy is a CUE policy of 1 MiB that forbids the host network.
func largePolicy() *v1beta1.ClusterImagePolicy {
	var b strings.Builder
	b.WriteString("spec: {\n")
	for i := 0; b.Len() < largePolicySize; i++ {
		fmt.Fprintf(&b, "\tfield%d?: \"value-%d\" | \"other-%d\"\n", i, i, i)
	}
	b.WriteString("\thostNetwork: false\n}\n")
	yes := true
	return newCIP("large", func(s *v1beta1.ClusterImagePolicySpec) {
		s.Policy = &v1beta1.Policy{Type: "cue", IncludeSpec: &yes, Data: b.String()}
	})
}

// A 1 MiB policy compiles and decides in bounded time: size alone is no way
// to stall the webhook. CUE's cost grows with the square of a struct's
// fields: about 1.2s of CPU to compile this one (twice: in the sandbox, then
// in-process) and as much to unify it with each new input, so the limits
// here are generous; the next test holds compilation to the default limit.
// With the default --policy-timeout of 2s, the first evaluation of each
// distinct input may be stopped at the limit on a loaded machine: an error
// result, a denial in enforce mode.
func TestLargePolicy(t *testing.T) {
	start := time.Now()
	p, err := Compiler{CompileTimeout: 20 * time.Second}.Compile(largePolicy())
	if err != nil {
		t.Fatalf("a 1 MiB policy: %v", err)
	}
	obj, err := DecodeObject([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"ubuntu"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	d := NewSet([]*CompiledPolicy{p}, nil).Decide(context.Background(), obj, Options{PolicyTimeout: 20 * time.Second})
	if took := time.Since(start); took > 45*time.Second {
		t.Errorf("compiling and deciding a 1 MiB policy took %s", took)
	}
	if d.Allowed || !strings.Contains(d.DenyMessage, "spec.hostNetwork") {
		t.Errorf("decision %+v, want a denial naming spec.hostNetwork", d)
	}
}

// Under the default limits a 1 MiB policy compiles, or on a loaded machine
// is refused with the time limit (and compiled again later by the policy
// store: the error is transient), within a bounded time either way.
func TestLargePolicyDefaultLimits(t *testing.T) {
	start := time.Now()
	_, err := Compile(largePolicy())
	took := time.Since(start)
	// The compile slot, starting the sandbox and the sandbox are bounded;
	// the in-process compilation takes about what the sandbox took.
	if bound := 3*DefaultCompileTimeout + minSandboxStartup + 5*time.Second; took > bound {
		t.Errorf("compiling took %s, more than %s", took, bound)
	}
	if err == nil {
		return
	}
	var ipe *InvalidPolicyError
	if !errors.As(err, &ipe) || !ipe.Transient || !strings.Contains(ipe.Message, "took longer than its limit of 2s") {
		t.Fatalf("err = %v, want success or the time limit", err)
	}
	t.Logf("refused in %s: %s", took, err)
}
