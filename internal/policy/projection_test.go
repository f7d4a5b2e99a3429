package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

func TestCUEProjection(t *testing.T) {
	tests := []struct {
		name, src string
		want      string // "" when the policy reads the whole input
		top       []string
	}{
		{"fields and lists", `spec: containers: [...{securityContext: capabilities: add: [...#A]}]
#A: "X" | "Y"`, "{spec:{containers:[{securityContext:{capabilities:{add:[*]}}}]}}", []string{"spec"}},
		{"a definition is a leaf", `#V: {name: string}
spec: volumes: [...#V]`, "{spec:{volumes:[*]}}", []string{"spec"}},
		{"conjunctions merge", `spec: {a: 1} & {b: [...{c: 2}]}`, "{spec:{a:*,b:[{c:*}]}}", []string{"spec"}},
		{"a conjunction with a definition is whole", `#D: {a: int, ...}
spec: #D & {b: 1}`, "{spec:*}", []string{"spec"}},
		{"repeated fields merge", "spec: a: 1\nmetadata: labels: x: \"y\"\nspec: b: 2", "{metadata:{labels:{x:*}},spec:{a:*,b:*}}", []string{"spec", "metadata"}},
		{"quoted labels", `"spec": "host-network": false`, "{spec:{host-network:*}}", []string{"spec"}},
		{"fixed-length list is whole", `spec: containers: [{name: "a"}]`, "{spec:{containers:*}}", []string{"spec"}},
		{"disjunction of structs is whole", `spec: {a: 1} | {b: 2}`, "{spec:*}", []string{"spec"}},
		{"embedded definition is whole", `#D: {...}
spec: { #D, a: 1 }`, "{spec:*}", []string{"spec"}},
		{"bounds and types", `spec: {runAsUser: != 0, name: string, n: int & >0}`, "{spec:{n:*,name:*,runAsUser:*}}", []string{"spec"}},
		{"hidden fields are not data", `spec: {_x: 1, a: 2}`, "{spec:{a:*}}", []string{"spec"}},

		{"if guard", `spec: containers: [...{ if securityContext.privileged { name: "no" } }]`, "", nil},
		{"for comprehension", `spec: { for k, v in containers { x: v } }`, "", nil},
		{"reference to a data field", `spec: a: metadata.name`, "", nil},
		{"reference to a sibling field", `spec: {a: int, b: a}`, "", nil},
		{"definition reading data", "#C: {x: spec.a}\nspec: c: [...#C]", "", nil},
		{"pattern constraint", `spec: [string]: int`, "", nil},
		{"dynamic label", `spec: ("a" + "b"): 1`, "", nil},
		{"let clause", "let x = 1\nspec: a: x", "", nil},
		{"import", "import \"list\"\nspec: a: list.Contains([1], 1)", "", nil},
		{"alias", `spec: X={a: X.b}`, "", nil},
		{"embedding at the root", `#D: {...}
#D`, "", nil},
		{"self", `spec: {a: 1, b: self.a}`, "", nil},
		{"optional top-level field", `spec?: {a: 1}`, "", nil},
		{"shadowed predeclared name", `spec: {string: 1, a: string}`, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, top, ok := cueProjection(tc.src)
			if tc.want == "" {
				if ok {
					t.Fatalf("projection %v, want the whole input", p)
				}
				return
			}
			if !ok {
				t.Fatal("whole input, want a projection")
			}
			if got := p.String(); got != tc.want {
				t.Errorf("projection %s, want %s", got, tc.want)
			}
			if fmt.Sprint(top) != fmt.Sprint(tc.top) {
				t.Errorf("top fields %v, want %v", top, tc.top)
			}
		})
	}
}

func TestRegoProjection(t *testing.T) {
	tests := []struct {
		name, src string
		want      string // "" when the module reads the whole input
	}{
		{"static refs", `isCompliant { input.spec.hostNetwork == false; input.metadata.labels.app == "web" }`,
			"{metadata:{labels:{app:*}},spec:{hostNetwork:*}}"},
		{"wildcards", `isCompliant { c := input.spec.containers[_]; c.securityContext.privileged == false }`,
			"{spec:{containers:[*]}}"},
		{"number and variable keys", `isCompliant { input.spec.containers[0].name == "a"; some i; input.spec.volumes[i].name }`,
			"{spec:{containers:[{name:*}],volumes:[{name:*}]}}"},
		{"a computed key reads every value", `isCompliant { k := "a"; input.spec[concat("", [k, "b"])] }`, "{spec:[*]}"},
		{"import", "import input.spec\nisCompliant { spec.hostPID == false }", "{spec:{hostPID:*}}"},
		{"functions", `isCompliant { ok(input.spec) }
ok(s) { s.hostPID == false }`, "{spec:*}"},
		{"authority matches", `isCompliant { input.authorityMatches["authority-0"].static }`, "{authorityMatches:{authority-0:{static:*}}}"},
		{"input itself", `isCompliant { x := input; x.spec.hostPID == false }`, ""},
		{"walk", `isCompliant { walk(input, [p, v]); v == 1 }`, ""},
		{"with", `isCompliant { ok with input as {} }
ok { input.a }`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := compileRego("package sigstore\n" + tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if e.proj != nil {
					t.Fatalf("projection %v, want the whole input", e.proj)
				}
				return
			}
			if e.proj == nil {
				t.Fatal("whole input, want a projection")
			}
			if got := e.proj.String(); got != tc.want {
				t.Errorf("projection %s, want %s", got, tc.want)
			}
		})
	}
}

func TestAppendJSONIsEncodingJSON(t *testing.T) {
	for _, v := range []any{
		map[string]any{"b": []any{json.Number("1"), json.Number("-2.50"), true, nil, "x<y>&\"z\"\n\u2028é"},
			"a": map[string]any{"z": 1.5, "y": int64(7), "é": "\xff"}},
		[]any{}, map[string]any{}, "", json.Number(""),
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSON(nil, v); string(got) != string(want) {
			t.Errorf("appendJSON = %s, want %s", got, want)
		}
	}
}

// TestProjectionDifferential judges every object of the corpus with every
// policy twice, with the policy's projection (cached, as in production) and
// with the whole input (uncached, as policy-controller does), and requires
// the same results, messages and explanations.
func TestProjectionDifferential(t *testing.T) {
	seed := sharedDir(t, "seed")
	catalog := sharedDir(t, "conformance", "policy-catalog")

	var cips []*v1beta1.ClusterImagePolicy
	cips = append(cips, readCIP(t, filepath.Join(seed, "cip.yaml")))
	entries, err := os.ReadDir(filepath.Join(catalog, "policies"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		cips = append(cips, readCIP(t, filepath.Join(catalog, "policies", e.Name())))
	}
	if len(cips) != 20 {
		t.Fatalf("%d policies, want the seed's and the catalog's 19", len(cips))
	}
	// The same policies for every kind and with every part of the input,
	// so that workloads are judged too.
	for _, c := range cips[:len(cips):len(cips)] {
		c := c.DeepCopy()
		c.Name += "-all-kinds"
		c.Spec.Match = nil
		yes := true
		c.Spec.Policy.IncludeObjectMeta, c.Spec.Policy.IncludeTypeMeta = &yes, &yes
		cips = append(cips, c)
	}
	cips = append(cips, differentialPolicies()...)

	objects := differentialObjects(t, seed, catalog)
	t.Logf("%d policies, %d objects", len(cips), len(objects))

	ctx := context.Background()
	projected, native, nativeDecided, nativeFailed := 0, 0, 0, 0
	for _, cip := range cips {
		withProj := mustCompile(t, cip)
		// The same body again: compiled in-process, the sandbox has
		// already run it once.
		inProcess := Compiler{CompileTimeout: -1}
		// CUE on the projection, without the native check.
		noNative, err := inProcess.Compile(cip)
		if err != nil {
			t.Fatal(err)
		}
		noNative.cache = nil
		whole, err := inProcess.Compile(cip)
		if err != nil {
			t.Fatal(err)
		}
		whole.proj, whole.cache = nil, nil
		if e, ok := whole.body.(*cueEvaluator); ok {
			e.reference = true
			noNative.body.(*cueEvaluator).native = nil
		}
		if withProj.proj != nil {
			projected++
		}
		nc := (*nativeCheck)(nil)
		if e, ok := withProj.body.(*cueEvaluator); ok && e.native != nil {
			native++
			nc = e.native
		}
		for _, o := range objects {
			want := NewSet([]*CompiledPolicy{whole}, nil).Decide(ctx, o.obj, Options{})
			for _, p := range []*CompiledPolicy{withProj, noNative} {
				got := NewSet([]*CompiledPolicy{p}, nil).Decide(ctx, o.obj, Options{})
				if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
					t.Errorf("%s on %s:\nprojected %v (native %v):\n%#v\nwhole input:\n%#v",
						cip.Name, o.name, p.proj, p == withProj && nc != nil, got, want)
				}
			}
			if nc != nil && withProj.matcher.appliesTo(o.obj) {
				if err, ok := nc.evaluate(newInputBuilder(o.obj).build(withProj)); ok {
					nativeDecided++
					if err != nil {
						nativeFailed++
					}
				}
			}
		}
	}
	t.Logf("%d policies projected, %d with a native check, which decided %d objects (%d failures)",
		projected, native, nativeDecided, nativeFailed)
	if projected < 30 || native < 16 || nativeDecided < 1000 || nativeFailed < 50 {
		t.Errorf("projected %d, native %d, decided natively %d: the corpus no longer exercises them", projected, native, nativeDecided)
	}
}

type namedObject struct {
	name string
	obj  *Object
}

func differentialObjects(t *testing.T, seed, catalog string) []namedObject {
	var out []namedObject
	var pods []*corev1.Pod
	for _, dir := range []string{seed, filepath.Join(catalog, "testdata")} {
		for _, p := range readPods(t, dir) {
			pods = append(pods, p)
			out = append(out, namedObject{"pod " + p.Name + " " + p.Spec.Containers[0].Image, newBenchPod(t, p).obj})
		}
	}
	if len(pods) < 50 {
		t.Fatalf("%d pods, want the seed's and the catalog's", len(pods))
	}
	for i, p := range pods {
		// Replicas as the API server stores them, with managedFields.
		r := realistic(p, i, i, uint(i))
		r.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
		out = append(out, namedObject{fmt.Sprintf("replica %d", i), newBenchPod(t, r).obj})
		if i%5 != 0 {
			continue
		}
		// Workloads carrying the pod.
		tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}}, Spec: p.Spec}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("deploy-%d", i), Namespace: "ns"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, Template: tmpl}}
		cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cron-%d", i)},
			Spec: batchv1.CronJobSpec{Schedule: "0 0 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
		do, err := ObjectFromRuntime(d)
		if err != nil {
			t.Fatal(err)
		}
		co, err := ObjectFromRuntime(cj)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, namedObject{d.Name, do}, namedObject{cj.Name, co})
	}
	// Objects with values of unexpected types where policies read, as an
	// admission request could carry them.
	for i, spec := range []string{
		`{"containers": "nope"}`,
		`{"containers": [{"name": "a", "image": "x", "securityContext": [1, 2]}]}`,
		`{"containers": [{"name": "a", "image": "x", "securityContext": {"capabilities": {"add": [1, true, null, {"a": 1}, ["NET_ADMIN"], "CHOWN", "SYS_ADMIN"]}}}]}`,
		`{"containers": [{"name": "a", "image": "x", "securityContext": {"capabilities": "all", "privileged": "true", "runAsUser": 0.0}}]}`,
		`{"containers": [{"name": "a", "image": "x", "ports": [{"hostPort": 80}, {"hostPort": "0"}, 7]}], "hostNetwork": "true", "volumes": {"a": 1}}`,
		`{"containers": [{"name": "a", "image": "x", "securityContext": {"runAsUser": 12345678901234567890123}}], "securityContext": {"sysctls": [{"name": "kernel.msgmax"}, {"name": 1}]}}`,
		`{"containers": [{"name": "a", "image": "x", "securityContext": {"runAsUser": -1, "procMount": "Unmasked\u00e9\"", "seLinuxOptions": {"type": "x\ny", "user": -0.5e3}, "capabilities": {"add": ["\u00e9", "NET_\"ADMIN"]}}}]}`,
		`{"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_TIME"]}, "privileged": true, "procMount": "Unmasked"}}], "initContainers": [{"name": "i", "image": "z", "securityContext": {"capabilities": {"add": ["BPF"]}}}]}`,
		`null`,
	} {
		var content map[string]any
		raw := `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "odd", "labels": {"app": "web"}, "annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}}, "spec": ` + spec + `}`
		content, err := decodeJSONMap([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		o, err := NewObject(content)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, namedObject{fmt.Sprintf("odd pod %d", i), o})
	}
	return out
}

// differentialPolicies read metadata, typemeta, authorityMatches and
// workload specs, and fail in several places at once.
func differentialPolicies() []*v1beta1.ClusterImagePolicy {
	caps := `#Allowed: "AUDIT_WRITE" | "CHOWN" | "KILL"
`
	var out []*v1beta1.ClusterImagePolicy
	for i, src := range []string{
		`metadata: labels: app: "web"
typemeta: kind: "Pod"`,
		`metadata: {name: !="yolo"}
spec: containers: [...{securityContext: capabilities: add: [...#Allowed]}]
spec: initContainers: [...{securityContext: capabilities: add: [...#Allowed]}]
` + caps,
		`spec: template: spec: containers: [...{securityContext: capabilities: add: [...#Allowed]}]
spec: jobTemplate: spec: template: spec: containers: [...{name: =~"^[a-z]+$"}]
` + caps,
		`authorityMatches: "authority-0": static: true
spec: containers: [...{image: !~"ubuntu"}]`,
		`#C: {securityContext?: {privileged?: false, ...}, ...}
spec: {containers: [...#C], hostNetwork: false | *false}`,
	} {
		out = append(out, newCIP(fmt.Sprintf("extra-cue-%d", i), withCUE(src)))
	}
	for i, src := range []string{
		`isCompliant { input.metadata.labels.app == "web"; input.typemeta.kind == "Pod" }`,
		`isCompliant[r] {
			some i
			c := input.spec.containers[i]
			r := {"result": count(object.get(c, ["securityContext", "capabilities", "add"], [])) == 0, "error": sprintf("container %v adds capabilities", [c.name]), "warning": ""}
		}`,
		`default isCompliant = false
isCompliant { input.authorityMatches["authority-0"].static; not input.spec.hostNetwork }`,
	} {
		out = append(out, newCIP(fmt.Sprintf("extra-rego-%d", i), withRego("package sigstore\n"+src)))
	}
	return out
}

// FuzzProjectionDifferential decides random pods with the catalog policies
// that have native checks and projections, and with the whole input as
// cosign does, and requires the same decisions.
func FuzzProjectionDifferential(f *testing.F) {
	catalog := sharedDir(f, "conformance", "policy-catalog")
	type pair struct{ projected, whole *CompiledPolicy }
	var pairs []pair
	for _, name := range []string{
		"non-default-capabilities-cue.yaml", "privileged-containers-cue.yaml", "host-ports-cue.yaml",
		"non-default-proc-mount-cue.yaml", "unsafe-sysctls-mask-cue.yaml", "hostpath-volumes-cue.yaml",
		"host-namespaces-cue.yaml", "host-process-cue.yaml", "selinux-restrictions-cue.yaml",
		"disallow-runasuser-root-cue.yaml", "host-ports-rego.yaml",
	} {
		cip := readCIP(f, filepath.Join(catalog, "policies", name))
		projected, whole := mustCompile(f, cip), mustCompile(f, cip)
		whole.proj, whole.cache = nil, nil
		if e, ok := whole.body.(*cueEvaluator); ok {
			e.reference = true
		}
		pairs = append(pairs, pair{projected, whole})
	}
	for _, p := range readPods(f, filepath.Join(catalog, "testdata")) {
		raw, err := json.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"x","securityContext":{"capabilities":{"add":["NET_ADMIN","CHOWN"]},"privileged":true}}]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		content, err := decodeJSONMap(raw)
		if err != nil {
			return
		}
		o, err := NewObject(content)
		if err != nil || o.Kind != "Pod" {
			return
		}
		ctx := context.Background()
		for _, p := range pairs {
			got := NewSet([]*CompiledPolicy{p.projected}, nil).Decide(ctx, o, Options{})
			want := NewSet([]*CompiledPolicy{p.whole}, nil).Decide(ctx, o, Options{})
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
				t.Fatalf("%s on %s:\nprojected:\n%#v\nwhole input:\n%#v", p.projected.Name, raw, got, want)
			}
		}
	})
}
