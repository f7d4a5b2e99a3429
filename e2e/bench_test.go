package e2e

// Benchmarks 3 to 6 of BENCHMARKS.md: what Vigil costs where its users feel
// it, each beside its physical limit measured in the same run.
//
//	go test -run '^$' -bench . -benchtime=1x -timeout 60m ./e2e/
//
// They run the built bin/vigil (make build) against real API servers and
// never assert a duration: they report numbers with b.ReportMetric and log
// how they got them. `make bench` runs them; `make test` does not.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/config"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// Sizes of the scale benchmarks: 100 workloads of 100 identical replicas
// plus unique pods, as issue 8 asks; then pods added up to memoryPods.
// VIGIL_BENCH_SMALL=1 divides them by ten, to try the benchmarks quickly.
// VIGIL_BENCH_PODS=N sets the population instead (issue 17 asks for 2,000):
// workloads of 100 replicas and 100 unique pods, or N unique pods below 200.
var (
	scaleWorkloads, scaleReplicas, scaleUnique = scaleSizes()
	memoryPods                                 = small(30000, 3000)
)

func scaleSizes() (workloads, replicas, unique int) {
	if n, err := strconv.Atoi(os.Getenv("VIGIL_BENCH_PODS")); err == nil && n > 0 {
		if n < 200 {
			return 0, 100, n
		}
		return (n - 100) / 100, 100, 100 + (n-100)%100
	}
	return small(100, 10), small(100, 10), small(300, 30)
}

func small(full, reduced int) int {
	if os.Getenv("VIGIL_BENCH_SMALL") != "" {
		return reduced
	}
	return full
}

const (
	// benchWorkers is Vigil's --workers default, the concurrency the write
	// floor is measured at.
	benchWorkers = 16
	// createWorkers is the concurrency of the benchmark's own pod creates.
	createWorkers = 16
	// scaleTimeout bounds each wait of the scale benchmarks.
	scaleTimeout = 15 * time.Minute
)

const (
	benchNamespace = "bench"
	flipPolicy     = "bench-flip"
	probePolicy    = "bench-probe"
	probeLabel     = "vigil.bench/probe"
)

// The flip policy's two bodies: the walkthrough's CUE, which every pod of
// the population passes, and a constraint every pod fails (they restart
// Always).
var (
	passBody = mustSeedBody()
	failBody = `spec: restartPolicy: "Never"` + "\n"
)

func mustSeedBody() string {
	cip, err := testenv.SeedPolicy()
	if err != nil {
		panic(err)
	}
	return cip.Spec.Policy.Data
}

// BenchmarkPodCreateOverhead is benchmark 3: the same pod creates through
// the real kube-apiserver of `vigil dev`, alternating between a labelled
// namespace (the webhook is called) and an unlabelled one (it is skipped),
// one at a time.
func BenchmarkPodCreateOverhead(b *testing.B) {
	perNamespace, warmup := small(1000, 100), 50
	d := startDev(b)
	c := benchClient(b, d.Kubeconfig)
	ctx := b.Context()
	d.apply(b, flipPolicyYAML(passBody))
	d.namespace(b, "bench-on", true)
	d.namespace(b, "bench-off", false)
	for _, ns := range []string{"bench-on", "bench-off"} {
		waitFor(b, time.Minute, "the default service account of "+ns, func() (bool, string) {
			err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &corev1.ServiceAccount{})
			return err == nil, fmt.Sprint(err)
		})
	}
	// Wait for the webhook to answer (a dry-run create in the labelled namespace).
	waitFor(b, time.Minute, "the webhook", func() (bool, string) {
		p := replica("bench-on", 0, 0, 0)
		err := c.Create(ctx, p, client.DryRunAll)
		return err == nil, fmt.Sprint(err)
	})

	var with, without []time.Duration
	for i := range perNamespace + warmup {
		for _, ns := range []string{"bench-on", "bench-off"} {
			p := replica(ns, i%scaleWorkloads, i, 0)
			p.Spec.NodeName = "" // the scheduler and kwok do their part
			began := time.Now()
			if err := c.Create(ctx, p); err != nil {
				b.Fatalf("create pod %s/%s: %v", ns, p.Name, err)
			}
			took := time.Since(began)
			if i < warmup {
				continue
			}
			if ns == "bench-on" {
				with = append(with, took)
			} else {
				without = append(without, took)
			}
		}
	}
	on, off := summarize(with), summarize(without)
	b.Logf("pod create, webhook called:  %s", on)
	b.Logf("pod create, webhook skipped: %s", off)
	b.ReportMetric(ms(on.p50), "p50-with-ms")
	b.ReportMetric(ms(on.p99), "p99-with-ms")
	b.ReportMetric(ms(off.p50), "p50-without-ms")
	b.ReportMetric(ms(off.p99), "p99-without-ms")
	b.ReportMetric(float64(on.p50)/float64(off.p50), "p50-ratio")
	b.ReportMetric(float64(on.p99)/float64(off.p99), "p99-ratio")
}

// BenchmarkScale runs benchmarks 4, 5 and 6 on one real kube-apiserver and
// etcd (envtest; no scheduler, so pods stay Pending, which Vigil judges)
// with `bin/vigil controller` at its defaults, apart from the webhook,
// which is off. The population is 100 workloads of 100 replicas plus 300
// unique pods, all passing the walkthrough's policy.
func BenchmarkScale(b *testing.B) {
	s := startScale(b)
	baseline := s.memory(b, "0")
	b.Logf("controller idle, no pods: %s", baseline)

	began := time.Now()
	pods := s.populate(b, benchNamespace, scaleWorkloads, scaleReplicas, scaleUnique)
	created := time.Since(began)
	s.reports.waitCount(b, flipPolicy, reportsv1alpha2.ResultPass, len(pods))
	b.Logf("%d pods created in %s; every report written %s after the first create",
		len(pods), created.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))

	b.Run("convergence", func(b *testing.B) {
		flip := func(body string, want reportsv1alpha2.Result) (time.Duration, clientUse, cpuTimes) {
			before, cpu := s.clientUse(b), cpuNow(b)
			limit := s.sampleLimit(b)
			began := time.Now()
			s.setFlipBody(b, body)
			s.reports.waitCount(b, flipPolicy, want, len(pods))
			took := time.Since(began)
			b.Logf("the pacer's limit during the flip to %s: %s", want, limit())
			return took, s.clientUse(b).minus(before), cpuNow(b).minus(cpu)
		}
		// 40 s, about 200 creates: the p99 of 100 would be their maximum.
		idle := s.neighbourCreates(b, "idle", func() { time.Sleep(40 * time.Second) })
		profiled := s.profileCPU(b, "flip", 30*time.Second)
		var toFail time.Duration
		var failUse clientUse
		var failCPU cpuTimes
		busy := s.neighbourCreates(b, "flip", func() { toFail, failUse, failCPU = flip(failBody, reportsv1alpha2.ResultFail) })
		profiled()
		b.Logf("another client's pod creates (the controller manager's, 5 a second), API server otherwise idle: %s", idle)
		b.Logf("the same during the policy change:                                                      %s", busy)
		b.ReportMetric(ms(idle.p99), "neighbour-idle-p99-ms")
		b.ReportMetric(ms(busy.p99), "neighbour-flip-p99-ms")
		b.ReportMetric(float64(busy.p99)/float64(idle.p99), "neighbour-p99-ratio")
		toPass, passUse, passCPU := flip(passBody, reportsv1alpha2.ResultPass)
		b.Logf("policy change, every report pass -> fail: %s; fail -> pass: %s", toFail.Round(time.Millisecond), toPass.Round(time.Millisecond))
		b.Logf("Vigil's requests to the API server, pass -> fail: %s", failUse.per(len(pods)))
		b.Logf("Vigil's requests to the API server, fail -> pass: %s", passUse.per(len(pods)))

		// The physical floor: the same number of report-sized creates at the
		// concurrency that gives this API server its best throughput, found
		// by a sweep; then Vigil's own concurrency, as issue 13 measured.
		best, curve := s.floorCurve(b, min(2000, len(pods)))
		b.Logf("write throughput by concurrency (%d creates each): %s", min(2000, len(pods)), curve)
		floor := s.writeFloor(b, "best", len(pods), best)
		at4 := s.writeFloor(b, "vigil", len(pods), benchWorkers)
		b.Logf("write floor, %d reports at concurrency %d (best): %s", len(pods), best, floor)
		b.Logf("write floor, %d reports at concurrency %d (Vigil's default workers): %s", len(pods), benchWorkers, at4)
		// Where the time goes: the CPU each process used per report
		// written, during the flips and during the floor's writes.
		b.Logf("CPU ms per report, flip pass -> fail (with the neighbour): %s", failCPU.per(len(pods)))
		b.Logf("CPU ms per report, flip fail -> pass:                       %s", passCPU.per(len(pods)))
		b.Logf("CPU ms per report, floor creates at %d:                    %s", best, floor.createCPU.per(len(pods)))
		b.Logf("CPU ms per report, floor updates at %d:                    %s", best, floor.updateCPU.per(len(pods)))
		b.Logf("CPU ms per report, floor updates at %d:                     %s", benchWorkers, at4.updateCPU.per(len(pods)))
		// The trade any writer of these reports faces on this machine, not
		// only Vigil: updates at a few concurrencies with the neighbour
		// creating pods beside them. It runs last, as its tens of
		// thousands of updates would slow the floors, and deletes the
		// floors' reports first. The API server's idle p99 is not what it
		// was before the flips even then, so the ratios are against an
		// idle sample taken just before.
		s.deleteFloorReports(b)
		idleNow, points := s.frontier(b, min(2000, len(pods)), 40*time.Second)
		b.Logf("the neighbour's creates again, API server otherwise idle: %s", idleNow)
		for _, p := range points {
			b.Logf("report updates at concurrency %d: %.0f/s; the neighbour meanwhile: %s (p50 %.2f, p99 %.2f times idle)",
				p.workers, p.rate, p.neighbour, float64(p.neighbour.p50)/float64(idleNow.p50), float64(p.neighbour.p99)/float64(idleNow.p99))
		}
		b.Logf("Vigil's flip pass -> fail: %.0f reports/s; the neighbour meanwhile: p50 %.2f, p99 %.2f times idle",
			float64(len(pods))/toFail.Seconds(), float64(busy.p50)/float64(idle.p50), float64(busy.p99)/float64(idle.p99))
		if best, ok := fastestWithin(points, idleNow, 2); ok {
			at := time.Duration(float64(len(pods)) / best.rate * float64(time.Second))
			b.Logf("the fastest of these that kept the neighbour's p99 within 2 times idle: concurrency %d; %d updates at its rate take %s, %.2f times the best create floor",
				best.workers, len(pods), at.Round(time.Millisecond), at.Seconds()/floor.create.Seconds())
			b.ReportMetric(at.Seconds()/floor.create.Seconds(), "frontier-ratio-floor")
		} else {
			b.Logf("no concurrency kept the neighbour's p99 within 2 times idle")
		}
		b.ReportMetric(passCPU.msPer("kube-apiserver", len(pods)), "apiserver-cpu-ms/flip-write")
		b.ReportMetric(floor.updateCPU.msPer("kube-apiserver", len(pods)), "apiserver-cpu-ms/floor-update")
		b.ReportMetric(passCPU.msPer("vigil", len(pods)), "vigil-cpu-ms/flip-write")
		b.ReportMetric(toFail.Seconds(), "flip-to-fail-s")
		b.ReportMetric(toPass.Seconds(), "flip-to-pass-s")
		b.ReportMetric(failUse.total()/float64(len(pods)), "requests/pod")
		b.ReportMetric(failUse.throttled.Seconds(), "throttled-s")
		b.ReportMetric(float64(best), "floor-concurrency")
		b.ReportMetric(floor.create.Seconds(), "floor-create-s")
		b.ReportMetric(floor.update.Seconds(), "floor-update-s")
		b.ReportMetric(floor.apply.Seconds(), "floor-apply-s")
		b.ReportMetric(at4.create.Seconds(), "floor-vigil-create-s")
		b.ReportMetric(at4.update.Seconds(), "floor-vigil-update-s")
		b.ReportMetric(at4.apply.Seconds(), "floor-vigil-apply-s")
		b.ReportMetric(toFail.Seconds()/floor.create.Seconds(), "ratio-floor")
		b.ReportMetric(toFail.Seconds()/floor.update.Seconds(), "ratio-floor-update")
		b.ReportMetric(toFail.Seconds()/at4.create.Seconds(), "ratio-floor-vigil-create")
		b.ReportMetric(toFail.Seconds()/at4.apply.Seconds(), "ratio-floor-vigil-apply")
	})

	b.Run("change-to-report", func(b *testing.B) {
		const probes = 400
		churn := s.churn(b, pods)
		delays := make([]time.Duration, 0, probes)
		unique := pods[len(pods)-scaleUnique:]
		for i := range probes {
			p := unique[rand.IntN(len(unique))]
			on := !s.reports.has(p, probePolicy)
			began := time.Now()
			wait := s.reports.await(p, func(results map[string]reportsv1alpha2.Result) bool {
				_, has := results[probePolicy]
				return has == on
			})
			s.setProbeLabel(b, p, on)
			select {
			case seen := <-wait:
				delays = append(delays, seen.Sub(began))
			case <-time.After(time.Minute):
				b.Fatalf("probe %d: the report of %s did not follow its label within a minute", i, p)
			}
			time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
		}
		done := churn()
		d := summarize(delays)
		b.Logf("pod label change to report change, under churn of %s: %s", done, d)
		b.ReportMetric(ms(d.p50), "p50-ms")
		b.ReportMetric(ms(d.p99), "p99-ms")
		b.ReportMetric(ms(d.max), "max-ms")
	})

	b.Run("memory", func(b *testing.B) {
		at10k := s.memory(b, strconv.Itoa(len(pods)))
		more := s.populate(b, "bench-2", 0, 0, memoryPods-len(pods))
		s.reports.waitCount(b, flipPolicy, reportsv1alpha2.ResultPass, len(pods)+len(more))
		at30k := s.memory(b, strconv.Itoa(len(pods)+len(more)))
		n10, n30 := float64(len(pods)), float64(len(pods)+len(more))
		b.Logf("no pods: %s", baseline)
		b.Logf("%d pods: %s", len(pods), at10k)
		b.Logf("%d pods: %s", len(pods)+len(more), at30k)
		b.ReportMetric(at10k.rss/(1<<20), "rss-10k-MiB")
		b.ReportMetric(at30k.rss/(1<<20), "rss-30k-MiB")
		b.ReportMetric(at10k.heap/(1<<20), "heap-10k-MiB")
		b.ReportMetric(at30k.heap/(1<<20), "heap-30k-MiB")
		b.ReportMetric((at30k.heap-baseline.heap)/n30, "heap-B/pod")
		b.ReportMetric((at30k.rss-baseline.rss)/n30, "rss-B/pod")
		b.ReportMetric((at30k.heap-at10k.heap)/(n30-n10), "heap-marginal-B/pod")
	})
}

// scale is the environment of BenchmarkScale.
type scale struct {
	c         client.Client
	neighbour client.Client // the controller manager's identity
	vigil     *controllerProcess
	pprofAddr string
	reports   *reportWatch
	admin     *rest.Config // kube-apiserver's administrator, for its profiles
}

func startScale(b *testing.B) *scale {
	b.Helper()
	cluster := startEnvCluster(b)
	s := &scale{c: benchClient(b, cluster.Kubeconfig), pprofAddr: "127.0.0.1:" + strconv.Itoa(freePort(b)), admin: benchConfig(b, cluster.Kubeconfig)}
	cluster.namespace(b, benchNamespace, true)
	cluster.namespace(b, "bench-2", true)
	cluster.namespace(b, "floor", false)
	ctx := b.Context()
	var cip v1beta1.ClusterImagePolicy
	if err := yaml.Unmarshal([]byte(flipPolicyYAML(passBody)), &cip); err != nil {
		b.Fatal(err)
	}
	probe := &v1beta1.ClusterImagePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: probePolicy},
		Spec: v1beta1.ClusterImagePolicySpec{
			Images:      []v1beta1.ImagePattern{{Glob: "**"}},
			Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: "pass"}}},
			Match: []v1beta1.MatchResource{{
				Version: "v1", Resource: "pods",
				ResourceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{probeLabel: "on"}},
			}},
		},
	}
	for _, p := range []*v1beta1.ClusterImagePolicy{&cip, probe} {
		if err := s.c.Create(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	s.reports = watchReports(b, benchConfig(b, cluster.Kubeconfig))
	// Vigil runs as its service account, not as an administrator (whose
	// requests API priority and fairness exempts), with the priority level
	// and flow schemas of config/manager/flowcontrol.yaml installed, as in
	// a cluster; and another client, the controller manager, creates pods
	// beside it (see neighbour).
	installFlowControl(b, s.c)
	asVigil := *cluster
	asVigil.Kubeconfig = cluster.userKubeconfig(b, "system:serviceaccount:vigil-system:vigil-controller", "system:serviceaccounts", "system:serviceaccounts:vigil-system")
	grantClusterAdmin(b, s.c, "system:serviceaccount:vigil-system:vigil-controller")
	cm := cluster.userKubeconfig(b, "system:kube-controller-manager")
	grantClusterAdmin(b, s.c, "system:kube-controller-manager")
	cluster.namespace(b, "neighbour", false)
	s.neighbour = benchClient(b, cm)
	// One replica at its defaults, with Go's profiles served for
	// VIGIL_BENCH_PROFILES.
	// VIGIL_BENCH_ARGS adds flags, to compare settings (say "--workers 16").
	flags := append([]string{"--leader-elect=false", "--pprof-bind-address", s.pprofAddr}, strings.Fields(os.Getenv("VIGIL_BENCH_ARGS"))...)
	s.vigil = startControllerProcess(b, &asVigil, "bench", flags...)
	waitFor(b, time.Minute, "vigil controller's metrics", func() (bool, string) {
		_, err := scrape(b, s.vigil.MetricsAddr)
		return err == nil, fmt.Sprint(err, "\n", s.vigil.tail(20))
	})
	return s
}

// flipPolicyYAML is the flip policy with a CUE body.
func flipPolicyYAML(body string) string {
	cip := v1beta1.ClusterImagePolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy.sigstore.dev/v1beta1", Kind: "ClusterImagePolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: flipPolicy},
		Spec: v1beta1.ClusterImagePolicySpec{
			Images:      []v1beta1.ImagePattern{{Glob: "**"}},
			Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: "pass"}}},
			Mode:        "enforce",
			Policy:      &v1beta1.Policy{Type: "cue", Data: body, IncludeSpec: ptr.To(true)},
		},
	}
	out, err := yaml.Marshal(&cip)
	if err != nil {
		panic(err)
	}
	return string(out)
}

// setFlipBody edits the flip policy's CUE.
func (s *scale) setFlipBody(b *testing.B, body string) {
	b.Helper()
	// Vigil writes the policy's status meanwhile: retry on conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cip v1beta1.ClusterImagePolicy
		if err := s.c.Get(b.Context(), client.ObjectKey{Name: flipPolicy}, &cip); err != nil {
			return err
		}
		cip.Spec.Policy.Data = body
		return s.c.Update(b.Context(), &cip)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// setProbeLabel puts the probe label on the pod key, or takes it off.
func (s *scale) setProbeLabel(b *testing.B, key types.NamespacedName, on bool) {
	b.Helper()
	value := any(nil)
	if on {
		value = "on"
	}
	patch := map[string]any{"metadata": map[string]any{"labels": map[string]any{probeLabel: value}}}
	data, err := json.Marshal(patch)
	if err != nil {
		b.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := s.c.Patch(b.Context(), pod, client.RawPatch(types.MergePatchType, data)); err != nil {
		b.Fatalf("label pod %s: %v", key, err)
	}
}

// populate creates workloads×replicas replicas and unique pods in ns, with
// createWorkers at once, and returns their keys, the unique pods last.
func (s *scale) populate(b *testing.B, ns string, workloads, replicas, unique int) []types.NamespacedName {
	b.Helper()
	var pods []*corev1.Pod
	for w := range workloads {
		for r := range replicas {
			pods = append(pods, replica(ns, w, r, uint(w)))
		}
	}
	for u := range unique {
		p := replica(ns, scaleWorkloads+u, 0, uint(u))
		p.Name = fmt.Sprintf("unique-%05d", u)
		p.OwnerReferences = nil
		pods = append(pods, p)
	}
	keys := make([]types.NamespacedName, len(pods))
	for i, p := range pods {
		keys[i] = client.ObjectKeyFromObject(p)
	}
	parallel(b, createWorkers, len(pods), func(i int) error {
		return s.c.Create(b.Context(), pods[i])
	})
	return keys
}

// floor is the time n report-sized writes took at one concurrency: creates,
// updates of every result, and the same change as a server-side apply.
type floor struct {
	create, update, apply time.Duration
	// CPU used by each part of the cluster while it created and updated.
	createCPU, updateCPU cpuTimes
}

func (f floor) String() string {
	return fmt.Sprintf("create %s, update %s, server-side apply %s",
		f.create.Round(time.Millisecond), f.update.Round(time.Millisecond), f.apply.Round(time.Millisecond))
}

// floorReports returns n reports named after run, of the size and shape
// Vigil writes (a sample of its own), in a namespace Vigil does not watch.
func (s *scale) floorReports(b *testing.B, run string, n int) []*reportsv1alpha2.PolicyReport {
	b.Helper()
	sample := s.reports.sample(b)
	reports := make([]*reportsv1alpha2.PolicyReport, n)
	for i := range reports {
		r := &reportsv1alpha2.PolicyReport{
			ObjectMeta: metav1.ObjectMeta{Namespace: "floor", Name: fmt.Sprintf("floor-%s-%05d", run, i)},
			Scope:      sample.Scope, Summary: sample.Summary, Results: sample.Results,
		}
		// Not Vigil's: no managed-by label, so Vigil's cache never sees it.
		r.Labels = map[string]string{"app.kubernetes.io/part-of": "floor"}
		reports[i] = r
	}
	return reports
}

// floorCurve creates n reports at each of a range of concurrencies and
// returns the concurrency of the best throughput, with the curve in words.
func (s *scale) floorCurve(b *testing.B, n int) (best int, curve string) {
	b.Helper()
	var parts []string
	bestRate := 0.0
	for _, c := range []int{1, 4, 16, 32, 64, 128} {
		reports := s.floorReports(b, "c"+strconv.Itoa(c), n)
		began := time.Now()
		parallel(b, c, n, func(i int) error { return s.c.Create(b.Context(), reports[i]) })
		rate := float64(n) / time.Since(began).Seconds()
		parts = append(parts, fmt.Sprintf("%d: %.0f/s", c, rate))
		if rate > bestRate {
			best, bestRate = c, rate
		}
	}
	return best, strings.Join(parts, ", ")
}

// writeFloor times the same API server creating, updating, then applying
// (server-side, forcing ownership, as Vigil does) n reports of the size
// Vigil writes, workers at a time, with no client-side rate limit: the
// floor of a policy change that rewrites n reports.
func (s *scale) writeFloor(b *testing.B, run string, n, workers int) floor {
	b.Helper()
	reports := s.floorReports(b, run, n)
	var f floor
	cpu := cpuNow(b)
	began := time.Now()
	parallel(b, workers, n, func(i int) error { return s.c.Create(b.Context(), reports[i]) })
	f.create = time.Since(began)
	afterCreates := cpuNow(b)
	f.createCPU, cpu = afterCreates.minus(cpu), afterCreates
	changed := func(r *reportsv1alpha2.PolicyReport, note string) {
		r.Results = slices.Clone(r.Results)
		for j := range r.Results {
			r.Results[j].Description += note
		}
	}
	profiled := s.profileCPU(b, "floor-update-"+run, 15*time.Second)
	began = time.Now()
	parallel(b, workers, n, func(i int) error {
		changed(reports[i], " (updated)")
		return s.c.Update(b.Context(), reports[i])
	})
	f.update = time.Since(began)
	f.updateCPU = cpuNow(b).minus(cpu)
	profiled()
	began = time.Now()
	parallel(b, workers, n, func(i int) error {
		r := reports[i].DeepCopy()
		changed(r, " (applied)")
		r.ResourceVersion, r.UID, r.CreationTimestamp, r.ManagedFields = "", "", metav1.Time{}, nil
		r.SetGroupVersionKind(reportsv1alpha2.GroupVersion.WithKind("PolicyReport"))
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(r)
		if err != nil {
			return err
		}
		obj := &unstructured.Unstructured{Object: u}
		unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
		return s.c.Apply(b.Context(), client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("floor"), client.ForceOwnership)
	})
	f.apply = time.Since(began)
	return f
}

// deleteFloorReports deletes the floors' reports, one request each: one
// request for tens of thousands of them outlasts a request's time.
func (s *scale) deleteFloorReports(b *testing.B) {
	b.Helper()
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(reportsv1alpha2.GroupVersion.WithKind("PolicyReportList"))
	if err := s.c.List(b.Context(), list, client.InNamespace("floor")); err != nil {
		b.Fatalf("list the floors' reports: %v", err)
	}
	parallel(b, 64, len(list.Items), func(i int) error {
		r := &list.Items[i]
		r.SetGroupVersionKind(reportsv1alpha2.GroupVersion.WithKind("PolicyReport"))
		return client.IgnoreNotFound(s.c.Delete(b.Context(), r))
	})
}

// frontierPoint is one concurrency of frontier: the rate of report updates
// and another client's pod create latencies meanwhile.
type frontierPoint struct {
	workers   int
	rate      float64 // updates a second
	neighbour latencies
}

// frontier measures the trade between a policy change's speed and its
// neighbour's latency on this API server, for any writer: with the
// neighbour creating pods, workers update n reports of Vigil's size and
// shape in turn, at each of a few concurrencies, for d each; Vigil is idle
// meanwhile. It returns the neighbour's latencies over d of an otherwise
// idle API server, taken just before, and a point per concurrency.
func (s *scale) frontier(b *testing.B, n int, d time.Duration) (latencies, []frontierPoint) {
	b.Helper()
	reports := s.floorReports(b, "frontier", n)
	descriptions := make([]string, len(reports[0].Results))
	for j, r := range reports[0].Results {
		descriptions[j] = r.Description
	}
	for _, r := range reports {
		r.Results = slices.Clone(r.Results)
	}
	parallel(b, benchWorkers, n, func(i int) error { return s.c.Create(b.Context(), reports[i]) })
	idle := s.neighbourCreates(b, "frontier-idle", func() { time.Sleep(d) })
	var points []frontierPoint
	var seq atomic.Int64 // every update changes the report: no update is a no-op
	for _, c := range []int{1, 2, 3, 4, 8} {
		var updates atomic.Int64
		var failed atomic.Value
		var took time.Duration
		lat := s.neighbourCreates(b, "frontier-"+strconv.Itoa(c), func() {
			// Each update runs to its end, so every report's
			// resourceVersion stays the stored one for the next round.
			began := time.Now()
			deadline := began.Add(d)
			var wg sync.WaitGroup
			for w := range c {
				// Worker w updates the reports i ≡ w (mod c), from w
				// again after the last: no two workers write the same
				// report.
				wg.Go(func() {
					for i := w; time.Now().Before(deadline); i += c {
						if i >= n {
							i = w
						}
						r, k := reports[i], seq.Add(1)
						for j := range r.Results {
							r.Results[j].Description = fmt.Sprintf("%s (update %d)", descriptions[j], k)
						}
						if err := s.c.Update(b.Context(), r); err != nil {
							failed.CompareAndSwap(nil, fmt.Errorf("update %s: %w", r.Name, err))
							return
						}
						updates.Add(1)
					}
				})
			}
			wg.Wait()
			took = time.Since(began)
		})
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		points = append(points, frontierPoint{workers: c, rate: float64(updates.Load()) / took.Seconds(), neighbour: lat})
	}
	return idle, points
}

// fastestWithin is the point of the highest rate whose neighbour p99 stayed
// within times its idle p99.
func fastestWithin(points []frontierPoint, idle latencies, times float64) (frontierPoint, bool) {
	var best frontierPoint
	for _, p := range points {
		if float64(p.neighbour.p99) <= times*float64(idle.p99) && p.rate > best.rate {
			best = p
		}
	}
	return best, best.rate > 0
}

func TestFastestWithin(t *testing.T) {
	idle := summarize([]time.Duration{10 * time.Millisecond})
	point := func(workers int, rate float64, p99 time.Duration) frontierPoint {
		return frontierPoint{workers: workers, rate: rate, neighbour: summarize([]time.Duration{p99})}
	}
	points := []frontierPoint{point(1, 200, 12*time.Millisecond), point(2, 300, 20*time.Millisecond), point(4, 380, 21*time.Millisecond)}
	if best, ok := fastestWithin(points, idle, 2); !ok || best.workers != 2 {
		t.Fatalf("fastest within 2 times a 10 ms p99: got concurrency %d (%v), want 2 (20 ms is within, 21 ms is not)", best.workers, ok)
	}
	if best, ok := fastestWithin(points[2:], idle, 2); ok {
		t.Fatalf("no point within 2 times: got concurrency %d", best.workers)
	}
}

// neighbourCreates creates pods as the controller manager would, five a
// second in a namespace Vigil does not judge, while during runs, and
// returns their latencies.
func (s *scale) neighbourCreates(b *testing.B, run string, during func()) latencies {
	b.Helper()
	ctx, stop := context.WithCancel(b.Context())
	var took []time.Duration
	var failed atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p := replica("neighbour", 0, i, 0)
			p.Name = fmt.Sprintf("%s-%05d", run, i)
			p.OwnerReferences = nil
			began := time.Now()
			if err := s.neighbour.Create(ctx, p); err != nil {
				if ctx.Err() == nil {
					failed.CompareAndSwap(nil, err)
				}
				return
			}
			took = append(took, time.Since(began))
		}
	})
	during()
	stop()
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("the neighbour's pod create: %v", err)
	}
	return summarize(took)
}

// installFlowControl creates the priority level and flow schemas Vigil
// ships (config/manager/flowcontrol.yaml).
func installFlowControl(b *testing.B, c client.Client) {
	b.Helper()
	for doc := range strings.SplitSeq(string(config.FlowControl), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			b.Fatalf("config/manager/flowcontrol.yaml: %v", err)
		}
		if err := c.Create(b.Context(), u); err != nil {
			b.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// grantClusterAdmin binds cluster-admin to user: the benchmarks measure
// speed, and RBAC is tested elsewhere (config/rbac_test.go).
func grantClusterAdmin(b *testing.B, c client.Client, user string) {
	b.Helper()
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-" + strings.NewReplacer(":", "-").Replace(user)},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}
	if err := c.Create(b.Context(), binding); err != nil {
		b.Fatal(err)
	}
}

// clientUse is what Vigil's client-go reports of its requests to the API
// server (rest_client_requests_total by method) and of the time its token
// bucket held them back (rest_client_rate_limiter_duration_seconds).
type clientUse struct {
	byMethod  map[string]float64
	throttled time.Duration
}

func (s *scale) clientUse(b *testing.B) clientUse {
	b.Helper()
	samples, err := scrape(b, s.vigil.MetricsAddr)
	if err != nil {
		b.Fatalf("scrape vigil controller: %v", err)
	}
	u := clientUse{byMethod: map[string]float64{}}
	for _, x := range samples {
		switch x.name {
		case "rest_client_requests_total":
			u.byMethod[x.labels["method"]] += x.value
		case "rest_client_rate_limiter_duration_seconds_sum":
			u.throttled += time.Duration(x.value * float64(time.Second))
		}
	}
	return u
}

// sampleLimit reads the pacer's limit (vigil_api_concurrency_limit) every
// second until the returned function is called, which says its
// mean and maximum over the samples.
func (s *scale) sampleLimit(b *testing.B) (stop func() string) {
	b.Helper()
	done, result := make(chan struct{}), make(chan string, 1)
	go func() {
		var sum, most float64
		n := 0
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				if n == 0 {
					result <- "no samples"
				} else {
					result <- fmt.Sprintf("mean %.1f, max %.0f requests in flight allowed (%d samples)", sum/float64(n), most, n)
				}
				return
			case <-tick.C:
			}
			samples, err := scrape(b, s.vigil.MetricsAddr)
			if err != nil {
				continue
			}
			for _, x := range samples {
				if x.name == "vigil_api_concurrency_limit" {
					sum, most, n = sum+x.value, max(most, x.value), n+1
				}
			}
		}
	}()
	return func() string {
		close(done)
		return <-result
	}
}

func (u clientUse) minus(v clientUse) clientUse {
	d := clientUse{byMethod: map[string]float64{}, throttled: u.throttled - v.throttled}
	for m, n := range u.byMethod {
		if n -= v.byMethod[m]; n != 0 {
			d.byMethod[m] = n
		}
	}
	return d
}

func (u clientUse) total() float64 {
	t := 0.0
	for _, n := range u.byMethod {
		t += n
	}
	return t
}

// per says the requests per judged pod, by method, and the throttling.
func (u clientUse) per(pods int) string {
	methods := slices.Sorted(maps.Keys(u.byMethod))
	parts := make([]string, 0, len(methods))
	for _, m := range methods {
		parts = append(parts, fmt.Sprintf("%s %.0f (%.2f/pod)", m, u.byMethod[m], u.byMethod[m]/float64(pods)))
	}
	return fmt.Sprintf("%s; held back by the client-side rate limit for %s in all", strings.Join(parts, ", "), u.throttled.Round(time.Millisecond))
}

// churn starts background changes among the pods (a label edit of a replica,
// a unique pod created and another deleted, about 20 of each per second)
// and returns a function that stops them and says what they did.
func (s *scale) churn(b *testing.B, pods []types.NamespacedName) (stop func() string) {
	ctx, cancel := context.WithCancel(b.Context())
	var edits, creates, deletes atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var made []string
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p := pods[rand.IntN(len(pods)-scaleUnique)]
			patch := fmt.Sprintf(`{"metadata":{"labels":{"vigil.bench/churn":"%d"}}}`, i)
			if err := s.c.Patch(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}, client.RawPatch(types.MergePatchType, []byte(patch))); err == nil {
				edits.Add(1)
			}
			np := replica(benchNamespace, scaleWorkloads+i%scaleUnique, i, uint(i))
			np.Name = fmt.Sprintf("churn-%06d", i)
			if err := s.c.Create(ctx, np); err == nil {
				creates.Add(1)
				made = append(made, np.Name)
			}
			if len(made) > 50 {
				old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: made[0]}}
				if err := s.c.Delete(ctx, old, client.GracePeriodSeconds(0)); err == nil {
					deletes.Add(1)
				}
				made = made[1:]
			}
		}
	})
	began := time.Now()
	return func() string {
		cancel()
		wg.Wait()
		secs := time.Since(began).Seconds()
		return fmt.Sprintf("%.0f label edits, %.0f creates, %.0f deletes per second",
			float64(edits.Load())/secs, float64(creates.Load())/secs, float64(deletes.Load())/secs)
	}
}

// replica is replica r of workload w in ns, as the API server stores a
// Deployment's pod: owner, labels, defaults, the projected service-account
// token volume mounted, resources and env. caps picks default capabilities
// added to the container (a bit set), so workloads differ in what the
// walkthrough's policy reads.
func replica(ns string, w, r int, caps uint) *corev1.Pod {
	app := fmt.Sprintf("app-%03d", w)
	hash := fmt.Sprintf("%010x", uint64(w+1)*2654435761)[:10]
	token := fmt.Sprintf("kube-api-access-%05x", uint32(r*7919+w*104729)&0xfffff)
	var add []corev1.Capability
	for i, c := range []corev1.Capability{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
		"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"} {
		if caps&(1<<i) != 0 {
			add = append(add, c)
		}
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s-%s-%05x", app, hash, uint32(r*40503+w)&0xfffff),
			GenerateName: app + "-" + hash + "-",
			Labels:       map[string]string{"app": app, "pod-template-hash": hash},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + hash,
				UID: types.UID(fmt.Sprintf("%08x-1111-4000-8000-000000000000", w)), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{
			NodeName: fmt.Sprintf("node-%03d", (r*31+w)%50),
			// The token volume is the pod's own here, as the benchmark's
			// API server runs no ServiceAccount admission.
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{
				Name:  "app",
				Image: fmt.Sprintf("registry.example.com/team-%02d/%s:v1.%d", w%17, app, w%5),
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
				Env:   []corev1.EnvVar{{Name: "APP", Value: app}, {Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: add}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
					PeriodSeconds: 10},
			}},
		},
	}
	return testenv.AsAdmitted(p, token)
}

// parallel runs do(0..n-1) on workers goroutines and fails b on the first error.
func parallel(b *testing.B, workers, n int, do func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := do(i); err != nil {
					first.CompareAndSwap(nil, fmt.Errorf("item %d: %w", i, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// benchConfig is the configuration of kubeconfig's cluster without a
// client-side rate limit: the benchmark's own requests must not be what
// limits it.
func benchConfig(b *testing.B, kubeconfig string) *rest.Config {
	b.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	return cfg
}

// benchClient is an unthrottled client of the cluster of kubeconfig.
func benchClient(b *testing.B, kubeconfig string) client.Client {
	b.Helper()
	c, err := client.New(benchConfig(b, kubeconfig), client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// footprint is a controller's memory: resident set and live heap.
type footprint struct{ rss, heap float64 }

func (f footprint) String() string {
	return fmt.Sprintf("RSS %.1f MiB, live heap %.1f MiB", f.rss/(1<<20), f.heap/(1<<20))
}

// memory waits for the controller to settle (its evaluation counter still
// for two seconds), then reads its RSS and the live heap the Go runtime
// measured at its last collection, taking the smallest of ten readings a
// second apart, since a collection may run between them.
//
// With VIGIL_BENCH_PROFILES=DIR it also saves a heap profile there, named
// after what, for `go tool pprof`.
func (s *scale) memory(b *testing.B, what string) footprint {
	b.Helper()
	defer s.saveHeapProfile(b, what)
	last := -1.0
	waitFor(b, scaleTimeout, "the controller to settle", func() (bool, string) {
		samples, err := scrape(b, s.vigil.MetricsAddr)
		if err != nil {
			return false, err.Error()
		}
		n, _ := metricSum(samples, "vigil_evaluations_total", nil)
		settled := n == last
		last = n
		time.Sleep(2 * time.Second)
		return settled, fmt.Sprintf("%v evaluations", n)
	})
	f := footprint{rss: -1, heap: -1}
	for range 10 {
		samples, err := scrape(b, s.vigil.MetricsAddr)
		if err != nil {
			b.Fatal(err)
		}
		rss, ok1 := metricSum(samples, "process_resident_memory_bytes", nil)
		heap, ok2 := metricSum(samples, "go_gc_heap_live_bytes", nil)
		if !ok1 || !ok2 {
			b.Fatalf("the controller does not export process_resident_memory_bytes and go_gc_heap_live_bytes")
		}
		if f.rss < 0 || rss < f.rss {
			f.rss = rss
		}
		if f.heap < 0 || heap < f.heap {
			f.heap = heap
		}
		time.Sleep(time.Second)
	}
	return f
}

// profileCPU starts a CPU profile of the controller for d, saved as
// $VIGIL_BENCH_PROFILES/cpu-WHAT.pb.gz when that variable is set; the
// function returned waits for it.
func (s *scale) profileCPU(b *testing.B, what string, d time.Duration) (wait func()) {
	dir := os.Getenv("VIGIL_BENCH_PROFILES")
	if dir == "" {
		return func() {}
	}
	done := make(chan error, 2)
	path := fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds()))
	go func() { done <- s.saveProfile(path, filepath.Join(dir, "cpu-"+what+".pb.gz")) }()
	go func() { done <- s.saveAPIServerProfile(path, filepath.Join(dir, "apiserver-cpu-"+what+".pb.gz")) }()
	return func() {
		for range 2 {
			if err := <-done; err != nil {
				b.Error(err)
			}
		}
	}
}

// saveAPIServerProfile saves kube-apiserver's profile at path (it serves
// Go's profiles to its administrator) as file.
func (s *scale) saveAPIServerProfile(path, file string) error {
	hc, err := rest.HTTPClientFor(s.admin)
	if err != nil {
		return err
	}
	resp, err := hc.Get(strings.TrimSuffix(s.admin.Host, "/") + path)
	return saveBody(resp, err, file)
}

func (s *scale) saveProfile(path, file string) error {
	resp, err := http.Get("http://" + s.pprofAddr + path) // #nosec G107 -- a local test server
	return saveBody(resp, err, file)
}

// saveBody saves the body of a profile's answer as file.
func saveBody(resp *http.Response, err error, file string) error {
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", resp.Request.URL.Path, resp.Status)
	}
	return os.WriteFile(file, data, 0o600)
}

// saveHeapProfile saves the controller's heap profile as
// $VIGIL_BENCH_PROFILES/heap-WHAT.pb.gz, when that variable is set.
func (s *scale) saveHeapProfile(b *testing.B, what string) {
	if dir := os.Getenv("VIGIL_BENCH_PROFILES"); dir != "" {
		if err := s.saveProfile("/debug/pprof/heap?gc=1", filepath.Join(dir, "heap-"+what+".pb.gz")); err != nil {
			b.Error(err)
		}
	}
}

// reportWatch follows every PolicyReport through a watch, keeping each pod's
// results and the number of pods per policy and result.
type reportWatch struct {
	mu      sync.Mutex
	results map[types.NamespacedName]map[string]reportsv1alpha2.Result
	counts  map[string]map[reportsv1alpha2.Result]int
	waiters map[types.NamespacedName]waiter
	last    *reportsv1alpha2.PolicyReport
	changed chan struct{}
}

type waiter struct {
	ok   func(map[string]reportsv1alpha2.Result) bool
	seen chan time.Time
}

func watchReports(b *testing.B, cfg *rest.Config) *reportWatch {
	b.Helper()
	w := &reportWatch{
		results: map[types.NamespacedName]map[string]reportsv1alpha2.Result{},
		counts:  map[string]map[reportsv1alpha2.Result]int{},
		waiters: map[types.NamespacedName]waiter{},
		changed: make(chan struct{}, 1),
	}
	c, err := cache.New(cfg, cache.Options{Scheme: testenv.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	inf, err := c.GetInformer(b.Context(), &reportsv1alpha2.PolicyReport{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.set(obj, false) },
		UpdateFunc: func(_, obj any) { w.set(obj, false) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			w.set(obj, true)
		},
	}); err != nil {
		b.Fatal(err)
	}
	go func() { _ = c.Start(b.Context()) }()
	if !c.WaitForCacheSync(b.Context()) {
		b.Fatal("the report watch did not sync")
	}
	return w
}

func (w *reportWatch) set(obj any, gone bool) {
	rep, ok := obj.(*reportsv1alpha2.PolicyReport)
	if !ok || rep.Scope == nil || rep.Namespace == "floor" {
		return
	}
	now := time.Now()
	key := types.NamespacedName{Namespace: rep.Namespace, Name: rep.Scope.Name}
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, r := range w.results[key] {
		w.counts[p][r]--
	}
	if gone {
		delete(w.results, key)
	} else {
		res := make(map[string]reportsv1alpha2.Result, len(rep.Results))
		for _, r := range rep.Results {
			res[r.Policy] = r.Result
			if w.counts[r.Policy] == nil {
				w.counts[r.Policy] = map[reportsv1alpha2.Result]int{}
			}
			w.counts[r.Policy][r.Result]++
		}
		w.results[key] = res
		w.last = rep
		if wt, ok := w.waiters[key]; ok && wt.ok(res) {
			wt.seen <- now
			delete(w.waiters, key)
		}
	}
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// waitCount waits until n pods have result want for policy.
func (w *reportWatch) waitCount(b *testing.B, policy string, want reportsv1alpha2.Result, n int) {
	b.Helper()
	deadline := time.After(scaleTimeout)
	for {
		w.mu.Lock()
		got := w.counts[policy][want]
		w.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-w.changed:
		case <-deadline:
			b.Fatalf("after %s, %d of %d reports say %s for %s", scaleTimeout, got, n, want, policy)
		}
	}
}

// has says whether the pod's report has a result for policy.
func (w *reportWatch) has(pod types.NamespacedName, policy string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.results[pod][policy]
	return ok
}

// await returns a channel that receives the time the pod's report is next
// seen satisfying ok.
func (w *reportWatch) await(pod types.NamespacedName, ok func(map[string]reportsv1alpha2.Result) bool) <-chan time.Time {
	seen := make(chan time.Time, 1)
	w.mu.Lock()
	w.waiters[pod] = waiter{ok: ok, seen: seen}
	w.mu.Unlock()
	return seen
}

// sample is a report Vigil wrote, as a model of a report's size.
func (w *reportWatch) sample(b *testing.B) *reportsv1alpha2.PolicyReport {
	b.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		b.Fatal("no report seen yet")
	}
	return w.last.DeepCopy()
}

// latencies summarises durations.
type latencies struct {
	n             int
	p50, p99, max time.Duration
}

func summarize(d []time.Duration) latencies {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return latencies{}
	}
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return latencies{n: len(s), p50: at(0.50), p99: at(0.99), max: s[len(s)-1]}
}

func (l latencies) String() string {
	return fmt.Sprintf("n=%d p50=%s p99=%s max=%s", l.n, l.p50.Round(10*time.Microsecond), l.p99.Round(10*time.Microsecond), l.max.Round(10*time.Microsecond))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
