package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// Benchmark 1 of BENCHMARKS.md, decision cost. Run every benchmark of the
// file in one invocation so that Vigil and the native floor share the
// machine's state:
//
//	go test -run '^$' -bench . -benchmem -count=5 ./internal/policy/
//
// "cold" disables the decision cache, so every decision evaluates the
// policy; "cached" is the steady state of a replica whose workload was seen
// before. The mix is 100 workloads of 100 replicas that differ only where
// real replicas do (name, uid, node, the projected service-account token
// volume), plus 300 unique pods; every workload and every unique pod differs
// from all others in the capabilities it adds, which is the worst case for a
// cache keyed by what the seed policy reads. Each pass of the mix starts
// with an empty cache, so the misses are amortised over the pass.

// set5 is the five-policy set: three CUE policies (two projected, one that
// reads the whole input because of its `if` guards) and two Rego policies.
var set5 = []string{
	"non-default-capabilities-cue.yaml",
	"privileged-containers-cue.yaml",
	"disallow-privilege-escalation-cue.yaml",
	"host-ports-rego.yaml",
	"host-namespaces-rego.yaml",
}

const (
	mixWorkloads = 100
	mixReplicas  = 100
	mixUnique    = 300
)

// defaultCapabilities are the 13 capabilities the seed policy allows.
var defaultCapabilities = []corev1.Capability{
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

// nativeCapabilityCheck is the physical floor of the seed policy: the same
// judgement as a plain Go function on a typed pod.
func nativeCapabilityCheck(pod *corev1.Pod) bool {
	allowed := func(sc *corev1.SecurityContext) bool {
		if sc == nil || sc.Capabilities == nil {
			return true
		}
		for _, c := range sc.Capabilities.Add {
			switch c {
			case "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
				"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT":
			default:
				return false
			}
		}
		return true
	}
	for i := range pod.Spec.InitContainers {
		if !allowed(pod.Spec.InitContainers[i].SecurityContext) {
			return false
		}
	}
	for i := range pod.Spec.Containers {
		if !allowed(pod.Spec.Containers[i].SecurityContext) {
			return false
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		if !allowed(pod.Spec.EphemeralContainers[i].SecurityContext) {
			return false
		}
	}
	return true
}

// benchPod is a pod as Vigil sees it and as the native check sees it.
type benchPod struct {
	obj   *Object
	typed *corev1.Pod
}

func newBenchPod(t testing.TB, pod *corev1.Pod) benchPod {
	t.Helper()
	o, err := ObjectFromRuntime(pod)
	if err != nil {
		t.Fatal(err)
	}
	return benchPod{obj: o, typed: pod}
}

// readPods decodes every Pod of dir (other kinds are skipped).
func readPods(t testing.TB, dir string) []*corev1.Pod {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var pods []*corev1.Pod
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if err := yaml.Unmarshal(data, &pod); err != nil || pod.Kind != "Pod" {
			continue
		}
		pods = append(pods, &pod)
	}
	return pods
}

// realistic dresses a pod as the API server stores a replica: defaults, an
// owner, a node, the projected service-account token volume mounted in
// every container, and images of workload w. caps (a bit set of
// defaultCapabilities) is added to the first container.
func realistic(base *corev1.Pod, w, replica int, caps uint) *corev1.Pod {
	p := base.DeepCopy()
	app := fmt.Sprintf("app-%03d", w)
	hash := fmt.Sprintf("%010x", uint64(w+1)*2654435761)[:10]
	p.Name = fmt.Sprintf("%s-%s-%05x", app, hash, uint32(replica*40503+w)&0xfffff)
	p.GenerateName = app + "-" + hash + "-"
	p.Namespace = "bench"
	p.UID = types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", w, replica))
	p.ResourceVersion = fmt.Sprint(1000 + replica)
	p.CreationTimestamp = metav1.Unix(1700000000+int64(replica), 0)
	p.Labels = map[string]string{"app": app, "pod-template-hash": hash}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet",
		Name: app + "-" + hash, UID: types.UID(fmt.Sprintf("%08x-1111-4000-8000-000000000000", w)),
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	token := fmt.Sprintf("kube-api-access-%05x", uint32(replica*7919+w*104729)&0xfffff)
	s := &p.Spec
	s.NodeName = fmt.Sprintf("node-%03d", (replica*31+w)%50)
	testenv.AsAdmitted(p, token)
	dress := func(c *corev1.Container, i int) {
		c.Image = fmt.Sprintf("registry.example.com/team-%02d/%s-%d:v1.%d", w%17, app, i, w%5)
		c.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}}
		c.Env = append(c.Env, corev1.EnvVar{Name: "APP", Value: app})
	}
	for i := range s.InitContainers {
		dress(&s.InitContainers[i], 100+i)
	}
	for i := range s.Containers {
		dress(&s.Containers[i], i)
	}
	if caps != 0 && len(s.Containers) > 0 {
		c := &s.Containers[0]
		if c.SecurityContext == nil {
			c.SecurityContext = &corev1.SecurityContext{}
		}
		if c.SecurityContext.Capabilities == nil {
			c.SecurityContext.Capabilities = &corev1.Capabilities{}
		}
		for i, cp := range defaultCapabilities {
			if caps&(1<<i) != 0 {
				c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, cp)
			}
		}
	}
	return p
}

// buildMix is the 10,000-pod mix: workload w is built on base pod w, its
// replicas differ only in name, uid, node and token volume; then the unique pods.
func buildMix(t testing.TB, bases []*corev1.Pod) []benchPod {
	t.Helper()
	var mix []benchPod
	for w := range mixWorkloads {
		base := bases[w%len(bases)]
		for r := range mixReplicas {
			mix = append(mix, newBenchPod(t, realistic(base, w, r, uint(w+1))))
		}
	}
	for u := range mixUnique {
		base := bases[u%len(bases)]
		mix = append(mix, newBenchPod(t, realistic(base, mixWorkloads+u, 0, uint(mixWorkloads+u+1))))
	}
	return mix
}

type benchFixture struct {
	seed               *v1beta1.ClusterImagePolicy
	set5               []*v1beta1.ClusterImagePolicy
	seedFail, seedPass benchPod
	// realFail and realPass are the seed's pods dressed as replicas.
	realFail, realPass benchPod
	bases              []*corev1.Pod
	mix                []benchPod
}

// loadMix builds the mix on first use: the single-pod benchmarks run
// before it, without its 10,300 pods on the heap.
func (f *benchFixture) loadMix(b *testing.B) []benchPod {
	if f.mix == nil {
		f.mix = buildMix(b, f.bases)
		if got := len(f.mix); got != mixWorkloads*mixReplicas+mixUnique {
			b.Fatalf("mix has %d pods", got)
		}
		runtime.GC() // building the mix left garbage that is not the decisions'

	}
	return f.mix
}

func loadBenchFixture(b *testing.B) *benchFixture {
	seed := sharedDir(b, "seed")
	catalog := sharedDir(b, "conformance", "policy-catalog")
	f := &benchFixture{seed: readCIP(b, filepath.Join(seed, "cip.yaml"))}
	for _, name := range set5 {
		f.set5 = append(f.set5, readCIP(b, filepath.Join(catalog, "policies", name)))
	}
	for _, p := range readPods(b, seed) {
		if len(p.Spec.Containers[0].SecurityContext.Capabilities.Add) > 0 {
			f.seedFail = newBenchPod(b, p)
			f.realFail = newBenchPod(b, realistic(p, 0, 0, 0))
		} else {
			f.seedPass = newBenchPod(b, p)
			f.realPass = newBenchPod(b, realistic(p, 0, 0, 0))
		}
	}
	f.bases = readPods(b, filepath.Join(catalog, "testdata"))
	return f
}

// compileAll compiles cips; cached=false disables the decision cache.
func compileAll(b *testing.B, cached bool, cips ...*v1beta1.ClusterImagePolicy) (*Set, []*CompiledPolicy) {
	var ps []*CompiledPolicy
	for _, c := range cips {
		p := mustCompile(b, c)
		if !cached {
			p.cache = nil
		}
		ps = append(ps, p)
	}
	return NewSet(ps, nil), ps
}

func benchDecide(b *testing.B, set *Set, pod benchPod) {
	ctx := context.Background()
	set.Decide(ctx, pod.obj, Options{}) // fill the cache, if any
	b.ReportAllocs()
	for b.Loop() {
		set.Decide(ctx, pod.obj, Options{})
	}
}

// benchMix decides every pod of the mix per iteration, each pass with
// empty caches, and reports the cost per pod.
func benchMix(b *testing.B, mix []benchPod, cips ...*v1beta1.ClusterImagePolicy) {
	set, ps := compileAll(b, true, cips...)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range ps {
			p.cache = newResultCache(resultCacheSize)
		}
		for _, pod := range mix {
			set.Decide(ctx, pod.obj, Options{})
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(mix)), "ns/pod")
}

// benchMixHot is benchMix with each object brought into the CPU's caches
// before its decision, as decoding the object (the webhook) or converting
// it (the reconcilers) leaves it, and only the decisions timed. Objects
// built in advance and decided in turn are cold: most of benchMix's time
// is memory latency on the 10,300 objects' maps.
func benchMixHot(b *testing.B, mix []benchPod, cips ...*v1beta1.ClusterImagePolicy) {
	set, ps := compileAll(b, true, cips...)
	ctx := context.Background()
	var decide time.Duration
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range ps {
			p.cache = newResultCache(resultCacheSize)
		}
		for _, pod := range mix {
			warmSink += warm(pod.obj.content)
			start := time.Now()
			set.Decide(ctx, pod.obj, Options{})
			decide += time.Since(start)
		}
	}
	b.ReportMetric(float64(decide.Nanoseconds())/float64(b.N*len(mix)), "ns/pod")
}

var warmSink int

// warm reads every key and value of a decoded object.
func warm(v any) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k != "" {
				n += int(k[0])
			}
			n += warm(e)
		}
	case []any:
		for _, e := range x {
			n += warm(e)
		}
	case string:
		if x != "" {
			n += int(x[0])
		}
	}
	return n
}

var nativeSink bool

func BenchmarkDecision(b *testing.B) {
	f := loadBenchFixture(b)
	for _, tc := range []struct {
		name   string
		cached bool
		pod    benchPod
	}{
		{"seed/cold/fail", false, f.seedFail},
		{"seed/cold/pass", false, f.seedPass},
		{"seed/cold/replica", false, f.realFail},
		{"seed/cached/fail", true, f.seedFail},
		{"seed/cached/replica", true, f.realFail},
		{"seed/cached/replica-pass", true, f.realPass},
	} {
		b.Run(tc.name, func(b *testing.B) {
			set, _ := compileAll(b, tc.cached, f.seed)
			benchDecide(b, set, tc.pod)
		})
	}
	b.Run("set5/cold/replica", func(b *testing.B) {
		set, _ := compileAll(b, false, f.set5...)
		benchDecide(b, set, f.realFail)
	})
	b.Run("set5/cached/replica", func(b *testing.B) {
		set, _ := compileAll(b, true, f.set5...)
		benchDecide(b, set, f.realFail)
	})
	// Making the Object a decision judges, which the webhook (decoding the
	// admission request's object) and the reconcilers (converting the
	// cached typed pod) do before deciding; not part of the decision.
	b.Run("object/decode", func(b *testing.B) {
		raw, err := json.Marshal(f.realFail.typed)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeObject(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The UTF-8 check DecodeObject starts with, alone: its share of the decode.
	b.Run("object/check-utf8", func(b *testing.B) {
		raw, err := json.Marshal(f.realFail.typed)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			if err := CheckUTF8(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("object/from-runtime", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ObjectFromRuntime(f.realFail.typed); err != nil {
				b.Fatal(err)
			}
		}
	})

	// The physical floor, in the same run.
	b.Run("native/one", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			nativeSink = nativeCapabilityCheck(f.seedFail.typed)
		}
	})

	b.Run("seed/mix", func(b *testing.B) { benchMix(b, f.loadMix(b), f.seed) })
	b.Run("seed/mix-hot", func(b *testing.B) { benchMixHot(b, f.loadMix(b), f.seed) })
	b.Run("set5/mix", func(b *testing.B) { benchMix(b, f.loadMix(b), f.set5...) })
	b.Run("set5/mix-hot", func(b *testing.B) { benchMixHot(b, f.loadMix(b), f.set5...) })
	b.Run("native/mix", func(b *testing.B) {
		mix := f.loadMix(b)
		b.ReportAllocs()
		for b.Loop() {
			for _, pod := range mix {
				nativeSink = nativeCapabilityCheck(pod.typed)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(mix)), "ns/pod")
	})
}

// BenchmarkDecisionWorkers runs benchmark 1's decisions side by side
// evaluated in-process (as before issue 14) and in a WorkerPool (as the
// webhook and the reconcilers now do), with the webhook's policy timeout.
// The seed policy's decisions are native, cold or cached, so they never
// reach a worker; seed-cue is the same policy without its native check
// (every cold decision is a CUE evaluation), and set5 mixes native, CUE and
// Rego policies.
func BenchmarkDecisionWorkers(b *testing.B) {
	f := loadBenchFixture(b)
	pool := NewWorkerPool(WorkerPoolOptions{})
	b.Cleanup(pool.Close)
	opts := Options{PolicyTimeout: DefaultPolicyTimeout}
	for _, tc := range []struct {
		name   string
		cached bool
		native bool
		cips   []*v1beta1.ClusterImagePolicy
		pod    benchPod
	}{
		{"seed/cold/fail", false, true, []*v1beta1.ClusterImagePolicy{f.seed}, f.seedFail},
		{"seed/cold/replica", false, true, []*v1beta1.ClusterImagePolicy{f.seed}, f.realFail},
		{"seed/cached/replica", true, true, []*v1beta1.ClusterImagePolicy{f.seed}, f.realFail},
		{"seed-cue/cold/fail", false, false, []*v1beta1.ClusterImagePolicy{f.seed}, f.seedFail},
		{"seed-cue/cold/pass", false, false, []*v1beta1.ClusterImagePolicy{f.seed}, f.seedPass},
		{"set5/cold/replica", false, true, f.set5, f.realFail},
		{"set5/cached/replica", true, true, f.set5, f.realFail},
	} {
		for _, where := range []string{"in-process", "workers"} {
			b.Run(where+"/"+tc.name, func(b *testing.B) {
				c := Compiler{}
				if where == "workers" {
					c.Workers = pool
				}
				var ps []*CompiledPolicy
				for _, cip := range tc.cips {
					p, err := c.Compile(cip)
					if err != nil {
						b.Fatal(err)
					}
					if !tc.cached {
						p.cache = nil
					}
					if e, ok := p.body.(*cueEvaluator); ok && !tc.native {
						e.native = nil
					}
					ps = append(ps, p)
				}
				set := NewSet(ps, nil)
				ctx := context.Background()
				set.Decide(ctx, tc.pod.obj, opts) // fill the cache; start and load the workers
				b.ReportAllocs()
				for b.Loop() {
					set.Decide(ctx, tc.pod.obj, opts)
				}
			})
		}
	}
}
