package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
)

// +kubebuilder:rbac:groups=policy.sigstore.dev,resources=clusterimagepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.sigstore.dev,resources=clusterimagepolicies/status,verbs=get;update;patch

// PolicyReconciler keeps each ClusterImagePolicy's status current: whether it
// compiled (Ready) and how many running pods pass, fail or warn.
type PolicyReconciler struct {
	client.Client
	Policies *policystore.Store

	events *eventEmitter
	// tally holds the pod counts, which the pod reconciler keeps; this
	// reconciler only reads them.
	tally *tally
	// open is set once the counts are seeded (verifyPath.Start); until
	// then a status would say 0 pods, and every policy is queued once it is.
	open *atomic.Bool
}

// Reconcile writes one policy's status, once, only if it changed.
func (r *PolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cip v1beta1.ClusterImagePolicy
	if err := r.Get(ctx, req.NamespacedName, &cip); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.PolicyReady.DeleteLabelValues(req.Name)
			r.tally.forgetPolicy(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	generation, compileErr, known := r.Policies.Status(cip.Name)
	if !known || generation != cip.Generation || !r.open.Load() {
		// The store tells once it has compiled this generation, and the
		// verify path once the counts are in: the policy is queued then.
		return ctrl.Result{}, nil
	}
	status := *cip.Status.DeepCopy()
	status.ObservedGeneration = cip.Generation
	var before metav1.Condition
	if c := meta.FindStatusCondition(status.Conditions, v1beta1.ConditionReady); c != nil {
		before = *c
	}
	after := readyCondition(cip.Generation, compileErr)
	meta.SetStatusCondition(&status.Conditions, after)
	status.Pods = v1beta1.PodResultCounts{
		Pass:  r.tally.count(cip.Name, policy.ResultPass),
		Fail:  r.tally.count(cip.Name, policy.ResultFail),
		Warn:  r.tally.count(cip.Name, policy.ResultWarn),
		Error: r.tally.count(cip.Name, policy.ResultError),
	}
	meta.SetStatusCondition(&status.Conditions, evaluatedCondition(cip.Generation, status.Pods.Error))
	ready := compileErr == nil
	metrics.PolicyReady.WithLabelValues(cip.Name).Set(boolGauge(ready))
	if statusEqual(cip.Status, status) {
		return ctrl.Result{}, nil
	}
	// The whole status in one merge patch: every count is sent, zeros too,
	// so the printer columns never show a blank for 0.
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Status().Patch(ctx, &cip, client.RawPatch(types.MergePatchType, body)); err != nil {
		return ctrl.Result{}, fmt.Errorf("update status of ClusterImagePolicy %s: %w", cip.Name, err)
	}
	// Events on transitions only; an invalid policy edited into another
	// invalid one is a transition too, since the message is new.
	switch {
	case !ready && (before.Status != metav1.ConditionFalse || before.Message != after.Message):
		r.events.warning(&cip, ReasonPolicyInvalid, after.Message)
	case ready && before.Status != metav1.ConditionTrue:
		r.events.normal(&cip, ReasonPolicyReady, after.Message)
	}
	return ctrl.Result{}, nil
}

// readyCondition states whether generation compiled.
func readyCondition(generation int64, compileErr error) metav1.Condition {
	if compileErr == nil {
		return metav1.Condition{
			Type: v1beta1.ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: generation,
			Reason: v1beta1.ReasonCompiled, Message: "the policy compiled and is used for decisions",
		}
	}
	reason := v1beta1.ReasonInvalid
	if ie, ok := compileErr.(*policy.InvalidPolicyError); ok && ie.Reason != "" {
		reason = ie.Reason
	}
	return metav1.Condition{
		Type: v1beta1.ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: generation,
		Reason: reason, Message: compileErr.Error(),
	}
}

// evaluatedCondition states whether the policy could be evaluated for every
// running pod it matches, errors being pods with an error result.
func evaluatedCondition(generation int64, errors int) metav1.Condition {
	if errors == 0 {
		return metav1.Condition{
			Type: v1beta1.ConditionEvaluated, Status: metav1.ConditionTrue, ObservedGeneration: generation,
			Reason: v1beta1.ReasonAllEvaluated, Message: "the policy could be evaluated for every running pod it matches",
		}
	}
	return metav1.Condition{
		Type: v1beta1.ConditionEvaluated, Status: metav1.ConditionFalse, ObservedGeneration: generation,
		Reason: v1beta1.ReasonEvaluationErrors,
		Message: fmt.Sprintf("the policy could not be evaluated for %d running pod(s), which admission would deny if re-created "+
			"in enforce mode; their PolicyReports say why (results with result error)", errors),
	}
}

// statusEqual compares statuses, condition transition times aside.
func statusEqual(a, b v1beta1.ClusterImagePolicyStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.Pods != b.Pods || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		ca, cb := a.Conditions[i], b.Conditions[i]
		if ca.Type != cb.Type || ca.Status != cb.Status || ca.Reason != cb.Reason ||
			ca.Message != cb.Message || ca.ObservedGeneration != cb.ObservedGeneration {
			return false
		}
	}
	return true
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
