// Package controllers holds the verify path: reconcilers that judge running
// pods again whenever they or a policy change, and record the outcome in
// PolicyReports (or openreports.io Reports), events, metrics and
// ClusterImagePolicy status.
package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	crmanager "sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/admission"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/policy"
)

// Options tune the verify path.
type Options struct {
	// NamespaceSelector picks the namespaces whose pods are judged.
	NamespaceSelector string
	// Workers is the number of pods judged at once.
	Workers int
	// EventsPerSecond and EventBurst bound the events emitted.
	EventsPerSecond float64
	EventBurst      int
	// ResyncPeriod is how often every pod is judged again although nothing
	// changed, which bounds how stale a report can be if an event was lost.
	ResyncPeriod time.Duration
	// SkipNameValidation lets one process set the verify path up more than
	// once, as tests that restart the controller in-process do;
	// controller-runtime otherwise refuses a second controller of a name.
	SkipNameValidation bool
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	return Options{NamespaceSelector: DefaultNamespaceSelector, Workers: 4, EventsPerSecond: 10, EventBurst: 100, ResyncPeriod: 10 * time.Minute}
}

// Setup adds the pod and policy reconcilers to m. They run on the leader only.
func Setup(ctx context.Context, m *manager.Manager, ns string, o Options) error {
	scope, err := NewScope(o.NamespaceSelector, ns)
	if err != nil {
		return err
	}
	// The reports are PolicyReports or openreports.io Reports, as the
	// manager caches them (--report-api); the reconcilers do not tell.
	reports := reportKindFor(m.ReportAPI)
	stale := newStaleReports()
	events := newEventEmitter(m.GetEventRecorder("vigil"), o.EventsPerSecond, o.EventBurst)
	counts := newTally()

	// Pod counts changed: the policies named are queued for a status update;
	// the queue coalesces a burst into one write per policy.
	countsChanged := make(chan event.GenericEvent, 1024)
	policies := &PolicyReconciler{Client: m.GetClient(), Policies: m.Policies, reports: reports, events: events, tally: counts}
	if err := ctrl.NewControllerManagedBy(m).
		Named("clusterimagepolicy").
		For(&v1beta1.ClusterImagePolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(countsChanged, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{SkipNameValidation: &o.SkipNameValidation}).
		Complete(policies); err != nil {
		return err
	}

	pods := &PodReconciler{
		Client: m.GetClient(), APIReader: m.GetAPIReader(), Policies: m.Policies, NoMatch: m.Config, Scope: scope,
		PolicyTimeout: m.PolicyTimeout,
		reports:       reports, events: events, tally: counts, stale: stale, now: time.Now,
		policyCountsChanged: func(names []string) {
			for _, n := range names {
				if n == policy.NoMatchingPolicies {
					continue
				}
				cip := &v1beta1.ClusterImagePolicy{}
				cip.Name = n
				countsChanged <- event.GenericEvent{Object: cip}
			}
		},
	}

	// A policy changed (on any replica's store): every pod in scope is judged
	// again. Decisions are cached per policy generation and input, and
	// reports are written only when they change, so this is cheap.
	policyChanged := make(chan event.GenericEvent, 1)
	m.Policies.OnChange(func(string) {
		select {
		case policyChanged <- event.GenericEvent{Object: &v1beta1.ClusterImagePolicy{}}:
		default: // one pending re-judgement covers this change too
		}
	})
	resync := make(chan event.GenericEvent, 1)
	if o.ResyncPeriod > 0 {
		if err := m.Add(ticker(o.ResyncPeriod, resync)); err != nil {
			return err
		}
	}
	return ctrl.NewControllerManagedBy(m).
		Named("pod").
		// Pods are cached as metadata only (see PodReconciler.pod).
		WatchesMetadata(&corev1.Pod{}, podEvents{EventHandler: &handler.EnqueueRequestForObject{}, stale: stale}).
		Watches(reports.newObject(), handler.EnqueueRequestsFromMapFunc(reportToPod(reports, stale))).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []ctrl.Request {
			return pods.queueAll(ctx, metrics.TriggerPod, client.InNamespace(obj.GetName()))
		}), builder.WithPredicates(predicate.Or(predicate.LabelChangedPredicate{}, deletionStarted))).
		Watches(&corev1.ConfigMap{}, settingsChanged(ns, m.Config, pods)).
		WatchesRawSource(source.Channel(policyChanged, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []ctrl.Request {
			return pods.queueAll(ctx, metrics.TriggerPolicy)
		}))).
		WatchesRawSource(source.Channel(resync, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []ctrl.Request {
			return pods.queueAll(ctx, metrics.TriggerResync)
		}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: o.Workers, SkipNameValidation: &o.SkipNameValidation}).
		Complete(pods)
}

// ticker sends an event on ch every period, on the leader, skipping a tick
// while the previous one is still pending.
func ticker(period time.Duration, ch chan<- event.GenericEvent) crmanager.RunnableFunc {
	return func(ctx context.Context) error {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				select {
				case ch <- event.GenericEvent{Object: &corev1.Pod{}}:
				default:
				}
			}
		}
	}
}

// deletionStarted passes the update of an object whose deletion began: a
// namespace being deleted leaves the scope (Scope.Includes) with its labels
// unchanged.
var deletionStarted = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetDeletionTimestamp() == nil && e.ObjectNew.GetDeletionTimestamp() != nil
	},
}

// reportToPod queues the pod a report is about, so a report deleted or edited
// by someone else is put right, and one whose pod is gone is deleted: the
// report is noted as possibly stale for the reconciler to check.
func reportToPod(reports reportKind, stale *staleReports) handler.MapFunc {
	return func(_ context.Context, obj client.Object) []ctrl.Request {
		scope := reports.scopeOf(obj)
		if scope == nil || scope.Kind != "Pod" {
			return nil
		}
		pod := types.NamespacedName{Namespace: obj.GetNamespace(), Name: scope.Name}
		stale.add(pod, obj.GetName())
		return []ctrl.Request{{NamespacedName: pod}}
	}
}

// settingsChanged follows the config-policy-controller ConfigMap in ns: it
// applies the no-match-policy, then queues every pod, so that no pod is
// judged again with the old setting (the manager's ConfigWatcher may see the
// change later than this handler).
func settingsChanged(ns string, config *admission.Config, pods *PodReconciler) handler.EventHandler {
	apply := func(ctx context.Context, obj client.Object, gone bool, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || cm.Name != admission.ConfigMapName || cm.Namespace != ns {
			return
		}
		if gone {
			cm = nil
		}
		if err := config.Update(cm); err != nil {
			log.FromContext(ctx).Error(err, "bad setting")
		}
		for _, req := range pods.queueAll(ctx, metrics.TriggerPolicy) {
			q.Add(req)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			apply(ctx, e.Object, false, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			apply(ctx, e.ObjectNew, false, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[ctrl.Request]) {
			apply(ctx, e.Object, true, q)
		},
	}
}
