// Package controllers holds the verify path: reconcilers that judge running
// pods again whenever they, a policy or a setting change, and record the
// outcome in reports (internal/report), events, metrics and
// ClusterImagePolicy status.
package controllers

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	crmanager "sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
	"github.com/vigil-dev/vigil/internal/report"
	"github.com/vigil-dev/vigil/internal/settings"
	"github.com/vigil-dev/vigil/internal/verify"
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
	// ClockRecheck is the longest a pod under a policy that reads the clock
	// waits before it is judged again (policy.Options.ClockRecheck).
	ClockRecheck time.Duration
	// APILatencyTolerance paces the verify path's requests to the API
	// server: their number in flight grows while the server answers within
	// this many times its fastest recent answers, and shrinks when it
	// does not (pacer). 0: no pacing, Workers bound the requests alone.
	APILatencyTolerance float64
	// SkipNameValidation lets one process set the verify path up more than
	// once, as tests that restart the controller in-process do;
	// controller-runtime otherwise refuses a second controller of a name.
	SkipNameValidation bool
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	return Options{NamespaceSelector: DefaultNamespaceSelector, Workers: 16, EventsPerSecond: 10, EventBurst: 100, ResyncPeriod: 10 * time.Minute,
		ClockRecheck: policy.DefaultClockRecheck, APILatencyTolerance: DefaultAPILatencyTolerance}
}

// Deps are what the verify path shares with the webhook on every replica.
type Deps struct {
	// Namespace is Vigil's own, never judged.
	Namespace string
	// Policies are the compiled ClusterImagePolicies.
	Policies *policystore.Store
	// Settings follow the config-policy-controller ConfigMap.
	Settings *settings.Settings
	// Reports is the API the reports are stored in (the manager caches
	// them, compacted by report.Compact).
	Reports report.API
	// PolicyTimeout bounds each policy's evaluation (policy.Options).
	PolicyTimeout time.Duration
	// Verifier verifies signatures, shared with the webhook; nil: key and
	// keyless authorities give error results.
	Verifier policy.Verifier
	// Keychains give the registry credentials of pods; nil: anonymous.
	Keychains *verify.Keychains
}

// countsInterval is how often at most a policy's status is written while
// its pod counts keep changing: a policy change that turns 10,000 pods
// writes its status about once a second, not 10,000 times.
const countsInterval = time.Second

// Setup adds the pod and policy reconcilers to mgr. They run on the leader only.
func Setup(mgr ctrl.Manager, deps Deps, o Options) error {
	scope, err := NewScope(o.NamespaceSelector, deps.Namespace)
	if err != nil {
		return err
	}
	if deps.Reports == "" {
		deps.Reports = report.WGPolicy
	}
	open := &atomic.Bool{}
	counts := newTally()
	events := newEventEmitter(mgr.GetEventRecorder("vigil"), o.EventsPerSecond, o.EventBurst)
	policyFeed := &feed{}
	allPolicies, allPods := newSignal(), newSignal()

	policies := &PolicyReconciler{Client: mgr.GetClient(), Policies: deps.Policies, events: events, tally: counts, open: open}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("clusterimagepolicy").
		For(&v1beta1.ClusterImagePolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// The store compiled a policy, or its pod counts changed.
		WatchesRawSource(policyFeed.source()).
		WatchesRawSource(allPolicies.source(func(ctx context.Context) []ctrl.Request {
			return listPolicies(ctx, mgr.GetClient())
		})).
		WithOptions(controller.Options{SkipNameValidation: &o.SkipNameValidation}).
		Complete(policies); err != nil {
		return err
	}
	deps.Policies.OnChange(func(name string) { policyFeed.add(name) })

	mc, err := metadata.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return fmt.Errorf("metadata client: %w", err)
	}
	wc, err := client.NewWithWatch(mgr.GetConfig(), client.Options{HTTPClient: mgr.GetHTTPClient(), Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("watching client: %w", err)
	}
	writer, err := newReportWriter(mgr.GetConfig(), mgr.GetHTTPClient(), mgr.GetRESTMapper(), mgr.GetScheme())
	if err != nil {
		return fmt.Errorf("report writer: %w", err)
	}
	stale, own := newStaleReports(), newOwnWrites()
	pods := &PodReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Deps: deps,
		scope: scope, events: events, tally: counts, stale: stale, own: own,
		index: newPodIndex(mc, stale), reports: newReportIndex(wc, deps.Reports, own, stale),
		open: open, now: time.Now, clockRecheck: o.ClockRecheck,
		pace: newPacer(o.APILatencyTolerance, o.Workers, time.Now), pages: newPodPages(mgr.GetAPIReader()), writer: writer,
		policyCountsChanged: func(names []string) {
			for _, n := range names {
				if n != policy.NoMatchingPolicies {
					policyFeed.addAfter(n, countsInterval)
				}
			}
		},
	}
	// A policy or the no-match setting changed (on this replica's store and
	// settings): every pod in scope is judged again. Decisions are cached per
	// policy generation and input, and reports are written only when they
	// change, so this is cheap.
	deps.Policies.OnChange(func(string) { allPods.fire() })
	deps.Settings.OnChange(allPods.fire)
	if err := mgr.Add(pods.pages); err != nil {
		return err
	}
	if err := mgr.Add(&verifyPath{
		reports: pods.reports, deps: deps, tally: counts, open: open,
		allPods: allPods, allPolicies: allPolicies,
	}); err != nil {
		return err
	}
	resync := newSignal()
	if o.ResyncPeriod > 0 {
		if err := mgr.Add(ticker(o.ResyncPeriod, resync)); err != nil {
			return err
		}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("pod").
		// Pods are not cached: podIndex keeps what is known of them.
		WatchesRawSource(pods.index).
		// Reports are not cached: reportIndex holds what is needed of them.
		WatchesRawSource(pods.reports).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []ctrl.Request {
			return pods.queuePods(metrics.TriggerPod, obj.GetName())
		}), builder.WithPredicates(predicate.Or(predicate.LabelChangedPredicate{}, deletionStarted))).
		WatchesRawSource(allPods.source(func(ctx context.Context) []ctrl.Request {
			return pods.queueAll(ctx, metrics.TriggerPolicy)
		})).
		WatchesRawSource(resync.source(func(ctx context.Context) []ctrl.Request {
			return pods.queueAll(ctx, metrics.TriggerResync)
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: o.Workers, SkipNameValidation: &o.SkipNameValidation}).
		Complete(pods)
}

// verifyPath opens the verify path on the leader, once it can judge: when
// the store holds every policy and the settings are read, it counts the
// reports that exist (so pod counts survive a restart rather than drop to
// zero until every pod is judged again), then queues every pod and policy.
type verifyPath struct {
	reports              *reportIndex
	deps                 Deps
	tally                *tally
	open                 *atomic.Bool
	allPods, allPolicies signal
}

func (v *verifyPath) Start(ctx context.Context) error {
	if err := v.deps.Policies.WaitSynced(ctx); err != nil {
		return nil // stopping
	}
	select {
	case <-v.deps.Settings.Synced():
	case <-ctx.Done():
		return nil
	}
	if err := v.reports.WaitForSync(ctx); err != nil {
		return nil // stopping
	}
	v.tally.seed(v.reports.podResults())
	v.open.Store(true)
	v.allPolicies.fire()
	v.allPods.fire()
	return nil
}

func listPolicies(ctx context.Context, c client.Reader) []ctrl.Request {
	var list v1beta1.ClusterImagePolicyList
	if err := c.List(ctx, &list); err != nil {
		return nil
	}
	reqs := make([]ctrl.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, ctrl.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
	}
	return reqs
}

// ticker fires s every period, on the leader.
func ticker(period time.Duration, s signal) crmanager.RunnableFunc {
	return func(ctx context.Context) error {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				s.fire()
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

// signal is a source that queues what its list function returns each time
// it fires; fires that come while one is pending are one. It may fire before
// the controller runs, on any replica, without blocking.
type signal chan event.GenericEvent

func newSignal() signal { return make(signal, 1) }

func (s signal) fire() {
	select {
	case s <- event.GenericEvent{Object: &metav1.PartialObjectMetadata{}}:
	default: // one pending fire covers this one too
	}
}

func (s signal) source(list func(context.Context) []ctrl.Request) source.Source {
	return source.Channel(s, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []ctrl.Request {
		return list(ctx)
	}))
}
