package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/report"
)

// FieldOwner is the field manager of Vigil's server-side applies.
const FieldOwner = "vigil"

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// PodReconciler keeps one report per running pod in scope, stating what
// admission would decide about the pod now.
type PodReconciler struct {
	client.Client
	// APIReader reads pods past the cache, which holds none.
	APIReader client.Reader
	Deps

	scope  *Scope
	events *eventEmitter
	tally  *tally
	// index is what is known of every pod without reading it.
	index *podIndex
	// reports is what is held of every report Vigil wrote.
	reports *reportIndex
	// stale names reports that may belong to an earlier pod of a name.
	stale *staleReports
	// own tells the report events of Vigil's own writes.
	own *ownWrites
	// open is set once the policies and settings are loaded and the
	// counts seeded (verifyPath.Start); until then no pod is judged.
	open *atomic.Bool
	// policyCountsChanged is told which policies' pod counts changed.
	policyCountsChanged func(policies []string)
	// triggers remembers why a pod was queued, for vigil_evaluations_total.
	triggers sync.Map
	// rechecks holds when each pod is due to be judged again because time
	// passes (Decision.RecheckAt): a judgement at or after it that nothing
	// else queued has the trigger "time".
	rechecks sync.Map
	// clockRecheck is Options.ClockRecheck.
	clockRecheck time.Duration
	// pace bounds the requests in flight to the API server by how fast it
	// answers (Options.APILatencyTolerance); nil: Workers alone do.
	pace *pacer
	// pages reads the pods of a policy change by the page.
	pages *podPages
	// writer creates and updates reports.
	writer *reportWriter
	now    func() time.Time
}

// Reconcile judges one pod and writes its report: fetch, decide, plan,
// apply, announce.
func (r *PodReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !r.open.Load() {
		// Judged with policies missing, a pod could lose results and
		// announce old violations as new; every pod, and every pod a
		// report names, is queued once they are all in (verifyPath).
		return ctrl.Result{}, nil
	}
	trigger := metrics.TriggerPod
	if t, ok := r.triggers.LoadAndDelete(req.NamespacedName); ok {
		trigger = t.(string)
	} else if due, ok := r.rechecks.LoadAndDelete(req.NamespacedName); ok && !r.now().Before(due.(time.Time)) {
		trigger = metrics.TriggerTime
	}
	stale := r.stale.get(req.NamespacedName)
	pod, uid, err := r.fetch(ctx, req.NamespacedName)
	if err != nil {
		return ctrl.Result{}, err
	}
	if pod == nil {
		// Not judged: the report of the pod as it is goes too.
		r.rechecks.Delete(req.NamespacedName)
		return ctrl.Result{}, r.forget(ctx, req.NamespacedName, "", append(stale, string(uid)))
	}
	d, err := r.decide(ctx, pod, trigger)
	if err != nil {
		// Only a pod the API server would not have stored gets here; its
		// report cannot be right, so it goes rather than stay stale.
		log.FromContext(ctx).Error(err, "cannot read pod for judgement")
		return ctrl.Result{}, r.forget(ctx, req.NamespacedName, "", append(stale, string(uid)))
	}
	current := r.currentReport(pod)
	plan := report.MakePlan(r.Reports, pod, d, current, r.now())
	if err := r.apply(ctx, plan, current); err != nil {
		return ctrl.Result{}, err
	}
	// A report of an earlier pod of the same name is stale by definition.
	if err := r.forget(ctx, req.NamespacedName, pod.UID, stale); err != nil {
		return ctrl.Result{}, err
	}
	r.announce(pod, plan.Transitions, trigger)
	r.count(req.NamespacedName, d, plan.Transitions)
	// A verdict of the verifier expires, an error is retried, or a policy
	// reads the clock: judge the pod again then, although nothing in the
	// cluster changed.
	after := recheckAfter(d.RecheckAt, r.now())
	if after > 0 {
		r.rechecks.Store(req.NamespacedName, r.now().Add(after))
	} else {
		r.rechecks.Delete(req.NamespacedName)
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// fetch returns the pod if it gets a report, nil if not: it is gone,
// terminating or finished, or its namespace is out of scope. uid is the
// pod's UID when it exists.
//
// Vigil keeps only an index of pods (podIndex): whole pods, 30,000 of them,
// would be most of Vigil's memory (BENCHMARKS.md, benchmark 6). The pod
// itself is read from the API server, which serves it from its watch cache,
// at least as new as the version that queued it; when every pod was queued
// (a policy change), from the page of pods read ahead, if it holds that
// version (podPages).
func (r *PodReconciler) fetch(ctx context.Context, key types.NamespacedName) (pod *corev1.Pod, uid types.UID, err error) {
	seen, ok := r.index.get(key)
	if !ok {
		return nil, "", nil
	}
	if seen.deleting {
		return nil, seen.uid, nil
	}
	var ns corev1.Namespace
	if err := r.Get(ctx, client.ObjectKey{Name: key.Namespace}, &ns); err != nil {
		return nil, seen.uid, client.IgnoreNotFound(err)
	}
	if !r.scope.Includes(&ns) {
		return nil, seen.uid, nil
	}
	pod, paged := r.pages.take(ctx, key, seen.resourceVersion)
	if !paged {
		pod = &corev1.Pod{}
		if err := r.pace.do(ctx, requestRead, func() error {
			return r.APIReader.Get(ctx, key, pod, &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: seen.resourceVersion}})
		}); err != nil {
			return nil, seen.uid, client.IgnoreNotFound(err)
		}
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil {
		return nil, pod.UID, nil
	}
	return pod, pod.UID, nil
}

// namespaceInScope says whether the pods of the namespace name are judged.
func (r *PodReconciler) namespaceInScope(ctx context.Context, name string) bool {
	var ns corev1.Namespace
	return r.Get(ctx, client.ObjectKey{Name: name}, &ns) == nil && r.scope.Includes(&ns)
}

// decide judges pod against the current policies and settings, as the
// webhook would admit it now.
func (r *PodReconciler) decide(ctx context.Context, pod *corev1.Pod, trigger string) (policy.Decision, error) {
	obj, err := policy.ObjectFromRuntime(pod)
	if err != nil {
		return policy.Decision{}, err
	}
	d := r.Policies.Set().Decide(ctx, obj, policy.Options{
		NoMatchPolicy: r.Settings.NoMatchPolicy(), PolicyTimeout: r.PolicyTimeout, Observer: metrics.EvaluationObserver{},
		ClockRecheck: r.clockRecheck, SpreadClockRechecks: true,
		Verification: r.verification(ctx, pod),
	})
	metrics.LastEvaluation.SetToCurrentTime()
	for _, res := range d.Results {
		metrics.Evaluations.WithLabelValues(trigger, res.Result).Inc()
	}
	return d, nil
}

// currentReport is what Vigil holds of the pod's report, or nil when it
// has none.
func (r *PodReconciler) currentReport(pod *corev1.Pod) *report.Held {
	h, ok := r.reports.get(types.NamespacedName{Namespace: pod.Namespace, Name: report.Name(pod)})
	if !ok {
		return nil
	}
	return &h
}

// apply writes the planned report, when it changed.
func (r *PodReconciler) apply(ctx context.Context, plan report.Plan, current *report.Held) error {
	if !plan.Changed {
		metrics.ReportWrites.WithLabelValues(metrics.WriteUnchanged).Inc()
		return nil
	}
	key := types.NamespacedName{Namespace: plan.Report.Namespace, Name: plan.Report.Name}
	r.own.expect(key, plan.Fingerprint)
	obj := r.Reports.ToStored(plan.Report.DeepCopy())
	version, err := r.write(ctx, obj, current)
	if err != nil {
		r.own.cancel(key)
		metrics.ReportWrites.WithLabelValues(metrics.WriteError).Inc()
		return fmt.Errorf("write %s %s: %w", r.Reports.Kind(), key, err)
	}
	r.own.landed(key, version)
	outcome := metrics.WriteUpdated
	if current == nil {
		outcome = metrics.WriteCreated
	}
	metrics.ReportWrites.WithLabelValues(outcome).Inc()
	return nil
}

// write stores obj, the whole report, and returns the version it was stored
// at. It sends the cheapest write the API server takes for it (BENCHMARKS.md,
// "Cheaper writes and pods by the page"): a create when Vigil holds no
// report of that name, else an update of the version Vigil holds (both
// through the reportWriter). When that version is behind (someone else
// wrote or deleted the report, or created it before Vigil's watch showed
// it), a server-side apply that forces Vigil's ownership puts the report
// right in one more request, whatever is stored: Vigil owns its reports
// outright.
func (r *PodReconciler) write(ctx context.Context, obj client.Object, current *report.Held) (string, error) {
	var err error
	if current == nil {
		err = r.pace.do(ctx, requestWrite, func() error { return r.writer.create(ctx, obj) })
	} else {
		key := client.ObjectKeyFromObject(obj)
		obj.SetResourceVersion(r.own.version(key, current.ResourceVersion))
		err = r.pace.do(ctx, requestWrite, func() error { return r.writer.update(ctx, obj) })
	}
	if err == nil {
		return obj.GetResourceVersion(), nil
	}
	if !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return "", err
	}
	metrics.ReportWriteRetries.Inc()
	// The apply body names obj's kind, which the writer set on obj before
	// the first request (its answer, metadata alone, leaves obj as it was).
	u, err := applyConfiguration(obj)
	if err != nil {
		return "", err
	}
	err = r.pace.do(ctx, requestWrite, func() error {
		return r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership)
	})
	return u.GetResourceVersion(), err
}

// applyConfiguration is obj as a server-side apply body: every field Vigil
// sets, and nothing the server owns.
func applyConfiguration(obj client.Object) (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: content}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
	return u, nil
}

// forget deletes the reports named, but the one of the pod with UID keep,
// that Vigil holds (reportIndex), and drops the pod key from the counts when keep
// is empty. The names are then no longer noted as stale.
func (r *PodReconciler) forget(ctx context.Context, key types.NamespacedName, keep types.UID, names []string) error {
	for _, name := range names {
		if name == "" || name == string(keep) {
			continue
		}
		reportKey := types.NamespacedName{Namespace: key.Namespace, Name: name}
		if _, ok := r.reports.get(reportKey); !ok {
			continue // gone already, or never written
		}
		obj := r.Reports.NewObject()
		obj.SetNamespace(reportKey.Namespace)
		obj.SetName(reportKey.Name)
		r.own.expectDeletion(reportKey)
		if err := r.pace.do(ctx, requestWrite, func() error { return r.Delete(ctx, obj) }); err != nil {
			r.own.cancel(reportKey)
			if !apierrors.IsNotFound(err) {
				metrics.ReportWrites.WithLabelValues(metrics.WriteError).Inc()
				return fmt.Errorf("delete %s %s: %w", r.Reports.Kind(), reportKey, err)
			}
		}
		metrics.ReportWrites.WithLabelValues(metrics.WriteDeleted).Inc()
	}
	r.stale.done(key, names)
	if keep == "" {
		r.setCounts(key, nil, nil)
	}
	return nil
}

// announce emits an event for each result that turned, and counts drift.
// A result that turned at a judgement only time called for says so.
func (r *PodReconciler) announce(pod *corev1.Pod, transitions []report.Transition, trigger string) {
	since := ""
	if trigger == metrics.TriggerTime {
		since = " (judged again as time passed: a verification expired or the policy reads the clock)"
	}
	for _, t := range transitions {
		switch {
		case t.Violation():
			r.events.warning(pod, ReasonPolicyViolation, fmt.Sprintf("%s (%s)%s: %s", t.Policy, t.To, since, t.Description))
		case t.Errored():
			r.events.warning(pod, ReasonPolicyError, fmt.Sprintf("%s cannot be evaluated%s: %s", t.Policy, since, t.Description))
		case t.Compliant():
			r.events.normal(pod, ReasonPolicyCompliant, fmt.Sprintf("%s: the pod satisfies the policy again%s", t.Policy, since))
		}
		if t.Drift {
			metrics.AddDrift(t.Policy, pod.Namespace)
		}
	}
}

// count records the pod's results, and the policies it drifted out of now,
// in the counts behind the policy status, vigil_policy_results and
// vigil_drifted_pods.
func (r *PodReconciler) count(key types.NamespacedName, d policy.Decision, transitions []report.Transition) {
	results := make(map[string]string, len(d.Results))
	for _, res := range d.Results {
		results[res.Policy] = res.Result
	}
	var drifted []string
	for _, t := range transitions {
		if t.Drift {
			drifted = append(drifted, t.Policy)
		}
	}
	r.setCounts(key, results, drifted)
}

func (r *PodReconciler) setCounts(key types.NamespacedName, results map[string]string, drifted []string) {
	if changed := r.tally.set(key, results, drifted); len(changed) > 0 {
		r.policyCountsChanged(changed)
	}
}

// queueAll marks every pod in scope as queued for trigger and returns their
// keys, with those of the pods that reports may be stale for (gone pods
// among them, whose reports must go).
//
// The pods are read a page at a time ahead of the workers (podPages), so
// they are queued in the order the API server lists them.
func (r *PodReconciler) queueAll(ctx context.Context, trigger string) []ctrl.Request {
	keys := r.markQueued(trigger, "")
	r.pages.start(ctx, keys, r.namespaceInScope)
	return requests(keys, r.stale.pods())
}

// queuePods marks the pods of namespace (of every namespace when it is
// empty) as queued for trigger and returns their keys, by namespace and
// name.
func (r *PodReconciler) queuePods(trigger, namespace string) []ctrl.Request {
	return requests(r.markQueued(trigger, namespace))
}

// markQueued marks the pods of namespace (of every namespace when it is
// empty) as queued for trigger and returns their keys, by namespace and
// name: the order the API server lists them in.
func (r *PodReconciler) markQueued(trigger, namespace string) []types.NamespacedName {
	keys := r.index.keys(namespace)
	slices.SortFunc(keys, func(a, b types.NamespacedName) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	for _, key := range keys {
		r.triggers.Store(key, trigger)
	}
	return keys
}

// requests are the queue's requests for the keys, in their order.
func requests(keys ...[]types.NamespacedName) []ctrl.Request {
	n := 0
	for _, ks := range keys {
		n += len(ks)
	}
	reqs := make([]ctrl.Request, 0, n)
	for _, ks := range keys {
		for _, key := range ks {
			reqs = append(reqs, ctrl.Request{NamespacedName: key})
		}
	}
	return reqs
}
