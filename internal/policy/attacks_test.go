package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

// Attacks of issue 14 through Decide: objects and policies shaped to make a
// decision cost more than its bound, or to crash the process. Each test
// asserts the outcome and that the decision ends before a generous context
// deadline (the bound is the policy timeout the code enforces; the slack is
// for this shared machine), and logs what it cost.

// attackTimeout is the policy timeout of the attacks (the default, 2s);
// attackWall is the deadline each decision must beat.
const (
	attackTimeout = DefaultPolicyTimeout
	attackWall    = attackTimeout + 30*time.Second
)

// newTestPool is a pool of two workers, closed with the test.
func newTestPool(t testing.TB, memoryLimit int64) *WorkerPool {
	pool := NewWorkerPool(WorkerPoolOptions{Workers: 2, MemoryLimit: memoryLimit})
	t.Cleanup(pool.Close)
	return pool
}

func compileWith(t testing.TB, pool *WorkerPool, cips ...*v1beta1.ClusterImagePolicy) *Set {
	t.Helper()
	var compiled []*CompiledPolicy
	for _, cip := range cips {
		p, err := Compiler{Workers: pool}.Compile(cip)
		if err != nil {
			t.Fatalf("compile %s: %v", cip.Name, err)
		}
		compiled = append(compiled, p)
	}
	return NewSet(compiled, nil)
}

// samplePolicy is the walkthrough's policy, config/samples/cip.yaml.
func samplePolicy(t testing.TB) *v1beta1.ClusterImagePolicy {
	return readCIP(t, filepath.Join(repoRoot(t), "config", "samples", "cip.yaml"))
}

// bigPod is a Pod of n containers; container(i) fills in the i-th.
func bigPod(t testing.TB, name string, n int, container func(i int) map[string]any) (*Object, int) {
	t.Helper()
	cs := make([]any, n)
	for i := range cs {
		cs[i] = container(i)
	}
	content := map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec":     map[string]any{"containers": cs}}
	raw, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewObject(content)
	if err != nil {
		t.Fatal(err)
	}
	return o, len(raw)
}

func netAdmin(image string) func(i int) map[string]any {
	return func(i int) map[string]any {
		return map[string]any{"name": fmt.Sprintf("c%d", i), "image": image,
			"securityContext": map[string]any{"capabilities": map[string]any{"add": []any{"NET_ADMIN"}}}}
	}
}

// distinctNetAdmin: every container its own image, about 240 bytes each
// (2.4 MB for 10,000).
func distinctNetAdmin(i int) map[string]any {
	c := netAdmin(fmt.Sprintf("registry.example.com/some-organisation/some-department/team-%05d/service-%05d/application-image:1.0.%d", i, i, i))(i)
	c["name"] = fmt.Sprintf("container-%05d-of-the-attacking-pod-with-a-long-name", i)
	return c
}

// decideWithin decides with the attack timeout and fails the test if the
// decision outlives attackWall. It returns the decision, its duration and
// the peak growth of the heap while it ran.
func decideWithin(t testing.TB, set *Set, o *Object) (Decision, time.Duration, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), attackWall)
	defer cancel()
	stop := sampleHeap()
	start := time.Now()
	d := set.Decide(ctx, o, Options{PolicyTimeout: attackTimeout})
	took := time.Since(start)
	peak := stop()
	if ctx.Err() != nil {
		t.Fatalf("the decision outlived its deadline of %s", attackWall)
	}
	return d, took, peak
}

// sampleHeap samples the heap's live objects every millisecond; stop
// returns the peak above the value at the start.
func sampleHeap() (stop func() uint64) {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	base := read()
	var peak uint64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			peak = max(peak, read())
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		peak = max(peak, read())
		if peak < base {
			return 0
		}
		return peak - base
	}
}

// assertBoundedDenial checks a denial that names policy and keeps its
// message and explanation small.
func assertBoundedDenial(t testing.TB, d Decision, policy string) {
	t.Helper()
	if d.Allowed || len(d.Results) == 0 {
		t.Fatalf("decision %+v, want a denial", d)
	}
	if !strings.Contains(d.DenyMessage, "failed policy: "+policy) {
		t.Errorf("denial does not name %s: %.500s", policy, d.DenyMessage)
	}
	for _, r := range d.Results {
		if len(r.Message) > 16<<10 || len(r.Explanation) > 4<<10 {
			t.Errorf("%s: message of %d bytes, explanation of %d: want them bounded", r.Policy, len(r.Message), len(r.Explanation))
		}
	}
	if len(d.DenyMessage) > 16<<10 {
		t.Errorf("denial of %d bytes, want it bounded", len(d.DenyMessage))
	}
}

// The many-containers pod: N containers on one image, each adding NET_ADMIN,
// against the walkthrough's policy. CUE gives N errors; the denial names the
// policy and says how many more paths there are, in a few hundred bytes.
func TestAttackManyContainers(t *testing.T) {
	set := compileWith(t, newTestPool(t, 0), samplePolicy(t))
	for _, n := range []int{1500, 10000, 40000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			o, size := bigPod(t, "many", n, netAdmin("docker.io/library/nginx:1.27"))
			d, took, peak := decideWithin(t, set, o)
			assertBoundedDenial(t, d, "non-default-capabilities-cue")
			r := d.Results[0]
			if r.Result != ResultFail && r.Result != ResultError {
				t.Errorf("result %s, want fail or error", r.Result)
			}
			if want := fmt.Sprintf(", and %d more\n", n-maxShownPaths); !strings.Contains(d.DenyMessage, want) {
				t.Errorf("denial does not say %q: %.600s", want, d.DenyMessage)
			}
			t.Logf("%d containers (%d KB): %s in %s, peak heap +%d MiB, denial %d bytes; explanation: %.200s",
				n, size>>10, r.Result, took.Round(time.Millisecond), peak>>20, len(d.DenyMessage), r.Explanation)
		})
	}
	// The next pod is judged as ever.
	compliant, _ := bigPod(t, "ok", 3, func(i int) map[string]any { return map[string]any{"name": fmt.Sprint(i), "image": "nginx"} })
	if d, _, _ := decideWithin(t, set, compliant); !d.Allowed {
		t.Errorf("a compliant pod after the attack: %+v", d)
	}
}

// The 2.4 MB pod of 10,000 containers on distinct images, followed at once
// by compliant pods, which a Rego policy must judge in a worker too: they
// are admitted while the attacking pod's evaluation runs, and the attacking
// pod alone gets the error.
func TestAttackDistinctImagesThenCompliantPods(t *testing.T) {
	pool := newTestPool(t, 0)
	byName := newCIP("named-rego", withRego("package sigstore\nisCompliant { not input.spec.hostNetwork; input.metadata.name != \"\" }\n"))
	set := compileWith(t, pool, samplePolicy(t), byName)
	attack, size := bigPod(t, "attack", 10000, distinctNetAdmin)
	var running sync.WaitGroup
	var attacked Decision
	var attackTook time.Duration
	var attackPeak uint64
	maxRunning := 0
	running.Add(1)
	go func() {
		defer running.Done()
		ctx, cancel := context.WithTimeout(context.Background(), attackWall)
		defer cancel()
		stop := sampleHeap()
		start := time.Now()
		attacked = set.Decide(ctx, attack, Options{PolicyTimeout: attackTimeout})
		attackTook = time.Since(start)
		attackPeak = stop()
		if ctx.Err() != nil {
			t.Errorf("the attacking pod's decision outlived its deadline of %s", attackWall)
		}
	}()
	for i := range 20 {
		o := obj(t, fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: compliant-%d}\nspec:\n  containers: [{name: app, image: nginx}]\n", i))
		d, took, _ := decideWithin(t, set, o)
		if !d.Allowed || results(d)["named-rego"] != ResultPass || results(d)["non-default-capabilities-cue"] != ResultPass {
			t.Errorf("compliant pod %d: %+v", i, d)
		}
		maxRunning = max(maxRunning, pool.Stats().Running)
		if i == 0 {
			t.Logf("first compliant pod decided in %s", took.Round(time.Millisecond))
		}
	}
	running.Wait()
	assertBoundedDenial(t, attacked, "non-default-capabilities-cue")
	if r := results(attacked); r["named-rego"] != ResultPass {
		t.Errorf("the attacking pod's other policy: %s, want pass", r["named-rego"])
	}
	if maxRunning > 2 {
		t.Errorf("%d workers ran at once, more than the pool's 2", maxRunning)
	}
	t.Logf("attacking pod (%d KB): %s in %s, peak heap +%d MiB, denial %d bytes; pool %+v", size>>10,
		results(attacked)["non-default-capabilities-cue"], attackTook.Round(time.Millisecond), attackPeak>>20, len(attacked.DenyMessage), pool.Stats())
}

// 50,000 globs against 5,000 containers on distinct images is 2.5e8 regular
// expression matches: the policy gets an error at its timeout (it may cover
// any image, so it fails closed), and a small pod is judged normally.
func TestAttackGlobs(t *testing.T) {
	globs := make([]string, 50000)
	for i := range globs {
		globs[i] = fmt.Sprintf("registry.example.com/allowed-%05d/*", i)
	}
	p, err := Compile(newCIP("many-globs", withGlobs(globs...)))
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet([]*CompiledPolicy{p}, nil)
	o, _ := bigPod(t, "globbed", 5000, func(i int) map[string]any {
		return map[string]any{"name": fmt.Sprint(i), "image": fmt.Sprintf("registry.example.com/other-%05d/app", i)}
	})
	d, took, peak := decideWithin(t, set, o)
	assertBoundedDenial(t, d, "many-globs")
	if r := d.Results[0]; r.Result != ResultError || !strings.Contains(r.Message, "could not be matched against the 5000 images within its limit of 2s") {
		t.Errorf("result %s: %.400s", r.Result, r.Message)
	}
	if len(d.Results) != 1 {
		t.Errorf("results %+v: an unmatched policy covers every image (no no-match result)", results(d))
	}
	small := obj(t, podYAML("registry.example.com/allowed-00007/app:1"))
	if d, _, _ := decideWithin(t, set, small); !d.Allowed {
		t.Errorf("a pod the globs cover: %+v", d)
	}
	t.Logf("5,000 containers × 50,000 globs: error in %s, peak heap +%d MiB", took.Round(time.Millisecond), peak>>20)
}

// Policies that explode for one pod shape only: they pass the compile
// sandbox (its sample pod is harmless), and in-process the pod that sets
// them off would crash the process (a terabyte string, a Rego replace of
// 1e16 bytes). In a worker that pod gets an error, the worker is replaced,
// and the next pod is judged normally.
var podShapedBombs = []struct{ name, typ, src string }{
	{"cue", "cue", `spec: containers: [...{name: string}]
_n: [if spec.containers[0].name == "boom" {1000000}, 1][0]
_a: "x" * _n
_b: _a * 1000000
`},
	{"rego", "rego", `package sigstore
isCompliant {
	input.spec.containers[0].name == "boom"
	s1 := replace("xxxxxxxxxx", "x", "xxxxxxxxxx")
	s2 := replace(s1, "x", s1)
	s3 := replace(s2, "x", s2)
	s4 := replace(s3, "x", s3)
	count(s4) > 0
}
isCompliant { input.spec.containers[0].name != "boom" }
`},
}

func TestAttackPodShapedMemoryBombs(t *testing.T) {
	pool := newTestPool(t, 0)
	for _, tc := range podShapedBombs {
		t.Run(tc.name, func(t *testing.T) {
			set := compileWith(t, pool, newCIP("bomb", withBody(tc.typ, tc.src)))
			boom := obj(t, strings.Replace(podYAML("nginx"), "name: c0", "name: boom", 1))
			before := pool.Stats()
			d, took, peak := decideWithin(t, set, boom)
			assertBoundedDenial(t, d, "bomb")
			r := d.Results[0]
			if r.Result != ResultError || !containsAny(r.Message, []string{"needed more than its limit of 192 MiB of memory", "took longer than its limit of 2s"}) {
				t.Errorf("result %s: %s", r.Result, r.Message)
			}
			next := obj(t, podYAML("nginx"))
			if d, _, _ := decideWithin(t, set, next); !d.Allowed {
				t.Errorf("the next pod: %+v", d)
			}
			after := pool.Stats()
			if after.Started <= before.Started && after.Killed <= before.Killed {
				t.Errorf("pool %+v then %+v: the worker that exploded was not replaced", before, after)
			}
			t.Logf("%s bomb: %s in %s (this process's heap +%d MiB): %s", tc.name, r.Result, took.Round(time.Millisecond), peak>>20, r.Message)
		})
	}
}

// A stream of objects that each overrun their evaluation cannot pile up
// evaluations: each is killed at its deadline, and the pool never runs more
// processes than its size.
func TestAbandonedEvaluationsDoNotPileUp(t *testing.T) {
	pool := newTestPool(t, 0)
	set := compileWith(t, pool, newCIP("slow-for-some", withCUE(slowForLongNames)))
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	stopSampling := make(chan struct{})
	maxRunning := 0
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			maxRunning = max(maxRunning, pool.Stats().Running)
			select {
			case <-stopSampling:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := strings.Repeat(string(rune('a'+i)), 200) // 1.6e9 steps: hours
			o := obj(t, strings.Replace(podYAML("nginx"), "name: c0", "name: "+name, 1))
			ctx, cancel := context.WithTimeout(context.Background(), attackWall)
			defer cancel()
			d := set.Decide(ctx, o, Options{PolicyTimeout: hostileTimeout})
			if d.Allowed || d.Results[0].Result != ResultError {
				errs <- fmt.Sprintf("slow pod %d: %+v", i, d)
			}
		}()
	}
	wg.Wait()
	if d, _, _ := decideWithin(t, set, obj(t, podYAML("nginx"))); !d.Allowed {
		t.Errorf("a harmless pod after the stream: %+v", d)
	}
	close(stopSampling)
	<-sampled
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	st := pool.Stats()
	if maxRunning > 2 || st.Running > 2 {
		t.Errorf("%d workers at most, %d now: more than the pool's 2", maxRunning, st.Running)
	}
	if st.Killed == 0 {
		t.Errorf("pool %+v: no evaluation was killed", st)
	}
	t.Logf("8 overrunning pods: pool %+v, at most %d workers at once", st, maxRunning)
}

// The worker pool decides exactly as in-process evaluation: every catalog
// policy (CUE and Rego, projected or not) on the seed's and the catalog's
// pods, with the caches off so that every decision evaluates.
func TestWorkerPoolAgreesWithInProcess(t *testing.T) {
	catalog := sharedDir(t, "conformance", "policy-catalog")
	pool := newTestPool(t, 0)
	entries, err := os.ReadDir(filepath.Join(catalog, "policies"))
	if err != nil {
		t.Fatal(err)
	}
	pods := readPods(t, filepath.Join(catalog, "testdata"))
	ctx := context.Background()
	compared := 0
	for _, e := range entries {
		cip := readCIP(t, filepath.Join(catalog, "policies", e.Name()))
		inProcess := mustCompile(t, cip)
		inWorker, err := Compiler{Workers: pool}.Compile(cip)
		if err != nil {
			t.Fatal(err)
		}
		inProcess.cache, inWorker.cache = nil, nil
		for _, p := range pods {
			o := newBenchPod(t, p).obj
			want := NewSet([]*CompiledPolicy{inProcess}, nil).Decide(ctx, o, Options{PolicyTimeout: 30 * time.Second})
			got := NewSet([]*CompiledPolicy{inWorker}, nil).Decide(ctx, o, Options{PolicyTimeout: 30 * time.Second})
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
				t.Errorf("%s on %s:\nin a worker: %#v\nin-process:  %#v", cip.Name, p.Name, got, want)
			}
			compared++
		}
	}
	t.Logf("%d decisions compared; pool %+v", compared, pool.Stats())
}

// The compile sandbox runs /proc/self/exe, not the file at os.Executable():
// a copy of this test binary replaces its own file with a script that
// answers as a sandbox that compiled everything, then compiles a policy
// that allocates a terabyte. Run by path, the script would be believed and
// the policy compiled in-process, a fatal "out of memory".
func TestSandboxRunsItsOwnExecutable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/self/exe is Linux's")
	}
	if os.Getenv("VIGIL_TEST_REPLACED_EXECUTABLE") == "1" {
		compileAfterReplacingExecutable(t)
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "policy.test")
	if err := os.WriteFile(copyPath, data, 0o700); err != nil { // #nosec G306 -- an executable for this test
		t.Fatal(err)
	}
	// #nosec G204 -- this test's own binary
	cmd := exec.Command(copyPath, "-test.run=^TestSandboxRunsItsOwnExecutable$", "-test.v")
	cmd.Env = append(os.Environ(), "VIGIL_TEST_REPLACED_EXECUTABLE=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "refused:") {
		t.Fatalf("the copy failed (%v):\n%s", err, out)
	}
	t.Logf("%s", out)
}

func compileAfterReplacingExecutable(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	liar := self + ".liar"
	if err := os.WriteFile(liar, []byte("#!/bin/sh\necho ready; echo compiled; echo finished\n"), 0o700); err != nil { // #nosec G306 -- a script for this test
		t.Fatal(err)
	}
	if err := os.Rename(liar, self); err != nil {
		t.Fatal(err)
	}
	_, err = hostileCompiler.Compile(newCIP("terabyte", withCUE("a: \"x\" * 1000000\nb: a * 1000000\n")))
	var ipe *InvalidPolicyError
	if !errors.As(err, &ipe) || !strings.Contains(ipe.Message, tooMuchMem) {
		t.Fatalf("err = %v, want the sandbox's memory limit", err)
	}
	t.Logf("refused: %s", ipe.Message)
}

// Messages show a bounded part of what failed and say how much more there
// is; an ordinary message is unchanged (the walkthrough and conformance
// tests pin those).
func TestMessageBounds(t *testing.T) {
	var many fieldErrors
	for i := range 25 {
		many = append(many, fieldError{Message: "failed policy: p", Paths: []string{fmt.Sprintf("spec.containers[%d].image", i)}, Details: fmt.Sprintf("image-%02d", i)})
	}
	lines := many.lines()
	if len(lines) != 11 || lines[10] != "and 15 more errors (10 of 25 shown)" || lines[0] != "failed policy: p: spec.containers[0].image\nimage-00" {
		t.Errorf("25 entries: %q", lines)
	}
	var paths fieldErrors
	for i := range 40 {
		paths = append(paths, fieldError{Message: "failed policy: p", Paths: []string{fmt.Sprintf("spec.containers[%02d].image", i)}, Details: "nginx", Reason: "why"})
	}
	want := "failed policy: p: spec.containers[00].image, spec.containers[01].image, spec.containers[02].image, " +
		"spec.containers[03].image, spec.containers[04].image, spec.containers[05].image, spec.containers[06].image, " +
		"spec.containers[07].image, spec.containers[08].image, spec.containers[09].image, and 30 more\nnginx why"
	if got := paths.Error(); got != want {
		t.Errorf("40 paths:\n%s\nwant\n%s", got, want)
	}
	long := fieldErrors{{Message: "m", Paths: []string{"p"}, Details: "x", Reason: strings.Repeat("é", 3000)}}
	if got := long.Error(); !strings.HasSuffix(got, "... (3954 more bytes)") || len(got) > maxShownDetails+64 {
		t.Errorf("long details: %d bytes ending %q", len(got), got[len(got)-40:])
	}
	var big fieldErrors // entries of 2 KiB: the byte bound comes first
	for i := range 10 {
		big = append(big, fieldError{Message: "m", Paths: []string{fmt.Sprint(i)}, Details: strings.Repeat("y", 2000) + fmt.Sprint(i)})
	}
	if lines := big.lines(); len(lines) != 5 || lines[4] != "and 6 more errors (4 of 10 shown)" {
		t.Errorf("10 entries of 2 KiB: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	var fs []finding
	for i := range 1000 {
		fs = append(fs, finding{where: fmt.Sprintf("container %q", fmt.Sprint(i%5)), phrase: " adds capability NET_ADMIN"})
	}
	if got := explainFindings(fs, 7, "Pod", "p"); strings.Count(got, ";") != 3 || !strings.HasSuffix(got, "; and 9 more") {
		t.Errorf("explanation of 5 distinct findings and 7 omitted: %q", got)
	}
}

// A worker that dies while idle (killed from outside, say by the kernel) is
// replaced when next needed: the next object is judged normally.
func TestWorkerKilledWhileIdleIsReplaced(t *testing.T) {
	pool := newTestPool(t, 0)
	set := compileWith(t, pool, newCIP("named", withRego("package sigstore\nisCompliant { input.metadata.name != \"\" }\n")))
	for i := range 3 {
		o := obj(t, fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: p%d}\nspec:\n  containers: [{name: app, image: nginx}]\n", i))
		if d, _, _ := decideWithin(t, set, o); !d.Allowed {
			t.Fatalf("pod %d: %+v", i, d)
		}
		pool.mu.Lock()
		for w := range pool.live {
			w.kill()
			<-w.exited
		}
		pool.mu.Unlock()
	}
	if st := pool.Stats(); st.Started < 3 {
		t.Errorf("pool %+v: the dead workers were not replaced", st)
	}
}
