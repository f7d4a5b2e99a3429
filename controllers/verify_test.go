package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/controllers"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
	"github.com/vigil-dev/vigil/internal/report"
	"github.com/vigil-dev/vigil/internal/settings"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// Result words, short.
const (
	pass  = reportsv1alpha2.ResultPass
	fail  = reportsv1alpha2.ResultFail
	warn  = reportsv1alpha2.ResultWarn
	errd  = reportsv1alpha2.ResultError
	noPol = policy.NoMatchingPolicies
)

// image is an image only the test named test uses; glob covers all of them.
func image(test, name string) string { return "registry.test/" + test + "/" + name }
func glob(test string) []string      { return []string{"registry.test/" + test + "/**"} }

// Pods that exist before a policy are judged against it when it appears.
func TestPodsExistingBeforePolicyAreJudged(t *testing.T) {
	testenv.Integration(t)
	startVigil(t, controllers.DefaultOptions())
	ns := newNamespace("before", true)
	create(t, ns)
	web := newPod(ns.Name, "web", image("before", "web"))
	admin := newPod(ns.Name, "admin", image("before", "admin"), addingCapabilities("NET_ADMIN"))
	for _, p := range []*corev1.Pod{web, admin} {
		create(t, p)
		// No policy covers the image yet: policy-controller's default no-match-policy denies.
		waitForResults(t, p, results{noPol: fail})
	}

	create(t, seedPolicy(t, "before-caps", glob("before")...))
	waitForResults(t, web, results{"before-caps": pass})
	waitForResults(t, admin, results{"before-caps": fail})
}

// Editing a policy judges its pods again: the walkthrough's NET_ADMIN pod
// fails the seed policy, passes once the policy allows NET_ADMIN, and fails
// again when the edit is undone.
func TestPolicyEditFlipsResults(t *testing.T) {
	testenv.Integration(t)
	startVigil(t, controllers.DefaultOptions())
	ns := newNamespace("edit", true)
	create(t, ns)
	cip := seedPolicy(t, "edit-caps", glob("edit")...)
	create(t, cip)
	pod := newPod(ns.Name, "yolo", image("edit", "ubuntu"), addingCapabilities("NET_ADMIN"))
	create(t, pod)

	rep := waitForResults(t, pod, results{"edit-caps": fail})
	res := rep.Results[0]
	// A person reading it knows which container, which image, what is wrong, and which policy says so.
	wantMessage := `container "app" (registry.test/edit/ubuntu) adds capability NET_ADMIN, which edit-caps does not allow`
	if res.Description != wantMessage {
		t.Errorf("message = %q, want %q", res.Description, wantMessage)
	}
	if res.Properties["mode"] != v1beta1.ModeEnforce {
		t.Errorf("properties = %v, want mode enforce", res.Properties)
	}

	update(t, cip, func(c *v1beta1.ClusterImagePolicy) { allowCapability(t, c, "NET_ADMIN") })
	rep = waitForResults(t, pod, results{"edit-caps": pass})
	if got, want := rep.Results[0].Properties["policyGeneration"], strconv.FormatInt(cip.Generation, 10); got != want {
		t.Errorf("policyGeneration = %q, want the edited policy's generation %s", got, want)
	}

	update(t, cip, func(c *v1beta1.ClusterImagePolicy) {
		c.Spec.Policy.Data = strings.Replace(c.Spec.Policy.Data, ` | "NET_ADMIN"`, "", 1)
	})
	waitForResults(t, pod, results{"edit-caps": fail})
}

// Deleting a policy removes its results from every report, in every
// namespace, and leaves the other policies' results.
func TestDeletedPolicyLeavesEveryReport(t *testing.T) {
	testenv.Integration(t)
	startVigil(t, controllers.DefaultOptions())
	var pods []*corev1.Pod
	for _, name := range []string{"delpolicy-1", "delpolicy-2"} {
		ns := newNamespace(name, true)
		create(t, ns)
		for _, p := range []string{"a", "b"} {
			pod := newPod(ns.Name, p, image("delpolicy", p))
			create(t, pod)
			pods = append(pods, pod)
		}
	}
	keep := newPolicy("delpolicy-keep", glob("delpolicy"))
	gone := newPolicy("delpolicy-gone", glob("delpolicy"), disallowing("registry.test/delpolicy is retired"))
	create(t, keep)
	create(t, gone)
	for _, p := range pods {
		waitForResults(t, p, results{"delpolicy-keep": pass, "delpolicy-gone": fail})
	}

	deleteObject(t, gone)
	for _, p := range pods {
		waitForResults(t, p, results{"delpolicy-keep": pass})
	}
}

// A report lives and dies with its pod, and Vigil puts right what others
// do to it.
func TestReportFollowsItsPod(t *testing.T) {
	testenv.Integration(t)
	startVigil(t, controllers.DefaultOptions())
	ns := newNamespace("lifecycle", true)
	create(t, ns)
	create(t, newPolicy("lifecycle-retired", glob("lifecycle"), disallowing("registry.test/lifecycle is retired")))
	want := results{"lifecycle-retired": fail}

	t.Run("pod deleted", func(t *testing.T) {
		pod := newPod(ns.Name, "deleted", image("lifecycle", "app"))
		create(t, pod)
		waitForResults(t, pod, want)
		deleteObject(t, pod)
		waitForNoReport(t, pod)
	})

	t.Run("report of a missing pod", func(t *testing.T) {
		rep := staleReport(ns.Name, "ghost")
		create(t, rep)
		waitForGone(t, rep)
	})

	t.Run("report edited by someone else", func(t *testing.T) {
		pod := newPod(ns.Name, "edited", image("lifecycle", "app"))
		create(t, pod)
		rep := waitForResults(t, pod, want)
		update(t, rep, func(r *reportsv1alpha2.PolicyReport) {
			r.Results[0].Result = pass
			r.Summary = reportsv1alpha2.PolicyReportSummary{Pass: 1}
		})
		waitForResults(t, pod, want)
	})

	t.Run("report label removed by someone else", func(t *testing.T) {
		pod := newPod(ns.Name, "unlabelled", image("lifecycle", "app"))
		create(t, pod)
		rep := waitForResults(t, pod, want)
		update(t, rep, func(r *reportsv1alpha2.PolicyReport) { delete(r.Labels, report.ManagedByLabel) })
		// reportOf lists by the label: the report is Vigil's again once the label is back.
		waitForResults(t, pod, want)
	})

	t.Run("pod re-created under the same name", func(t *testing.T) {
		first := newPod(ns.Name, "again", image("lifecycle", "app"))
		create(t, first)
		old := waitForResults(t, first, want)
		deleteObject(t, first)
		second := newPod(ns.Name, "again", image("lifecycle", "app"))
		create(t, second)
		if second.UID == first.UID {
			t.Fatal("the API server gave the new pod the old pod's UID")
		}
		rep := waitForResults(t, second, want)
		if rep.Name != string(second.UID) || rep.Name == old.Name {
			t.Errorf("report %s, want one named after the new pod's UID %s", rep.Name, second.UID)
		}
		eventually(t, settleTimeout, func() error {
			err := k8s.Get(context.Background(), client.ObjectKeyFromObject(old), &reportsv1alpha2.PolicyReport{})
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("the first pod's report %s is still there (%v)", old.Name, err)
			}
			return nil
		})
	})

	t.Run("report deleted by someone else", func(t *testing.T) {
		pod := newPod(ns.Name, "recreated", image("lifecycle", "app"))
		create(t, pod)
		rep := waitForResults(t, pod, want)
		deleteObject(t, rep)
		if again := waitForResults(t, pod, want); again.UID == rep.UID {
			t.Errorf("report %s was not deleted", rep.Name)
		}
	})
}

// A policy that does not compile (created directly: no webhook runs here to
// refuse it) gives error results on the pods it matches and Ready=False with
// the compiler's message; fixed, it is Ready and judges again.
func TestInvalidPolicy(t *testing.T) {
	testenv.Integration(t)
	startVigil(t, controllers.DefaultOptions())
	ns := newNamespace("invalid", true)
	create(t, ns)
	pod := newPod(ns.Name, "app", image("invalid", "app"))
	create(t, pod)
	cip := newPolicy("invalid-cue", glob("invalid"), withCUE("spec: containers: [...{name: string}"))
	create(t, cip)
	_, compileErr := policy.Compiler{SystemNamespace: vigilNamespace}.Compile(cip)
	var invalid *policy.InvalidPolicyError
	if !errors.As(compileErr, &invalid) || invalid.Reason != v1beta1.ReasonCompileError {
		t.Fatalf("the test's policy should not compile (reason %s), got %v", v1beta1.ReasonCompileError, compileErr)
	}

	rep := waitForResults(t, pod, results{"invalid-cue": errd})
	if msg := rep.Results[0].Description; !strings.Contains(msg, "invalid-cue") || !strings.Contains(msg, "not ready") {
		t.Errorf("message = %q, want it to say that invalid-cue is not ready", msg)
	}
	waitForPolicyStatus(t, cip.Name, func(c *v1beta1.ClusterImagePolicy) error {
		if err := wantReady(c, metav1.ConditionFalse, v1beta1.ReasonCompileError, compileErr.Error()); err != nil {
			return err
		}
		if c.Status.Pods != (v1beta1.PodResultCounts{Error: 1}) {
			return fmt.Errorf("pod counts %+v, want one error", c.Status.Pods)
		}
		return nil
	})
	waitForPolicyEvent(t, cip.Name, corev1.EventTypeWarning, controllers.ReasonPolicyInvalid)

	update(t, cip, func(c *v1beta1.ClusterImagePolicy) { c.Spec.Policy.Data = "spec: containers: [...{name: string}]" })
	waitForResults(t, pod, results{"invalid-cue": pass})
	waitForPolicyStatus(t, cip.Name, func(c *v1beta1.ClusterImagePolicy) error {
		return wantReady(c, metav1.ConditionTrue, v1beta1.ReasonCompiled, "")
	})
	waitForPolicyEvent(t, cip.Name, corev1.EventTypeNormal, controllers.ReasonPolicyReady)
}

// Namespaces are in scope by label, picked up when it changes; with an
// empty selector every namespace is, except kube-system and Vigil's own.
func TestNamespaceScope(t *testing.T) {
	testenv.Integration(t)
	ctx := context.Background()
	vigil := startVigil(t, controllers.DefaultOptions())
	create(t, newPolicy("scope-pass", glob("scope")))
	in, never := newNamespace("scope-in", true), newNamespace("scope-never", false)
	create(t, in)
	create(t, never)
	podIn := newPod(in.Name, "app", image("scope", "app"))
	podNever := newPod(never.Name, "app", image("scope", "app"))
	create(t, podIn)
	create(t, podNever)
	waitForResults(t, podIn, results{"scope-pass": pass})
	// A report about podNever that looks like Vigil's makes Vigil judge the
	// pod; once the report is gone, the pod was judged and found out of scope.
	wantNoReport := func(t *testing.T, pod *corev1.Pod) {
		t.Helper()
		stale := staleReport(pod.Namespace, pod.Name)
		create(t, stale)
		waitForGone(t, stale)
		if reports, err := reportsOf(pod.Namespace, pod.Name); err != nil || len(reports) != 0 {
			t.Errorf("pod %s/%s out of scope has %d reports (%v), want none", pod.Namespace, pod.Name, len(reports), err)
		}
	}
	wantNoReport(t, podNever)

	update(t, in, func(ns *corev1.Namespace) { delete(ns.Labels, v1beta1.IncludeLabel) })
	waitForNoReport(t, podIn)
	update(t, in, func(ns *corev1.Namespace) { ns.Labels[v1beta1.IncludeLabel] = "true" })
	waitForResults(t, podIn, results{"scope-pass": pass})

	t.Run("empty selector", func(t *testing.T) {
		vigil.stop(t)
		opts := controllers.DefaultOptions()
		opts.NamespaceSelector = ""
		startVigil(t, opts)
		waitForResults(t, podNever, results{"scope-pass": pass})
		for _, ns := range []string{metav1.NamespaceSystem, vigilNamespace} {
			pod := newPod(ns, "scope-app", image("scope", "app"))
			create(t, pod)
			wantNoReport(t, pod)
		}
		// And one more in scope, so a last report is written after those were judged.
		late := newNamespace("scope-late", false)
		create(t, late)
		pod := newPod(late.Name, "app", image("scope", "app"))
		create(t, pod)
		waitForResults(t, pod, results{"scope-pass": pass})
		var all reportsv1alpha2.PolicyReportList
		for _, ns := range []string{metav1.NamespaceSystem, vigilNamespace} {
			if err := k8s.List(ctx, &all, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			if len(all.Items) != 0 {
				t.Errorf("namespace %s has %d PolicyReports, want none", ns, len(all.Items))
			}
		}

		// A namespace being deleted is out of scope.
		deleteObject(t, late)
		waitForNoReport(t, pod)
	})
}

// A restarted controller rebuilds its state from the cluster: one report
// per pod, none lost, none rewritten, no new events for violations already
// recorded, and the report of a pod deleted meanwhile removed.
func TestRestart(t *testing.T) {
	testenv.Integration(t)
	ctx := context.Background()
	ns := newNamespace("restart", true)
	create(t, ns)
	// Several copies of the seed policy, so that a pod judged before the
	// restarted controller has compiled them all gets a report missing some.
	passing, failing := results{}, results{}
	for i := range 8 {
		name := fmt.Sprintf("restart-caps-%d", i)
		create(t, seedPolicy(t, name, glob("restart")...))
		passing[name], failing[name] = pass, fail
	}
	bad := newPod(ns.Name, "bad", image("restart", "app"), addingCapabilities("NET_ADMIN"))
	good := newPod(ns.Name, "good", image("restart", "app"))
	doomed := newPod(ns.Name, "doomed", image("restart", "app"), addingCapabilities("NET_ADMIN"))
	want := map[*corev1.Pod]results{bad: failing, good: passing, doomed: failing}
	for p := range want {
		create(t, p)
	}

	first := startVigil(t, controllers.DefaultOptions())
	before := map[*corev1.Pod]*reportsv1alpha2.PolicyReport{}
	for p, w := range want {
		before[p] = waitForResults(t, p, w)
	}
	waitForEvent(t, bad, corev1.EventTypeWarning, controllers.ReasonPolicyViolation)
	waitForEvent(t, doomed, corev1.EventTypeWarning, controllers.ReasonPolicyViolation)
	violations := map[string]int{}
	for p := range want {
		violations[p.Name] = len(podEvents(t, p, controllers.ReasonPolicyViolation))
	}
	unchanged := gauge(t, "vigil_report_writes_total", map[string]string{"outcome": "unchanged"})
	wantCounts := func(fail int) v1beta1.PodResultCounts { return v1beta1.PodResultCounts{Pass: 1, Fail: fail} }
	waitForPolicyStatus(t, "restart-caps-0", func(c *v1beta1.ClusterImagePolicy) error {
		if c.Status.Pods != wantCounts(2) {
			return fmt.Errorf("pod counts %+v, want %+v", c.Status.Pods, wantCounts(2))
		}
		return nil
	})
	first.stop(t)

	countsSeen := watchPolicyCounts(t, "restart-caps-0")
	deleteObject(t, doomed)
	startVigil(t, controllers.DefaultOptions())
	waitForNoReport(t, doomed)
	// Both surviving pods were judged again (and found unchanged) ...
	eventually(t, settleTimeout, func() error {
		if got := gauge(t, "vigil_report_writes_total", map[string]string{"outcome": "unchanged"}); got < unchanged+2 {
			return fmt.Errorf("%v unchanged report writes since the restart, want at least 2", got-unchanged)
		}
		return nil
	})
	// ... and a violation found after them has its event recorded, so theirs would be too.
	late := newPod(ns.Name, "late", image("restart", "app"), addingCapabilities("NET_ADMIN"))
	create(t, late)
	waitForResults(t, late, failing)
	waitForEvent(t, late, corev1.EventTypeWarning, controllers.ReasonPolicyViolation)

	for _, p := range []*corev1.Pod{bad, good} {
		rep, err := reportOf(p) // exactly one
		if err != nil {
			t.Fatal(err)
		}
		if got := resultsOf(rep); got.String() != want[p].String() {
			t.Errorf("pod %s: results %s after the restart, want %s", p.Name, got, want[p])
		}
		if rep.ResourceVersion != before[p].ResourceVersion {
			t.Errorf("pod %s: report rewritten by the restart (resourceVersion %s, was %s)", p.Name, rep.ResourceVersion, before[p].ResourceVersion)
		}
		if got := len(podEvents(t, p, controllers.ReasonPolicyViolation)); got != violations[p.Name] {
			t.Errorf("pod %s: %d PolicyViolation events after the restart, want the %d from before", p.Name, got, violations[p.Name])
		}
	}
	// The policy's counts went from 2 failing pods to 1 (doomed) and back
	// (late), and never showed pods the restarted controller had not judged
	// again yet as missing.
	waitForPolicyStatus(t, "restart-caps-0", func(c *v1beta1.ClusterImagePolicy) error {
		if c.Status.Pods != wantCounts(2) {
			return fmt.Errorf("pod counts %+v, want %+v", c.Status.Pods, wantCounts(2))
		}
		return nil
	})
	for _, counts := range countsSeen() {
		if counts != wantCounts(2) && counts != wantCounts(1) {
			t.Errorf("ClusterImagePolicy restart-caps-0 showed pod counts %+v after the restart, want %+v or %+v", counts, wantCounts(2), wantCounts(1))
		}
	}
	var list reportsv1alpha2.PolicyReportList
	if err := k8s.List(ctx, &list, client.InNamespace(ns.Name)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 3 {
		t.Errorf("%d reports in %s, want 3 (bad, good, late)", len(list.Items), ns.Name)
	}
}

// A restarted controller judges no pod before it has loaded every policy: a
// report written from a partial set of policies would lose results, and
// announce violations already recorded when the policies arrive. Here the
// policies are held back until the pod reconciler has surely run.
func TestRestartBeforePoliciesLoad(t *testing.T) {
	testenv.Integration(t)
	ns := newNamespace("preload", true)
	create(t, ns)
	create(t, seedPolicy(t, "preload-caps", glob("preload")...))
	pod := newPod(ns.Name, "bad", image("preload", "app"), addingCapabilities("NET_ADMIN"))
	create(t, pod)
	want := results{"preload-caps": fail}

	first := startVigil(t, controllers.DefaultOptions())
	before := waitForResults(t, pod, want)
	violations := len(waitForEvent(t, pod, corev1.EventTypeWarning, controllers.ReasonPolicyViolation))
	first.stop(t)

	var m *manager.Manager
	held := policystore.New(policy.Compiler{SystemNamespace: vigilNamespace})
	reconciled := metricSum(t, "controller_runtime_reconcile_total", map[string]string{"controller": "pod"})
	startVigilWith(t, controllers.DefaultOptions(), func(mgr *manager.Manager) {
		m, mgr.Policies = mgr, held // a store nothing feeds yet
	})
	// Every pod and every report in the cluster queues a reconcile when the
	// controller starts: once it has done that many, the pod's was among
	// them (or its report changed, which the checks below catch).
	var pods corev1.PodList
	var reports reportsv1alpha2.PolicyReportList
	if err := k8s.List(context.Background(), &pods); err != nil {
		t.Fatal(err)
	}
	if err := k8s.List(context.Background(), &reports); err != nil {
		t.Fatal(err)
	}
	queued := float64(len(pods.Items))
	eventually(t, settleTimeout, func() error {
		rep, err := reportOf(pod)
		if err != nil || rep.ResourceVersion != before.ResourceVersion {
			return nil
		}
		if n := metricSum(t, "controller_runtime_reconcile_total", map[string]string{"controller": "pod"}) - reconciled; n < queued {
			return fmt.Errorf("%v pod reconciles since the restart, want %v (one per pod; %d reports)", n, queued, len(reports.Items))
		}
		return nil
	})
	if err := m.Add(&policystore.Watcher{Store: held, Cache: m.GetCache()}); err != nil {
		t.Fatal(err)
	}
	// A pod created now is judged after the policies have loaded, and so is bad.
	late := newPod(ns.Name, "late", image("preload", "app"), addingCapabilities("NET_ADMIN"))
	create(t, late)
	waitForResults(t, late, want)
	waitForEvent(t, late, corev1.EventTypeWarning, controllers.ReasonPolicyViolation)
	rep := waitForResults(t, pod, want)
	if rep.ResourceVersion != before.ResourceVersion {
		t.Errorf("report rewritten by the restart (resourceVersion %s, was %s)", rep.ResourceVersion, before.ResourceVersion)
	}
	if got := len(podEvents(t, pod, controllers.ReasonPolicyViolation)); got != violations {
		t.Errorf("%d PolicyViolation events after the restart, want the %d from before", got, violations)
	}
}

// policy-controller's no-match-policy setting, from the
// config-policy-controller ConfigMap in Vigil's namespace, judges again the
// pods whose images no policy covers, with the webhook disabled too.
func TestNoMatchPolicySetting(t *testing.T) {
	testenv.Integration(t)
	startVigil(t, controllers.DefaultOptions())
	ns := newNamespace("nomatch", true)
	create(t, ns)
	pod := newPod(ns.Name, "app", image("nomatch", "app"))
	create(t, pod)
	waitForResults(t, pod, results{noPol: fail})

	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: vigilNamespace, Name: settings.ConfigMapName},
		Data:       map[string]string{settings.NoMatchPolicyKey: string(policy.NoMatchWarn)},
	}
	create(t, cm)
	waitForResults(t, pod, results{noPol: warn})
	update(t, cm, func(c *corev1.ConfigMap) { c.Data[settings.NoMatchPolicyKey] = string(policy.NoMatchAllow) })
	waitForResults(t, pod, results{noPol: reportsv1alpha2.ResultSkip})
	deleteObject(t, cm)
	waitForResults(t, pod, results{noPol: fail})
}

// One pod under an enforce and a warn policy, failing both: fail and warn,
// in the report, the policies' status and `kubectl get cip`.
func TestEnforceAndWarn(t *testing.T) {
	testenv.Integration(t)
	startVigil(t, controllers.DefaultOptions())
	ns := newNamespace("modes", true)
	create(t, ns)
	enforce := newPolicy("modes-enforce", glob("modes"), disallowing("registry.test/modes images are not signed"))
	warned := newPolicy("modes-warn", glob("modes"), inMode(v1beta1.ModeWarn), disallowing("registry.test/modes images will need an SBOM"))
	create(t, enforce)
	create(t, warned)
	pod := newPod(ns.Name, "app", image("modes", "app"))
	create(t, pod)

	rep := waitForResults(t, pod, results{"modes-enforce": fail, "modes-warn": warn})
	if want := (reportsv1alpha2.PolicyReportSummary{Fail: 1, Warn: 1}); rep.Summary != want {
		t.Errorf("summary = %+v, want %+v", rep.Summary, want)
	}
	for _, res := range rep.Results {
		wantMode := map[string]string{"modes-enforce": v1beta1.ModeEnforce, "modes-warn": v1beta1.ModeWarn}[res.Policy]
		if res.Properties["mode"] != wantMode {
			t.Errorf("%s: properties %v, want mode %s", res.Policy, res.Properties, wantMode)
		}
	}
	waitForCounts := func(name string, want v1beta1.PodResultCounts) {
		t.Helper()
		waitForPolicyStatus(t, name, func(c *v1beta1.ClusterImagePolicy) error {
			if err := wantReady(c, metav1.ConditionTrue, v1beta1.ReasonCompiled, ""); err != nil {
				return err
			}
			if c.Status.Pods != want {
				return fmt.Errorf("pod counts %+v, want %+v", c.Status.Pods, want)
			}
			return nil
		})
	}
	waitForCounts(enforce.Name, v1beta1.PodResultCounts{Fail: 1})
	waitForCounts(warned.Name, v1beta1.PodResultCounts{Warn: 1})

	rows := kubectlRows(t, "get", "cip", enforce.Name, warned.Name)
	wantRows := [][]string{
		{"NAME", "MODE", "READY", "PASS", "FAIL", "WARN", "ERROR", "AGE"},
		{"modes-enforce", "enforce", "True", "0", "1", "0", "0"},
		{"modes-warn", "warn", "True", "0", "0", "1", "0"},
	}
	for i, want := range wantRows {
		if i >= len(rows) || len(rows[i]) != 8 || !reflect.DeepEqual(rows[i][:len(want)], want) {
			t.Errorf("kubectl get cip: line %d = %v, want %v (then an age)", i, rows[min(i, len(rows)-1)], want)
		}
	}

	// The counts follow the pods.
	deleteObject(t, pod)
	waitForCounts(enforce.Name, v1beta1.PodResultCounts{})
	waitForCounts(warned.Name, v1beta1.PodResultCounts{})
}

// Events mark transitions: PolicyViolation when a pod first fails,
// PolicyCompliant when it passes again; a pod that ends loses its report.
func TestEvents(t *testing.T) {
	testenv.Integration(t)
	startVigil(t, controllers.DefaultOptions())
	ns := newNamespace("events", true)
	create(t, ns)
	cip := seedPolicy(t, "events-caps", glob("events")...)
	create(t, cip)
	pod := newPod(ns.Name, "app", image("events", "app"), addingCapabilities("NET_ADMIN"))
	create(t, pod)

	waitForResults(t, pod, results{"events-caps": fail})
	violations := waitForEvent(t, pod, corev1.EventTypeWarning, controllers.ReasonPolicyViolation)
	if note := violations[0].Note; !strings.Contains(note, "events-caps") || !strings.Contains(note, "NET_ADMIN") {
		t.Errorf("PolicyViolation note = %q, want the policy and the capability named", note)
	}

	update(t, cip, func(c *v1beta1.ClusterImagePolicy) { allowCapability(t, c, "NET_ADMIN") })
	waitForResults(t, pod, results{"events-caps": pass})
	waitForEvent(t, pod, corev1.EventTypeNormal, controllers.ReasonPolicyCompliant)
	if got := occurrences(podEvents(t, pod, controllers.ReasonPolicyViolation)); got != 1 {
		t.Errorf("%d PolicyViolation events, want 1: only the transition to fail is announced", got)
	}

	setPhase(t, pod, corev1.PodSucceeded)
	waitForNoReport(t, pod)
}

// vigil_policy_results states what the reports say, after a burst of pod and
// policy changes.
func TestPolicyResultsMetric(t *testing.T) {
	testenv.Integration(t)
	ctx := context.Background()
	startVigil(t, controllers.DefaultOptions())
	nsA, nsB := newNamespace("metrics-a", true), newNamespace("metrics-b", true)
	create(t, nsA)
	create(t, nsB)
	caps := seedPolicy(t, "metrics-caps", glob("metrics")...)
	sbom := newPolicy("metrics-sbom", glob("metrics"), inMode(v1beta1.ModeWarn), disallowing("registry.test/metrics images will need an SBOM"))
	temp := newPolicy("metrics-temp", glob("metrics"))
	late := seedPolicy(t, "metrics-late", glob("metrics")...)
	late.Spec.Mode = v1beta1.ModeWarn
	for _, c := range []*v1beta1.ClusterImagePolicy{caps, sbom, temp} {
		create(t, c)
	}
	admin := map[string]bool{} // pods adding NET_ADMIN
	pods := map[string]*corev1.Pod{}
	newTestPod := func(ns *corev1.Namespace, name string, netAdmin bool) *corev1.Pod {
		var opts []podOption
		if netAdmin {
			opts = append(opts, addingCapabilities("NET_ADMIN"))
		}
		p := newPod(ns.Name, name, image("metrics", "app"), opts...)
		admin[name], pods[name] = netAdmin, p
		create(t, p)
		return p
	}
	for i := range 6 {
		newTestPod(nsA, fmt.Sprintf("a%d", i), i%3 == 0)
		newTestPod(nsB, fmt.Sprintf("b%d", i), i%3 == 0)
	}
	for name, p := range pods {
		waitForResults(t, p, results{"metrics-caps": verdict(admin[name], fail), "metrics-sbom": warn, "metrics-temp": pass})
	}

	// The burst, with no waiting in between.
	for _, name := range []string{"a1", "a2"} {
		deleteObject(t, pods[name])
		delete(pods, name)
	}
	setPhase(t, pods["b5"], corev1.PodSucceeded)
	delete(pods, "b5")
	newTestPod(nsA, "a6", false)
	newTestPod(nsB, "b6", true)
	deleteObject(t, temp)
	create(t, late)
	update(t, sbom, func(c *v1beta1.ClusterImagePolicy) { c.Spec.Mode = v1beta1.ModeEnforce })

	policies := []string{"metrics-caps", "metrics-sbom", "metrics-temp", "metrics-late"}
	want := map[string]map[reportsv1alpha2.Result]int{}
	for _, p := range policies {
		want[p] = map[reportsv1alpha2.Result]int{}
	}
	for name, p := range pods {
		w := results{"metrics-caps": verdict(admin[name], fail), "metrics-sbom": fail, "metrics-late": verdict(admin[name], warn)}
		for pol, r := range w {
			want[pol][r]++
		}
		waitForResults(t, p, w)
	}

	eventually(t, settleTimeout, func() error {
		var all reportsv1alpha2.PolicyReportList
		if err := k8s.List(ctx, &all, client.MatchingLabels{report.ManagedByLabel: report.ManagedByValue}); err != nil {
			return err
		}
		fromReports := map[string]map[reportsv1alpha2.Result]int{}
		for _, p := range policies {
			fromReports[p] = map[reportsv1alpha2.Result]int{}
		}
		for _, rep := range all.Items {
			for _, res := range rep.Results {
				if c, ok := fromReports[res.Policy]; ok {
					c[res.Result]++
				}
			}
		}
		for _, p := range policies {
			for _, r := range []reportsv1alpha2.Result{pass, fail, warn, errd} {
				g := gauge(t, "vigil_policy_results", map[string]string{"policy": p, "result": string(r)})
				if int(g) != fromReports[p][r] || fromReports[p][r] != want[p][r] {
					return fmt.Errorf("vigil_policy_results{policy=%q,result=%q} = %v; the reports count %d; want %d",
						p, r, g, fromReports[p][r], want[p][r])
				}
			}
		}
		return nil
	})
	// The policies' status counts the same pods.
	for _, p := range []string{"metrics-caps", "metrics-sbom", "metrics-late"} {
		waitForPolicyStatus(t, p, func(c *v1beta1.ClusterImagePolicy) error {
			w := v1beta1.PodResultCounts{Pass: want[p][pass], Fail: want[p][fail], Warn: want[p][warn], Error: want[p][errd]}
			if c.Status.Pods != w {
				return fmt.Errorf("pod counts %+v, want %+v", c.Status.Pods, w)
			}
			return nil
		})
	}
}

// verdict is r when bad, else pass.
func verdict(bad bool, r reportsv1alpha2.Result) reportsv1alpha2.Result {
	if bad {
		return r
	}
	return pass
}

// waitForPolicyStatus waits until check accepts the named policy.
func waitForPolicyStatus(t *testing.T, name string, check func(*v1beta1.ClusterImagePolicy) error) {
	t.Helper()
	eventually(t, settleTimeout, func() error {
		var c v1beta1.ClusterImagePolicy
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, &c); err != nil {
			return err
		}
		if err := check(&c); err != nil {
			return fmt.Errorf("ClusterImagePolicy %s: %w", name, err)
		}
		return nil
	})
}

// wantReady checks the Ready condition of the policy's current generation;
// an empty message is not checked.
func wantReady(c *v1beta1.ClusterImagePolicy, status metav1.ConditionStatus, reason, message string) error {
	cond := meta.FindStatusCondition(c.Status.Conditions, v1beta1.ConditionReady)
	switch {
	case cond == nil:
		return errors.New("no Ready condition")
	case cond.ObservedGeneration != c.Generation || c.Status.ObservedGeneration != c.Generation:
		return fmt.Errorf("observed generation %d (condition %d), want %d", c.Status.ObservedGeneration, cond.ObservedGeneration, c.Generation)
	case cond.Status != status || cond.Reason != reason:
		return fmt.Errorf("Ready=%s (%s), want Ready=%s (%s)", cond.Status, cond.Reason, status, reason)
	case message != "" && cond.Message != message:
		return fmt.Errorf("Ready message %q, want the compiler's %q", cond.Message, message)
	}
	return nil
}

// waitForPolicyEvent waits for an event of type and reason about the named policy.
func waitForPolicyEvent(t *testing.T, name, eventType, reason string) {
	t.Helper()
	eventually(t, settleTimeout, func() error {
		var list eventsv1.EventList
		if err := k8s.List(context.Background(), &list); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Kind == "ClusterImagePolicy" && e.Regarding.Name == name && e.Type == eventType && e.Reason == reason {
				return nil
			}
		}
		return fmt.Errorf("ClusterImagePolicy %s has no %s event %s", name, eventType, reason)
	})
}

// occurrences counts events, a series as many times as it happened.
func occurrences(events []eventsv1.Event) int {
	n := 0
	for _, e := range events {
		if e.Series != nil {
			n += int(e.Series.Count)
		} else {
			n++
		}
	}
	return n
}

// kubectlRows runs the real kubectl and splits its table output into fields.
func kubectlRows(t *testing.T, args ...string) [][]string {
	t.Helper()
	stdout, stderr, err := env.ControlPlane.KubeCtl().Run(args...)
	if err != nil {
		errText, _ := io.ReadAll(stderr)
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, errText)
	}
	out, _ := io.ReadAll(stdout)
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

// Every pod is judged again each resync period although nothing changed, and
// an unchanged report is not written again.
func TestResync(t *testing.T) {
	testenv.Integration(t)
	opts := controllers.DefaultOptions()
	opts.ResyncPeriod = 300 * time.Millisecond
	startVigil(t, opts)
	ns := newNamespace("resync", true)
	create(t, ns)
	create(t, seedPolicy(t, "resync-caps", glob("resync")...))
	pod := newPod(ns.Name, "app", image("resync", "app"))
	create(t, pod)
	rep := waitForResults(t, pod, results{"resync-caps": pass})

	before := metricSum(t, "vigil_evaluations_total", map[string]string{"trigger": "resync"})
	eventually(t, 30*time.Second, func() error {
		if got := metricSum(t, "vigil_evaluations_total", map[string]string{"trigger": "resync"}); got < before+2 {
			return fmt.Errorf("%v resync evaluations since the start, want at least 2", got-before)
		}
		return nil
	})
	again, err := reportOf(pod)
	if err != nil {
		t.Fatal(err)
	}
	if again.ResourceVersion != rep.ResourceVersion {
		t.Errorf("the report was rewritten by a resync that changed nothing (resourceVersion %s -> %s)", rep.ResourceVersion, again.ResourceVersion)
	}
}

// A policy that reads the clock turns a running pod's result when its time
// comes, with nothing in the cluster changed: the pod is judged again
// within --clock-recheck, the judgement counts under the trigger "time",
// and the PolicyViolation event says why it came (issue 18).
func TestClockPolicyTurnsAsTimePasses(t *testing.T) {
	testenv.Integration(t)
	opts := controllers.DefaultOptions()
	opts.ClockRecheck = time.Second
	startVigil(t, opts)

	ns := newNamespace("clock", true)
	create(t, ns)
	// Compliant until a few seconds from now, as a scan's maximum age
	// would be.
	deadline := time.Now().Add(4 * time.Second).UnixNano()
	rego := fmt.Sprintf("package sigstore\nisCompliant { time.now_ns() < %d }\n", deadline)
	cip := newPolicy("clock-age", glob("clock"), func(c *v1beta1.ClusterImagePolicy) {
		c.Spec.Policy = &v1beta1.Policy{Type: "rego", Data: rego}
	})
	create(t, cip)
	pod := newPod(ns.Name, "app", image("clock", "app"))
	create(t, pod)
	waitForResults(t, pod, results{"clock-age": pass})
	byTime := func() float64 {
		return metricSum(t, "vigil_evaluations_total", map[string]string{"trigger": "time"})
	}
	before := byTime()

	waitForResults(t, pod, results{"clock-age": fail})
	events := waitForEvent(t, pod, corev1.EventTypeWarning, controllers.ReasonPolicyViolation)
	if note := events[len(events)-1].Note; !strings.Contains(note, "as time passed") {
		t.Errorf("PolicyViolation note %q does not say the pod was judged again as time passed", note)
	}
	if after := byTime(); after <= before {
		t.Errorf("vigil_evaluations_total{trigger=\"time\"} = %v, was %v: the recheck was not counted as time's", after, before)
	}
}
