package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/admission"
	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
)

// conflictRequeue is how soon a pod is judged again when its report changed
// under a write twice in a row.
const conflictRequeue = 100 * time.Millisecond

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// PodReconciler keeps one report per running pod in scope, stating what
// admission would decide about the pod now: a PolicyReport, or a Report with
// --report-api=openreports.io/v1alpha1.
type PodReconciler struct {
	client.Client
	// reports is the API the reports are stored in.
	reports  reportKind
	Policies *policystore.Store
	NoMatch  admission.NoMatchSource
	Scope    *Scope
	// PolicyTimeout bounds each policy's evaluation (policy.Options).
	PolicyTimeout time.Duration
	// APIReader reads past the cache, which holds only Vigil's labelled reports.
	APIReader client.Reader

	events *eventEmitter
	tally  *tally
	// stale names reports that may belong to an earlier pod of a name.
	stale *staleReports
	// policyCountsChanged is told which policies' pod counts changed.
	policyCountsChanged func(policies []string)
	// triggers remembers why a pod was queued, for vigil_evaluations_total.
	triggers sync.Map
	now      func() time.Time
}

// Reconcile judges one pod and writes its report.
func (r *PodReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// Until the store holds every policy, as after a restart, a judgement
	// could lose results and announce old violations as new: wait for it.
	select {
	case <-r.Policies.Synced():
	default:
		return ctrl.Result{RequeueAfter: storeLagRequeue}, nil
	}
	trigger := metrics.TriggerPod
	if t, ok := r.triggers.LoadAndDelete(req.NamespacedName); ok {
		trigger = t.(string)
	}
	stale := r.stale.get(req.NamespacedName)
	pod, uid, err := r.pod(ctx, req.NamespacedName)
	if err != nil {
		return ctrl.Result{}, err
	}
	if pod == nil {
		// Not judged: the report of the pod as it is goes too.
		return ctrl.Result{}, r.forget(ctx, req.NamespacedName, "", append(stale, string(uid)))
	}
	obj, err := policy.ObjectFromRuntime(pod)
	if err != nil {
		// Only a pod the API server would not have stored gets here; its
		// report cannot be right, so it goes rather than stay stale.
		log.FromContext(ctx).Error(err, "cannot read pod for judgement")
		return ctrl.Result{}, r.forget(ctx, req.NamespacedName, "", append(stale, string(uid)))
	}
	d := r.Policies.Set().Decide(ctx, obj, policy.Options{NoMatchPolicy: r.NoMatch.NoMatchPolicy(), PolicyTimeout: r.PolicyTimeout})
	metrics.LastEvaluation.SetToCurrentTime()
	results := make(map[string]string, len(d.Results))
	for _, res := range d.Results {
		metrics.Evaluations.WithLabelValues(trigger, res.Result).Inc()
		results[res.Policy] = res.Result
	}

	old, err := r.currentReport(ctx, pod)
	if err != nil {
		return ctrl.Result{}, err
	}
	want, compact := r.desired(pod, d, old)
	if err := r.write(ctx, old, want, compact); err != nil {
		if !apierrors.IsConflict(err) && (old != nil || !apierrors.IsAlreadyExists(err)) {
			return ctrl.Result{}, err
		}
		// The cache is behind the API server: the report changed since it
		// was cached (after a restart of the API server, until the watch
		// lists again), or it exists uncached (it lost Vigil's label, or
		// was written a moment ago). Write over it as it stands there.
		if old, err = r.liveReport(ctx, pod); err != nil {
			return ctrl.Result{}, err
		}
		want, compact = r.desired(pod, d, old)
		if err := r.write(ctx, old, want, compact); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
				// Someone else is writing it too: judge again shortly.
				return ctrl.Result{RequeueAfter: conflictRequeue}, nil
			}
			return ctrl.Result{}, err
		}
	}
	// A report of an earlier pod of the same name is stale by definition.
	if err := r.forget(ctx, req.NamespacedName, pod.UID, stale); err != nil {
		return ctrl.Result{}, err
	}
	r.announce(pod, old, want)
	if changed := r.tally.set(req.NamespacedName, results); len(changed) > 0 {
		r.policyCountsChanged(changed)
	}
	return ctrl.Result{}, nil
}

// pod returns the pod key if it gets a report, nil if not: it is gone,
// terminating or finished, or its namespace is out of scope. uid is the
// pod's UID when it exists.
//
// Vigil's cache holds only the metadata of pods: whole pods, 30,000 of
// them, would be most of Vigil's memory (BENCHMARKS.md, benchmark 6). The
// pod itself is read from the API server, which serves it from its watch
// cache, at least as new as the metadata that queued it.
func (r *PodReconciler) pod(ctx context.Context, key types.NamespacedName) (pod *corev1.Pod, uid types.UID, err error) {
	meta := podMetadata()
	if err := r.Get(ctx, key, meta); err != nil {
		return nil, "", client.IgnoreNotFound(err)
	}
	if meta.DeletionTimestamp != nil {
		return nil, meta.UID, nil
	}
	var ns corev1.Namespace
	if err := r.Get(ctx, client.ObjectKey{Name: key.Namespace}, &ns); err != nil {
		return nil, meta.UID, client.IgnoreNotFound(err)
	}
	if !r.Scope.Includes(&ns) {
		return nil, meta.UID, nil
	}
	pod = &corev1.Pod{}
	if err := r.APIReader.Get(ctx, key, pod, &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: meta.ResourceVersion}}); err != nil {
		return nil, meta.UID, client.IgnoreNotFound(err)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil {
		return nil, pod.UID, nil
	}
	return pod, pod.UID, nil
}

// podMetadata is an empty pod as Vigil's cache holds pods: metadata only.
func podMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	return m
}

// desired is the report stating d for pod, in full and compacted as
// Vigil's cache holds reports, with the timestamps of results unchanged
// since old (compacted, or nil) carried over.
func (r *PodReconciler) desired(pod *corev1.Pod, d policy.Decision, old *reportsv1alpha2.PolicyReport) (want, compact *reportsv1alpha2.PolicyReport) {
	want = desiredReport(pod, d, r.now())
	compact = compacted(r.reports, want)
	keepTimestamps(want, compact, old)
	return want, compact
}

// currentReport is the pod's report from the cache (compacted), or nil.
func (r *PodReconciler) currentReport(ctx context.Context, pod *corev1.Pod) (*reportsv1alpha2.PolicyReport, error) {
	rep, err := getReport(ctx, r.Client, r.reports, client.ObjectKey{Namespace: pod.Namespace, Name: reportName(pod)}, false)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return rep, err
}

// liveReport reads the pod's report from the API server, past the cache,
// and compacts it as the cache would; nil if there is none.
func (r *PodReconciler) liveReport(ctx context.Context, pod *corev1.Pod) (*reportsv1alpha2.PolicyReport, error) {
	rep, err := getReport(ctx, r.APIReader, r.reports, client.ObjectKey{Namespace: pod.Namespace, Name: reportName(pod)}, true)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s/%s: %w", r.reports.name(), pod.Namespace, reportName(pod), err)
	}
	return rep, nil
}

// write creates or updates the report to want, only when its content
// changed: old and compact are the report as it is and as it should be,
// compacted. When the report to create exists already, it returns the
// AlreadyExists error unwrapped.
func (r *PodReconciler) write(ctx context.Context, old, want, compact *reportsv1alpha2.PolicyReport) error {
	var err error
	outcome := metrics.WriteUnchanged
	switch {
	case old == nil:
		outcome = metrics.WriteCreated
		err = r.Create(ctx, r.reports.toStored(want))
		if apierrors.IsAlreadyExists(err) {
			return err // the caller takes the existing report over
		}
	case !sameContent(old, compact):
		outcome = metrics.WriteUpdated
		updated := old.DeepCopy()
		updated.Labels = mergeLabels(updated.Labels, want.Labels)
		updated.OwnerReferences, updated.Scope = want.OwnerReferences, want.Scope
		updated.Summary, updated.Results = want.Summary, want.Results
		err = r.Update(ctx, r.reports.toStored(updated))
	}
	if apierrors.IsConflict(err) {
		return err // the cache was behind: not a failure, the caller retries
	}
	if err != nil {
		metrics.ReportWrites.WithLabelValues(metrics.WriteError).Inc()
		return fmt.Errorf("write %s %s/%s: %w", r.reports.name(), want.Namespace, want.Name, err)
	}
	metrics.ReportWrites.WithLabelValues(outcome).Inc()
	return nil
}

// forget deletes the reports named, but the one of the pod with UID keep,
// that Vigil's cache holds, and drops the pod key from the counts when keep
// is empty. The names are then no longer noted as stale.
func (r *PodReconciler) forget(ctx context.Context, key types.NamespacedName, keep types.UID, names []string) error {
	for _, name := range names {
		if name == "" || name == string(keep) {
			continue
		}
		rep, err := getReport(ctx, r.Client, r.reports, client.ObjectKey{Namespace: key.Namespace, Name: name}, false)
		if apierrors.IsNotFound(err) {
			continue // gone already, or never written
		}
		if err != nil {
			return err
		}
		if err := r.Delete(ctx, r.reports.toStored(rep)); err != nil && !apierrors.IsNotFound(err) {
			metrics.ReportWrites.WithLabelValues(metrics.WriteError).Inc()
			return fmt.Errorf("delete %s %s/%s: %w", r.reports.name(), rep.Namespace, rep.Name, err)
		}
		metrics.ReportWrites.WithLabelValues(metrics.WriteDeleted).Inc()
	}
	r.stale.done(key, names)
	if keep == "" {
		if changed := r.tally.set(key, nil); len(changed) > 0 {
			r.policyCountsChanged(changed)
		}
	}
	return nil
}

// announce emits events for results that changed and counts drift: a pod
// that already had a report turning fail or warn, from pass or from nothing.
func (r *PodReconciler) announce(pod *corev1.Pod, old, want *reportsv1alpha2.PolicyReport) {
	prev := map[string]reportsv1alpha2.Result{}
	if old != nil {
		for _, res := range old.Results {
			prev[res.Policy] = res.Result
		}
	}
	for _, res := range want.Results {
		was, had := prev[res.Policy]
		if res.Result == was {
			continue
		}
		switch res.Result {
		case reportsv1alpha2.ResultFail, reportsv1alpha2.ResultWarn:
			r.events.warning(pod, ReasonPolicyViolation, fmt.Sprintf("%s (%s): %s", res.Policy, res.Result, res.Description))
			if old != nil && (!had || was == reportsv1alpha2.ResultPass) {
				metrics.AddDrift(res.Policy, pod.Namespace)
			}
		case reportsv1alpha2.ResultPass:
			if was == reportsv1alpha2.ResultFail || was == reportsv1alpha2.ResultWarn {
				r.events.normal(pod, ReasonPolicyCompliant, fmt.Sprintf("%s: the pod satisfies the policy again", res.Policy))
			}
		}
	}
}

func mergeLabels(have, want map[string]string) map[string]string {
	out := make(map[string]string, len(have)+len(want))
	for k, v := range have {
		out[k] = v
	}
	for k, v := range want {
		out[k] = v
	}
	return out
}

// queueAll marks every pod in scope as queued for trigger and returns their keys.
func (r *PodReconciler) queueAll(ctx context.Context, trigger string, opts ...client.ListOption) []ctrl.Request {
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.List(ctx, pods, opts...); err != nil {
		log.FromContext(ctx).Error(err, "list pods to re-judge")
		return nil
	}
	reqs := make([]ctrl.Request, 0, len(pods.Items))
	for i := range pods.Items {
		key := client.ObjectKeyFromObject(&pods.Items[i])
		r.triggers.Store(key, trigger)
		reqs = append(reqs, ctrl.Request{NamespacedName: key})
	}
	return reqs
}
