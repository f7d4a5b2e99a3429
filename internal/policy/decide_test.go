package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

const deploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {tier: front}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: nginx
`

const cronJobYAML = `apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: job
            image: busybox
`

func TestMatch(t *testing.T) {
	pods := v1beta1.MatchResource{Version: "v1", Resource: "pods"}
	selector := func(m v1beta1.MatchResource, k, v string) v1beta1.MatchResource {
		m.ResourceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
		return m
	}
	tests := []struct {
		name  string
		match []v1beta1.MatchResource
		obj   string
		want  bool
	}{
		{"no match applies to pods", nil, podYAML("nginx"), true},
		{"no match applies to deployments", nil, deploymentYAML, true},
		{"pods", []v1beta1.MatchResource{pods}, podYAML("nginx"), true},
		{"pods only", []v1beta1.MatchResource{pods}, deploymentYAML, false},
		{"any version", []v1beta1.MatchResource{{Group: "apps", Version: "*", Resource: "deployments"}}, deploymentYAML, true},
		{"other version", []v1beta1.MatchResource{{Group: "apps", Version: "v2", Resource: "deployments"}}, deploymentYAML, false},
		{"group must be equal", []v1beta1.MatchResource{{Version: "v1", Resource: "deployments"}}, deploymentYAML, false},
		{"cronjobs", []v1beta1.MatchResource{{Group: "batch", Version: "v1", Resource: "cronjobs"}}, cronJobYAML, true},
		{"any entry", []v1beta1.MatchResource{pods, {Group: "apps", Version: "v1", Resource: "deployments"}}, deploymentYAML, true},
		{"selector matches", []v1beta1.MatchResource{selector(pods, "app", "web")}, podYAML("nginx"), true},
		{"selector does not match", []v1beta1.MatchResource{selector(pods, "app", "db")}, podYAML("nginx"), false},
		{"selector reads the object's own labels, not the template's",
			[]v1beta1.MatchResource{selector(v1beta1.MatchResource{Group: "apps", Version: "v1", Resource: "deployments"}, "app", "web")}, deploymentYAML, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(t, obj(t, tc.obj), Options{NoMatchPolicy: NoMatchAllow}, newCIP("p", withMatch(tc.match...)))
			_, got := results(d)["p"]
			if got != tc.want {
				t.Errorf("policy applies = %v, want %v (results %+v)", got, tc.want, d.Results)
			}
		})
	}
}

func TestAuthorities(t *testing.T) {
	pass, fail := staticAuth("pass", ""), staticAuth("fail", "nope")
	key := v1beta1.Authority{Key: &v1beta1.KeyRef{KMS: "gcpkms://k"}}
	keyless := v1beta1.Authority{Keyless: &v1beta1.KeylessRef{URL: "https://fulcio.example", Identities: []v1beta1.Identity{{Issuer: "i", Subject: "s"}}}}
	tests := []struct {
		name        string
		authorities []v1beta1.Authority
		want        string
		message     string
	}{
		{"static pass", []v1beta1.Authority{pass}, ResultPass, ""},
		{"static fail", []v1beta1.Authority{fail}, ResultFail, "nginx disallowed by static policy: nope"},
		{"any authority suffices", []v1beta1.Authority{fail, pass}, ResultPass, ""},
		{"KMS is not supported", []v1beta1.Authority{key}, ResultError, "nginx authority authority-0: key.kms gcpkms://k: KMS keys are not supported yet"},
		{"keyless without a verifier is an error", []v1beta1.Authority{keyless}, ResultError,
			"nginx signature keyless validation failed for authority authority-0 for nginx: no signature verifier is configured"},
		{"keyless or static pass", []v1beta1.Authority{keyless, pass}, ResultPass, ""},
		{"static fail or unknown is unknown", []v1beta1.Authority{fail, keyless}, ResultError,
			"nginx disallowed by static policy: nope signature keyless validation failed for authority authority-1 for nginx: no signature verifier is configured"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(t, obj(t, podYAML("nginx")), Options{}, newCIP("p", withAuthorities(tc.authorities...)))
			r := d.Results[0]
			if r.Result != tc.want {
				t.Fatalf("result = %s, want %s: %s", r.Result, tc.want, r.Message)
			}
			if !strings.Contains(r.Message, tc.message) {
				t.Errorf("message %q does not contain %q", r.Message, tc.message)
			}
			if d.Allowed != (tc.want == ResultPass) {
				t.Errorf("Allowed = %v", d.Allowed)
			}
		})
	}
}

func TestNoAuthoritiesFailClosed(t *testing.T) {
	p, err := Compiler{AllowEmptyAuthorities: true}.Compile(newCIP("open", withAuthorities()))
	if err != nil {
		t.Fatal(err)
	}
	d := NewSet([]*CompiledPolicy{p}, nil).Decide(t.Context(), obj(t, podYAML("nginx")), Options{})
	if d.Allowed || d.Results[0].Result != ResultFail {
		t.Fatalf("decision = %+v, want a denial", d)
	}
	if !strings.Contains(d.DenyMessage, "policy has no authorities") {
		t.Errorf("DenyMessage = %q", d.DenyMessage)
	}
}

func TestEveryMatchingPolicyMustPass(t *testing.T) {
	d := decide(t, obj(t, podYAML("nginx")), Options{},
		newCIP("b-allows"),
		newCIP("a-denies", withAuthorities(staticAuth("fail", "no"))),
		newCIP("c-other-images", withGlobs("ghcr.io/**")))
	if d.Allowed {
		t.Fatal("allowed, want denied")
	}
	want := map[string]string{"a-denies": ResultFail, "b-allows": ResultPass}
	if got := results(d); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("results = %v, want %v", got, want)
	}
	if d.Results[0].Policy != "a-denies" || d.Results[1].Policy != "b-allows" {
		t.Errorf("results not sorted by policy: %+v", d.Results)
	}
	if want := "failed policy: a-denies: spec.containers[0].image\nnginx disallowed by static policy: no"; d.DenyMessage != want {
		t.Errorf("DenyMessage = %q, want %q", d.DenyMessage, want)
	}
}

func TestWarnAndEnforce(t *testing.T) {
	deny := withAuthorities(staticAuth("fail", "no"))
	o := obj(t, podYAML("nginx"))

	d := decide(t, o, Options{}, newCIP("w", withMode("warn"), deny))
	if !d.Allowed || d.DenyMessage != "" || d.Results[0].Result != ResultWarn {
		t.Fatalf("warn mode: %+v", d)
	}
	if want := []string{"failed policy: w: spec.containers[0].image\nnginx disallowed by static policy: no"}; fmt.Sprint(d.Warnings) != fmt.Sprint(want) {
		t.Errorf("Warnings = %q, want %q", d.Warnings, want)
	}

	// Mixed: the enforce failure denies, the warn failure only warns, and the
	// outcome is the same every time (policy-controller's is not).
	set := NewSet([]*CompiledPolicy{
		mustCompile(t, newCIP("e", deny)), mustCompile(t, newCIP("w", withMode("warn"), deny)),
	}, nil)
	first := set.Decide(t.Context(), o, Options{})
	if first.Allowed || first.DenyMessage != "failed policy: e: spec.containers[0].image\nnginx disallowed by static policy: no" {
		t.Errorf("DenyMessage = %q", first.DenyMessage)
	}
	if len(first.Warnings) != 1 || !strings.HasPrefix(first.Warnings[0], "failed policy: w: ") {
		t.Errorf("Warnings = %q", first.Warnings)
	}
	for range 20 {
		if again := set.Decide(t.Context(), o, Options{}); fmt.Sprint(again) != fmt.Sprint(first) {
			t.Fatalf("decision changed:\n%+v\n%+v", again, first)
		}
	}
}

func TestNoMatchPolicy(t *testing.T) {
	o := obj(t, podYAML("ghcr.io/a/covered", "docker.io/uncovered"))
	ghcr := newCIP("ghcr", withGlobs("ghcr.io/**"))
	msg := "no matching policies: spec.containers[1].image\ndocker.io/uncovered"
	tests := []struct {
		policy   NoMatchPolicy
		result   string
		allowed  bool
		warnings int
	}{
		{"", ResultFail, false, 0},
		{NoMatchDeny, ResultFail, false, 0},
		{NoMatchWarn, ResultWarn, true, 1},
		{NoMatchAllow, ResultSkip, true, 0},
	}
	for _, tc := range tests {
		t.Run(string(tc.policy), func(t *testing.T) {
			d := decide(t, o, Options{NoMatchPolicy: tc.policy}, ghcr)
			want := map[string]string{"ghcr": ResultPass, NoMatchingPolicies: tc.result}
			if got := results(d); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("results = %v, want %v", got, want)
			}
			if d.Allowed != tc.allowed || len(d.Warnings) != tc.warnings {
				t.Errorf("Allowed = %v, Warnings = %q", d.Allowed, d.Warnings)
			}
			if !tc.allowed && d.DenyMessage != msg {
				t.Errorf("DenyMessage = %q, want %q", d.DenyMessage, msg)
			}
			if tc.warnings > 0 && d.Warnings[0] != msg {
				t.Errorf("Warnings = %q, want %q", d.Warnings, msg)
			}
			if d.Results[1].Message != msg {
				t.Errorf("Message = %q", d.Results[1].Message)
			}
		})
	}
	if _, err := ParseNoMatchPolicy("maybe"); err == nil {
		t.Error("ParseNoMatchPolicy accepted maybe")
	}
}

func TestWorkloadPathPrefixes(t *testing.T) {
	deny := newCIP("deny", withAuthorities(staticAuth("fail", "no")))
	tests := []struct {
		name, obj, want string
	}{
		{"deployment", deploymentYAML, "failed policy: deny: spec.template.spec.containers[0].image\nnginx disallowed by static policy: no"},
		{"cronjob", cronJobYAML, "failed policy: deny: spec.jobTemplate.spec.template.spec.containers[0].image\nbusybox disallowed by static policy: no"},
		{"pod: init, ephemeral and image volumes", `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers: [{name: i, image: init}]
  containers: [{name: c, image: app}]
  ephemeralContainers: [{name: e, image: debug}]
  volumes: [{name: v, image: {reference: data}}]
`, "failed policy: deny: spec.containers[0].image\napp disallowed by static policy: no\n" +
			"failed policy: deny: spec.volumes[0].image\ndata disallowed by static policy: no\n" +
			"failed policy: deny: spec.ephemeralContainers[0].image\ndebug disallowed by static policy: no\n" +
			"failed policy: deny: spec.initContainers[0].image\ninit disallowed by static policy: no"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(t, obj(t, tc.obj), Options{}, deny)
			if d.DenyMessage != tc.want {
				t.Errorf("DenyMessage:\n%s\nwant:\n%s", d.DenyMessage, tc.want)
			}
		})
	}
}

func TestMessagesMerge(t *testing.T) {
	o := obj(t, `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers: [{name: i, image: same}]
  containers: [{name: a, image: same}, {name: b, image: other}, {name: c, image: same}]
`)
	d := decide(t, o, Options{}, newCIP("deny", withAuthorities(staticAuth("fail", "no"))))
	want := "failed policy: deny: spec.containers[1].image\nother disallowed by static policy: no\n" +
		"failed policy: deny: spec.containers[0].image, spec.containers[2].image, spec.initContainers[0].image\nsame disallowed by static policy: no"
	if d.DenyMessage != want {
		t.Errorf("DenyMessage:\n%s\nwant:\n%s", d.DenyMessage, want)
	}
}

func TestFieldErrorFormatting(t *testing.T) {
	fe := fieldErrors{
		{Message: "b", Paths: []string{"z"}},
		{Message: "a", Paths: []string{"y"}, Details: "d"},
		{Message: "b", Paths: []string{"x"}},
		{Message: "a", Paths: []string{"w"}, Details: "c"},
		{Message: "no paths"},
	}
	want := "a: w\nc\na: y\nd\nb: x, z\nno paths: "
	if got := fe.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestCUESemantics(t *testing.T) {
	o := obj(t, `apiVersion: v1
kind: Pod
metadata: {name: p, labels: {app: web}}
spec:
  serviceAccountName: default
  containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]
`)
	tests := []struct {
		name, cue string
		pass      bool
		message   string
	}{
		{"missing field passes", `spec: hostNetwork: false`, true, ""},
		{"non-concrete passes", `spec: nodeName: string`, true, ""},
		{"conflict fails", `spec: serviceAccountName: "non-default"`, false,
			`failed evaluating cue policy for ClusterImagePolicy: failed to evaluate the policy with error: spec.serviceAccountName: conflicting values "default" and "non-default"`},
		{"bounds", `spec: containers: [...{ports: [...{containerPort: >1024}]}]`, false, "spec.containers.0.ports.0.containerPort: invalid value 80 (out of bound >1024)"},
		{"numbers are integers", `spec: containers: [...{ports: [...{containerPort: int}]}]`, true, ""},
		{"pods get typemeta", `typemeta: {kind: "Pod", apiVersion: "v1"}`, true, ""},
		{"typemeta conflict", `typemeta: kind: "Job"`, false, `typemeta.kind: conflicting values "Pod" and "Job"`},
		{"metadata", `metadata: labels: app: "db"`, false, `metadata.labels.app: conflicting values "web" and "db"`},
		{"authority matches", `authorityMatches: "authority-0": static: true`, true, ""},
		{"authority matches conflict", `authorityMatches: "authority-0": static: false`, false, `authorityMatches."authority-0".static: conflicting values true and false`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(t, o, Options{}, newCIP("p", withCUE(tc.cue)))
			r := d.Results[0]
			if (r.Result == ResultPass) != tc.pass {
				t.Fatalf("result = %s, want pass %v: %s", r.Result, tc.pass, r.Message)
			}
			if !tc.pass && r.Result != ResultFail {
				t.Errorf("result = %s, want fail", r.Result)
			}
			if !strings.Contains(r.Message, tc.message) {
				t.Errorf("message %q does not contain %q", r.Message, tc.message)
			}
		})
	}
}

func TestIncludeFlags(t *testing.T) {
	// Without the include flags the policy sees only authorityMatches, so a
	// constraint on spec finds nothing to conflict with.
	cip := newCIP("p", withCUE(`spec: serviceAccountName: "other"`))
	cip.Spec.Policy.IncludeSpec = nil
	d := decide(t, obj(t, podYAML("nginx")+"  serviceAccountName: default\n"), Options{}, cip)
	if d.Results[0].Result != ResultPass {
		t.Errorf("result = %s, want pass: %s", d.Results[0].Result, d.Results[0].Message)
	}
}

func TestUnparseableImage(t *testing.T) {
	d := decide(t, obj(t, podYAML("in@valid")), Options{}, newCIP("p"))
	r := d.Results[0]
	if r.Result != ResultError || d.Allowed {
		t.Fatalf("decision = %+v, want an error result and a denial", d)
	}
	if want := "failed policy: p: spec.containers[0].image\nin@valid could not parse reference: in@valid"; r.Message != want {
		t.Errorf("Message = %q, want %q", r.Message, want)
	}
}

func TestBrokenPolicies(t *testing.T) {
	bad := newCIP("broken", withCUE(`a: `), withMatch(v1beta1.MatchResource{Version: "v1", Resource: "pods"}))
	_, err := Compile(bad)
	if err == nil {
		t.Fatal("compiled a broken policy")
	}
	good, goodErr := Compile(newCIP("good"))
	if goodErr != nil {
		t.Fatal(goodErr)
	}
	set := NewSet([]*CompiledPolicy{good}, []*BrokenPolicy{NewBrokenPolicy(bad, err)})
	d := set.Decide(t.Context(), obj(t, podYAML("nginx")), Options{})
	if want := map[string]string{"broken": ResultError, "good": ResultPass}; fmt.Sprint(results(d)) != fmt.Sprint(want) {
		t.Fatalf("results = %v, want %v", results(d), want)
	}
	if d.Allowed || !strings.Contains(d.DenyMessage, "nginx policy is not ready: spec.policy.data: failed to compile the cue policy") {
		t.Errorf("decision = %+v", d)
	}
	// The broken policy keeps its match rules: a Deployment is not its business.
	d = set.Decide(t.Context(), obj(t, deploymentYAML), Options{})
	if _, ok := results(d)["broken"]; ok || !d.Allowed {
		t.Errorf("broken policy judged a Deployment: %+v", d)
	}
	// In warn mode a broken policy warns.
	warn := newCIP("broken", withCUE(`a: `), withMode("warn"))
	d = NewSet(nil, []*BrokenPolicy{NewBrokenPolicy(warn, errors.New("bad"))}).Decide(t.Context(), obj(t, podYAML("nginx")), Options{})
	if !d.Allowed || len(d.Warnings) != 1 || d.Results[0].Result != ResultError {
		t.Errorf("warn-mode broken policy: %+v", d)
	}
}

func TestDecideConcurrently(t *testing.T) {
	set := NewSet([]*CompiledPolicy{
		mustCompile(t, newCIP("cue", withCUE(`spec: containers: [...{name: !="c1"}]`))),
		mustCompile(t, newCIP("rego", withRego("package sigstore\nisCompliant { count(input.spec.containers) < 2 }"))),
		// Decided natively.
		mustCompile(t, newCIP("native", withCUE(`spec: containers: [...{image: "a"}]`))),
	}, nil)
	if set.entries[1].compiled.Name != "native" || set.entries[1].compiled.body.(*cueEvaluator).native == nil {
		t.Fatal("the policy \"native\" has no native check")
	}
	objs := []*Object{obj(t, podYAML("a")), obj(t, podYAML("a", "b"))}
	want := make([]string, len(objs))
	for i, o := range objs {
		want[i] = fmt.Sprint(set.Decide(context.Background(), o, Options{}))
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Go(func() {
			for n := range 50 {
				i := (g + n) % len(objs)
				if got := fmt.Sprint(set.Decide(context.Background(), objs[i], Options{})); got != want[i] {
					errs <- got
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent decision differs: %s", e)
	}
	if strings.Contains(want[0], "fail") || !strings.Contains(want[1], "fail") {
		t.Errorf("unexpected decisions: %v", want)
	}
}

// A policy that takes too long gives an error result naming it, and a denial
// in enforce mode, within the bound. (It is slow only for ubuntu: one slow
// for any pod is refused at compile time, see hostile_test.go.)
func TestPolicyTimeout(t *testing.T) {
	slow := &v1beta1.ClusterImagePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "slow-rego", Generation: 1},
		Spec: v1beta1.ClusterImagePolicySpec{
			Images:      []v1beta1.ImagePattern{{Glob: "**"}},
			Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
			Policy: &v1beta1.Policy{Type: v1beta1.PolicyTypeRego, IncludeSpec: new(true), Data: `package sigstore
isCompliant {
  some i, j, k
  input.spec.containers[0].image == "ubuntu"
  numbers.range(1, 2000)[i]
  numbers.range(1, 2000)[j]
  numbers.range(1, 2000)[k]
  false
}`},
		},
	}
	p, err := Compile(slow)
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet([]*CompiledPolicy{p}, nil)
	obj, err := DecodeObject([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"ubuntu"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d := set.Decide(context.Background(), obj, Options{PolicyTimeout: 100 * time.Millisecond})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the decision took %s despite a 100ms bound", took)
	}
	if d.Allowed || len(d.Results) != 1 || d.Results[0].Result != ResultError {
		t.Fatalf("decision = %+v, want a denial with one error result", d)
	}
	if !strings.Contains(d.DenyMessage, "failed policy: slow-rego") || !strings.Contains(d.DenyMessage, "longer than its limit of 100ms") {
		t.Errorf("denial %q does not name the policy and the limit", d.DenyMessage)
	}
}
