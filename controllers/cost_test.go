package controllers_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/controllers"
	"github.com/vigil-dev/vigil/internal/report"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// requestCounter counts the requests a client sends, by method and path.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		if req.URL.Query().Get("watch") != "true" {
			c.mu.Lock()
			c.counts[req.Method+" "+req.URL.Path]++
			c.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (c *requestCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// What one pod change costs: one read of the pod and one decision, plus one
// write when the report changes, and never a second judgement because of
// Vigil's own write (issue 13). Counted from the requests the manager's
// client sends and vigil_evaluations_total.
func TestPodChangeCost(t *testing.T) {
	testenv.Integration(t)
	counter := &requestCounter{counts: map[string]int{}}
	counted := rest.CopyConfig(cfg)
	counted.WrapTransport = counter.wrap
	opts := controllers.DefaultOptions()
	// One worker: the queue is served in order, so once a report event
	// queued after another has been handled, so has the first (see quiet).
	opts.Workers = 1
	startVigilOn(t, counted, report.WGPolicy, opts, nil)

	ns := newNamespace("cost", true)
	create(t, ns)
	create(t, seedPolicy(t, "cost-caps", glob("cost")...))
	pod := newPod(ns.Name, "web", image("cost", "web"))
	create(t, pod)
	waitForResults(t, pod, results{"cost-caps": pass})

	// quiet waits until Vigil has handled every event so far: a report of
	// a pod that does not exist is an event on the same watch as Vigil's
	// own writes, queued after them, and Vigil deletes it when its turn
	// comes.
	sentinels := 0
	quiet := func() {
		t.Helper()
		sentinels++
		rep := staleReport(ns.Name, fmt.Sprintf("sentinel-%d", sentinels))
		create(t, rep)
		waitForGone(t, rep)
	}
	podPath := "/api/v1/namespaces/" + ns.Name + "/pods/" + pod.Name
	reportPath := "/apis/wgpolicyk8s.io/v1alpha2/namespaces/" + ns.Name + "/policyreports/" + string(pod.UID)
	judgements := func() float64 {
		return metricSum(t, "vigil_evaluations_total", map[string]string{"trigger": "pod"})
	}
	step := func(name string, change func(), wantWrites int) {
		t.Helper()
		quiet()
		before, judged := counter.snapshot(), judgements()
		change()
		eventually(t, settleTimeout, func() error {
			if judgements() == judged {
				return fmt.Errorf("%s: the pod was not judged", name)
			}
			return nil
		})
		quiet()
		// A sentinel's pod does not exist: it is never judged.
		after := counter.snapshot()
		gets := after["GET "+podPath] - before["GET "+podPath]
		// A report Vigil holds is updated at the version it holds: one PUT.
		writes := after["PUT "+reportPath] - before["PUT "+reportPath]
		decided := judgements() - judged
		var other []string
		for k, v := range after {
			if d := v - before[k]; d > 0 && k != "GET "+podPath && k != "PUT "+reportPath && !strings.Contains(k, "sentinel") && !isBookkeeping(k) {
				other = append(other, fmt.Sprintf("%s x%d", k, d))
			}
		}
		t.Logf("%s: %d GET of the pod, %v decision(s), %d report write(s), other requests %v", name, gets, decided, writes, other)
		if gets != 1 || decided != 1 || writes != wantWrites {
			t.Errorf("%s: %d GETs of the pod, %v decisions, %d report writes; want 1, 1, %d", name, gets, decided, writes, wantWrites)
		}
		if len(other) > 0 {
			t.Errorf("%s: other requests %v", name, other)
		}
	}

	step("label change", func() {
		update(t, pod, func(p *corev1.Pod) { p.Labels = map[string]string{"touched": "yes"} })
	}, 0)
	step("image no policy covers", func() {
		update(t, pod, func(p *corev1.Pod) { p.Spec.Containers[0].Image = "registry.test/elsewhere/web" })
	}, 1)
	waitForResults(t, pod, results{noPol: fail})
}

// What --clock-recheck costs (issue 18): a pod under a policy that reads the
// clock is judged again every ClockRecheck (here MinRecheck, the shortest
// allowed), and each such judgement is one GET of the pod and one decision,
// with no write while the result stands. Counted over two rounds of n pods.
func TestClockRecheckCost(t *testing.T) {
	testenv.Integration(t)
	const n, rounds = 10, 2
	counter := &requestCounter{counts: map[string]int{}}
	counted := rest.CopyConfig(cfg)
	counted.WrapTransport = counter.wrap
	opts := controllers.DefaultOptions()
	opts.ClockRecheck = controllers.MinRecheck
	startVigilOn(t, counted, report.WGPolicy, opts, nil)

	ns := newNamespace("clockcost", true)
	create(t, ns)
	create(t, newPolicy("clockcost-age", glob("clockcost"), func(c *v1beta1.ClusterImagePolicy) {
		c.Spec.Policy = &v1beta1.Policy{Type: "rego", Data: "package sigstore\nisCompliant { time.now_ns() > 0 }\n"}
	}))
	pods := make([]*corev1.Pod, n)
	for i := range pods {
		pods[i] = newPod(ns.Name, fmt.Sprintf("app-%02d", i), image("clockcost", "app"))
		create(t, pods[i])
	}
	for _, p := range pods {
		waitForResults(t, p, results{"clockcost-age": pass})
	}
	byTime := func() float64 {
		return metricSum(t, "vigil_evaluations_total", map[string]string{"trigger": "time"})
	}
	// between snapshots the requests once at least atLeast judgements were
	// made as time passed, while none is under way: their count stands
	// still for half a second before and after the snapshot.
	between := func(atLeast float64) (float64, map[string]int) {
		t.Helper()
		var judged float64
		var snap map[string]int
		eventually(t, settleTimeout+rounds*controllers.MinRecheck, func() error {
			j := byTime()
			if j < atLeast {
				return fmt.Errorf("%v judgements as time passed, want %v", j, atLeast)
			}
			time.Sleep(time.Second / 2)
			s := counter.snapshot()
			time.Sleep(time.Second / 2)
			if byTime() != j {
				return fmt.Errorf("judgements under way")
			}
			judged, snap = j, s
			return nil
		})
		return judged, snap
	}
	judged0, before := between(0)
	judged1, after := between(judged0 + rounds*n)

	podsPrefix := "GET /api/v1/namespaces/" + ns.Name + "/pods/"
	var gets int
	var other, bookkeeping []string
	for k, v := range after {
		d := v - before[k]
		switch {
		case d <= 0:
		case strings.HasPrefix(k, podsPrefix):
			gets += d
		case isBookkeeping(k):
			bookkeeping = append(bookkeeping, fmt.Sprintf("%s x%d", k, d))
		default:
			other = append(other, fmt.Sprintf("%s x%d", k, d))
		}
	}
	judged := judged1 - judged0
	t.Logf("%d pods, ClockRecheck %s: %v judgements as time passed, %d GETs of the pods, other requests %v, events and status %v",
		n, controllers.MinRecheck, judged, gets, other, bookkeeping)
	// Events and the policy's status follow changed results only; a status
	// write coalesced from the first judgements may still fall in the window.
	if judged < rounds*n || float64(gets) != judged || len(other) > 0 {
		t.Errorf("%v judgements as time passed, %d GETs of the pods, other requests %v; want at least %d judgements, one GET each, no report write",
			judged, gets, other, rounds*n)
	}
}

// isBookkeeping says whether a request is one a judgement may cause besides
// the pod's own: an event, or a policy's status when its pod counts change.
func isBookkeeping(request string) bool {
	return strings.Contains(request, "/events") || strings.HasSuffix(request, "/status")
}

// What a policy change costs over n running pods whose results all turn:
// a LIST of the pods per 500 of them, one report write per pod, plus at most
// one event;
// beyond that only the policy's status (a few patches, not one per pod).
// The bound is what docs/scale.md states.
func TestPolicyFlipCost(t *testing.T) {
	testenv.Integration(t)
	const n = 40
	counter := &requestCounter{counts: map[string]int{}}
	counted := rest.CopyConfig(cfg)
	counted.WrapTransport = counter.wrap
	startVigilOn(t, counted, report.WGPolicy, controllers.DefaultOptions(), nil)

	ns := newNamespace("flipcost", true)
	create(t, ns)
	cip := seedPolicy(t, "flipcost-caps", glob("flipcost")...)
	create(t, cip)
	pods := make([]*corev1.Pod, n)
	for i := range pods {
		pods[i] = newPod(ns.Name, fmt.Sprintf("web-%02d", i), image("flipcost", "web"))
		create(t, pods[i])
	}
	for _, p := range pods {
		waitForResults(t, p, results{"flipcost-caps": pass})
	}
	before := counter.snapshot()
	// Every pod restarts Always: this body fails them all.
	update(t, cip, func(c *v1beta1.ClusterImagePolicy) { c.Spec.Policy.Data = `spec: restartPolicy: "Never"` + "\n" })
	for _, p := range pods {
		waitForResults(t, p, results{"flipcost-caps": fail})
	}
	after := counter.snapshot()

	podsPrefix := "GET /api/v1/namespaces/" + ns.Name + "/pods/"
	// Every pod was queued: they are read a page (500 pods) at a time.
	podList := "GET /api/v1/namespaces/" + ns.Name + "/pods"
	// Vigil holds every report, at the version it wrote: each changes by
	// one update (PUT), never a second try as a server-side apply (PATCH).
	reportsPrefix := "PUT /apis/wgpolicyk8s.io/v1alpha2/namespaces/" + ns.Name + "/policyreports/"
	var gets, lists, writes, events, status int
	var other []string
	for k, v := range after {
		d := v - before[k]
		if d <= 0 {
			continue
		}
		switch {
		case k == podList:
			lists += d
		case strings.HasPrefix(k, podsPrefix):
			gets += d
		case strings.HasPrefix(k, reportsPrefix):
			writes += d
		case strings.Contains(k, "/events"):
			events += d
		case strings.HasSuffix(k, "/status"):
			status += d
		default:
			other = append(other, fmt.Sprintf("%s x%d", k, d))
		}
	}
	t.Logf("policy flip over %d pods: %d pod LISTs, %d pod GETs, %d report writes, %d event requests, %d status writes, other %v", n, lists, gets, writes, events, status, other)
	if lists != 1 || gets != 0 || writes != n {
		t.Errorf("%d pod LISTs, %d pod GETs and %d report writes for %d pods; want one page, no GET and a write per pod", lists, gets, writes, n)
	}
	if events > n {
		t.Errorf("%d event requests for %d pods; want at most one per pod", events, n)
	}
	if status > 10 {
		t.Errorf("%d policy status writes; want a few, not one per pod", status)
	}
	if len(other) > 0 {
		t.Errorf("other requests: %v", other)
	}

	// What one report weighs in etcd (custom resources are stored as
	// JSON, managedFields included): docs/scale.md multiplies it out.
	raw, err := rest.RESTClientFor(restConfigFor(t, "wgpolicyk8s.io", "v1alpha2"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := raw.Get().AbsPath("/apis/wgpolicyk8s.io/v1alpha2/namespaces", ns.Name, "policyreports", string(pods[0].UID)).DoRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one report with one result, as stored: %d bytes of JSON", len(body))
}

// restConfigFor is cfg for a REST client of group/version.
func restConfigFor(t *testing.T, group, version string) *rest.Config {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &schema.GroupVersion{Group: group, Version: version}
	c.APIPath = "/apis"
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	return c
}
