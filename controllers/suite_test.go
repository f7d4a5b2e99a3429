// Integration tests of the verify path against a real kube-apiserver and etcd
// (envtest, binaries from bin/), with the manager started as `vigil
// controller` starts it.
//
// Isolation. All tests share one API server and run one after another (no
// t.Parallel). Each test starts its own manager (startVigil) and stops it
// when it ends, so no two managers ever write reports at once and each test
// begins with fresh counts. Each test uses namespaces and ClusterImagePolicy
// names of its own, and since policies are cluster-scoped, images of its
// own: a test named X uses images registry.test/X/... and policies whose
// globs are registry.test/X/**, so one test's policies never match another
// test's pods. What a test creates is deleted when it ends; namespaces stay
// Terminating (no kube-controller-manager runs here), which takes them out of
// every selector, so their pods are never judged again.
//
// There is no kube-controller-manager: pods stay Pending, which Vigil treats
// as running, and the garbage collector does not run, so every report that
// disappears was deleted by Vigil itself.
package controllers_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/controllers"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/report"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// Deadlines: generous, since CI machines are shared and -race is slow.
const (
	settleTimeout = 30 * time.Second // Vigil reacting to a change
	stopTimeout   = 30 * time.Second // the manager stopping
	pollInterval  = 100 * time.Millisecond
)

// vigilNamespace is Vigil's own namespace, as `vigil controller` defaults it.
const vigilNamespace = manager.DefaultNamespace

var (
	env *envtest.Environment
	cfg *rest.Config
	k8s client.Client
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // unit tests only: no API server
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The managers' logs are noise unless a failure needs them.
	var logs io.Writer = io.Discard
	if os.Getenv("VIGIL_TEST_LOG") != "" {
		logs = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))

	var err error
	env, err = testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start kube-apiserver and etcd:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8s, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// `vigil controller` expects its namespace to exist, as config/ creates it.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: vigilNamespace}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		fmt.Fprintln(os.Stderr, "create namespace:", err)
		return 1
	}
	return m.Run()
}

// vigil is one running manager with the verify path.
type vigil struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startVigil starts a manager the way `vigil controller` does, without the
// webhook (no webhook configuration exists here), metrics or probe servers,
// or leader election, and with opts for the verify path. It stops when the
// test ends, if the test has not stopped it.
func startVigil(t *testing.T, opts controllers.Options) *vigil {
	t.Helper()
	return startVigilWith(t, opts, nil)
}

// startVigilWith is startVigil, with prepare called on the manager before
// the verify path is set up.
func startVigilWith(t *testing.T, opts controllers.Options, prepare func(*manager.Manager)) *vigil {
	t.Helper()
	return startVigilReporting(t, report.WGPolicy, opts, prepare)
}

// startVigilReporting is startVigilWith, writing reports of api, as
// `vigil controller --report-api` does.
func startVigilReporting(t *testing.T, api report.API, opts controllers.Options, prepare func(*manager.Manager)) *vigil {
	t.Helper()
	return startVigilOn(t, cfg, api, opts, prepare)
}

// startVigilOn is startVigilReporting with the manager's client built from
// config (a test may wrap its transport).
func startVigilOn(t *testing.T, config *rest.Config, api report.API, opts controllers.Options, prepare func(*manager.Manager)) *vigil {
	t.Helper()
	m, err := manager.New(config, manager.Options{
		Namespace:              vigilNamespace,
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: "0",
		WebhookPort:            -1,
		ReportAPI:              api,
	})
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Every test sets the verify path up once more in this process.
	opts.SkipNameValidation = true
	if err := controllers.Setup(m, m.VerifyDeps(), opts); err != nil {
		cancel()
		t.Fatal(err)
	}
	v := &vigil{cancel: cancel, done: make(chan error, 1)}
	go func() { v.done <- m.Start(ctx) }()
	t.Cleanup(func() { v.stop(t) })
	return v
}

// stop stops the manager and waits until it has.
func (v *vigil) stop(t *testing.T) {
	t.Helper()
	v.once.Do(func() {
		v.cancel()
		select {
		case err := <-v.done:
			if err != nil {
				t.Errorf("manager stopped with: %v", err)
			}
		case <-time.After(stopTimeout):
			t.Errorf("manager did not stop within %s", stopTimeout)
		}
	})
}

// eventually calls cond until it returns nil, and fails the test with cond's
// last error when timeout passes first.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still after %s: %v", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// create creates obj and deletes it when the test ends.
func create(t *testing.T, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() {
		if err := k8s.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %T %s: %v", obj, obj.GetName(), err)
		}
	})
}

// update reads obj afresh, applies edit and writes it, retrying on conflicts
// (Vigil writes the status of policies meanwhile).
func update[T client.Object](t *testing.T, obj T, edit func(T)) {
	t.Helper()
	ctx := context.Background()
	eventually(t, settleTimeout, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		edit(obj)
		return k8s.Update(ctx, obj)
	})
}

func deleteObject(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Delete(context.Background(), obj); err != nil {
		t.Fatalf("delete %T %s: %v", obj, obj.GetName(), err)
	}
}

// setPhase sets the pod's status.phase through the status subresource, as a
// kubelet would when the pod ends.
func setPhase(t *testing.T, pod *corev1.Pod, phase corev1.PodPhase) {
	t.Helper()
	ctx := context.Background()
	eventually(t, settleTimeout, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		pod.Status.Phase = phase
		return k8s.Status().Update(ctx, pod)
	})
}

// errNoReport says that a pod has no report (yet, or any more).
var errNoReport = errors.New("no PolicyReport")

// reportsOf lists Vigil's reports whose scope is the pod named name in namespace.
func reportsOf(namespace, name string) ([]reportsv1alpha2.PolicyReport, error) {
	var list reportsv1alpha2.PolicyReportList
	if err := k8s.List(context.Background(), &list, client.InNamespace(namespace),
		client.MatchingLabels{report.ManagedByLabel: report.ManagedByValue}); err != nil {
		return nil, err
	}
	var out []reportsv1alpha2.PolicyReport
	for _, r := range list.Items {
		if r.Scope != nil && r.Scope.Kind == "Pod" && r.Scope.Name == name {
			out = append(out, r)
		}
	}
	return out, nil
}

// reportOf returns the pod's one report, checked against what DESIGN.md
// promises of every report: named by and owned by the pod, scoped to it,
// every result from vigil about the pod with a mode, a message and a
// timestamp, and a summary that matches the results.
func reportOf(pod *corev1.Pod) (*reportsv1alpha2.PolicyReport, error) {
	reports, err := reportsOf(pod.Namespace, pod.Name)
	if err != nil {
		return nil, err
	}
	switch len(reports) {
	case 0:
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, errNoReport)
	case 1:
	default:
		return nil, fmt.Errorf("pod %s/%s has %d reports, want one", pod.Namespace, pod.Name, len(reports))
	}
	rep := &reports[0]
	if err := checkReport(pod, rep); err != nil {
		return nil, fmt.Errorf("report %s/%s of pod %s: %w", rep.Namespace, rep.Name, pod.Name, err)
	}
	return rep, nil
}

func checkReport(pod *corev1.Pod, rep *reportsv1alpha2.PolicyReport) error {
	if rep.Name != string(pod.UID) {
		return fmt.Errorf("named %q, want the pod's UID %q", rep.Name, pod.UID)
	}
	if len(rep.OwnerReferences) != 1 || rep.OwnerReferences[0].UID != pod.UID || rep.OwnerReferences[0].Kind != "Pod" {
		return fmt.Errorf("owner references %+v, want the pod", rep.OwnerReferences)
	}
	if rep.Scope.UID != pod.UID || rep.Scope.APIVersion != "v1" {
		return fmt.Errorf("scope %+v, want the pod", rep.Scope)
	}
	if want := summarize(rep.Results); rep.Summary != want {
		return fmt.Errorf("summary %+v does not match its results %s (%+v)", rep.Summary, describe(rep.Results), want)
	}
	for _, res := range rep.Results {
		if res.Source != report.Source || res.Description == "" || res.Timestamp.Seconds == 0 ||
			len(res.Subjects) != 1 || res.Subjects[0].UID != pod.UID {
			return fmt.Errorf("result %+v: want source vigil, a message, a timestamp and the pod as its resource", res)
		}
		if res.Policy != "no-matching-policies" && res.Properties["mode"] == "" {
			return fmt.Errorf("result of %s has no mode property", res.Policy)
		}
	}
	return nil
}

func summarize(results []reportsv1alpha2.PolicyReportResult) reportsv1alpha2.PolicyReportSummary {
	var s reportsv1alpha2.PolicyReportSummary
	for _, r := range results {
		switch r.Result {
		case reportsv1alpha2.ResultPass:
			s.Pass++
		case reportsv1alpha2.ResultFail:
			s.Fail++
		case reportsv1alpha2.ResultWarn:
			s.Warn++
		case reportsv1alpha2.ResultError:
			s.Error++
		case reportsv1alpha2.ResultSkip:
			s.Skip++
		}
	}
	return s
}

// results maps each result's policy to its result.
type results map[string]reportsv1alpha2.Result

func resultsOf(rep *reportsv1alpha2.PolicyReport) results {
	out := results{}
	for _, r := range rep.Results {
		out[r.Policy] = r.Result
	}
	return out
}

func (r results) String() string {
	var parts []string
	for p, res := range r {
		parts = append(parts, p+"="+string(res))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, " ") + "}"
}

func describe(rs []reportsv1alpha2.PolicyReportResult) string {
	out := results{}
	for _, r := range rs {
		out[r.Policy] = r.Result
	}
	return out.String()
}

// waitForResults waits until the pod's report has exactly the results want
// and returns the report.
func waitForResults(t *testing.T, pod *corev1.Pod, want results) *reportsv1alpha2.PolicyReport {
	t.Helper()
	var rep *reportsv1alpha2.PolicyReport
	eventually(t, settleTimeout, func() error {
		var err error
		if rep, err = reportOf(pod); err != nil {
			return err
		}
		if got := resultsOf(rep); got.String() != want.String() {
			return fmt.Errorf("pod %s/%s: results %s, want %s", pod.Namespace, pod.Name, got, want)
		}
		return nil
	})
	return rep
}

// waitForNoReport waits until no report of Vigil's names the pod.
func waitForNoReport(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	eventually(t, settleTimeout, func() error {
		reports, err := reportsOf(pod.Namespace, pod.Name)
		if err != nil {
			return err
		}
		if len(reports) > 0 {
			return fmt.Errorf("pod %s/%s still has %d report(s): %s", pod.Namespace, pod.Name, len(reports), describe(reports[0].Results))
		}
		return nil
	})
}

// waitForGone waits until obj no longer exists.
func waitForGone(t *testing.T, obj client.Object) {
	t.Helper()
	eventually(t, settleTimeout, func() error {
		err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("%T %s/%s still exists", obj, obj.GetNamespace(), obj.GetName())
	})
}

// staleReport is a report that looks like Vigil's, about the pod named
// podName in namespace, though Vigil did not write it. Vigil must delete it.
func staleReport(namespace, podName string) *reportsv1alpha2.PolicyReport {
	return &reportsv1alpha2.PolicyReport{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: "stale-" + podName,
			Labels: map[string]string{report.ManagedByLabel: report.ManagedByValue},
		},
		Scope:   &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: namespace, Name: podName},
		Summary: reportsv1alpha2.PolicyReportSummary{Fail: 1},
		Results: []reportsv1alpha2.PolicyReportResult{{
			Source: report.Source, Policy: "some-policy", Result: reportsv1alpha2.ResultFail,
			Description: "written by hand", Timestamp: metav1.Timestamp{Seconds: 1764000000},
		}},
	}
}

// podEvents are the events of reason about the pod (by name and UID).
func podEvents(t *testing.T, pod *corev1.Pod, reason string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(pod.Namespace)); err != nil {
		t.Fatalf("list events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.Kind == "Pod" && e.Regarding.Name == pod.Name && e.Regarding.UID == pod.UID {
			out = append(out, e)
		}
	}
	return out
}

// waitForEvent waits until the pod has an event of reason and type, and
// returns the events of that reason.
func waitForEvent(t *testing.T, pod *corev1.Pod, eventType, reason string) []eventsv1.Event {
	t.Helper()
	var events []eventsv1.Event
	eventually(t, settleTimeout, func() error {
		events = podEvents(t, pod, reason)
		for _, e := range events {
			if e.Type == eventType {
				return nil
			}
		}
		return fmt.Errorf("pod %s/%s has no %s event %s", pod.Namespace, pod.Name, eventType, reason)
	})
	return events
}

// watchPolicyCounts records every status.pods the named policy shows from
// now on, until stop, which returns them.
func watchPolicyCounts(t *testing.T, name string) (stop func() []v1beta1.PodResultCounts) {
	t.Helper()
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), &v1beta1.ClusterImagePolicyList{},
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", name)})
	if err != nil {
		t.Fatalf("watch ClusterImagePolicy %s: %v", name, err)
	}
	var seen []v1beta1.PodResultCounts
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			if c, ok := e.Object.(*v1beta1.ClusterImagePolicy); ok {
				seen = append(seen, c.Status.Pods)
			}
		}
	}()
	return func() []v1beta1.PodResultCounts {
		w.Stop()
		<-done
		return seen
	}
}

// metricSum adds up the series of a counter vector that have labels.
func metricSum(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// gauge reads a series of a gauge or counter vector from controller-runtime's
// registry, where Vigil's metrics live; a missing series reads 0.
func gauge(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				switch {
				case m.GetGauge() != nil:
					return m.GetGauge().GetValue()
				case m.GetCounter() != nil:
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}
