// Package metrics defines Vigil's Prometheus metrics (prefix vigil_) and
// registers them in controller-runtime's registry, which the manager serves.
// Labels are bounded: policy names, results, kinds and triggers, never pods,
// and namespaces only when UseNamespaceLabel asks for them.
package metrics

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Evaluation triggers, the values of the trigger label.
const (
	TriggerAdmission = "admission"
	TriggerPod       = "pod"
	TriggerPolicy    = "policy"
	TriggerResync    = "resync"
	// TriggerTime: judged again only because time passed (a verification
	// expired or was retried, or a policy reads the clock).
	TriggerTime = "time"
)

// Admission decisions, the values of the decision label.
const (
	DecisionAllowed = "allowed"
	DecisionDenied  = "denied"
	DecisionWarned  = "warned"
	// DecisionError: the webhook could not decide (for example the policies
	// were not loaded yet); kube-apiserver applies the failurePolicy.
	DecisionError = "error"
)

// Other is the value of a label whose value a client chose outside the known
// set, such as the kind or operation of an admission request sent straight to
// the webhook: every such request counts under Other, so no client can add a
// series (and the memory it keeps) by inventing values.
const Other = "other"

// Known is value when it is one of known, Other otherwise.
func Known(value string, known []string) string {
	if slices.Contains(known, value) {
		return value
	}
	return Other
}

// Report write outcomes, the values of the outcome label.
const (
	WriteCreated   = "created"
	WriteUpdated   = "updated"
	WriteUnchanged = "unchanged"
	WriteDeleted   = "deleted"
	WriteError     = "error"
)

var (
	// PolicyResults is the number of running pods per policy per result, now
	// (and per namespace with UseNamespaceLabel). Set it through
	// SetPolicyResults; it is registered at first use.
	PolicyResults *prometheus.GaugeVec

	// Drift counts drift: a running pod's result turning fail or warn when
	// the pod was in policy, or a first judgement of fail (report.IsDrift).
	// Count it through AddDrift; it is registered at first use.
	Drift *prometheus.CounterVec
	// DriftedPods is the number of running pods drifted out of a policy and
	// still out of it. Set it through SetDriftedPods; it is registered at
	// first use.
	DriftedPods *prometheus.GaugeVec

	// Evaluations counts decisions by trigger and result.
	Evaluations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_evaluations_total",
		Help: "Policy evaluations by trigger (admission, pod, policy, resync, time) and result.",
	}, []string{"trigger", "result"})

	// EvaluationDuration is the time one policy evaluation takes, by policy language.
	EvaluationDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vigil_evaluation_duration_seconds",
		Help:    "Time to evaluate one policy for one object, by type (cue, rego, static).",
		Buckets: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1},
	}, []string{"type"})

	// AdmissionRequests counts admission requests by kind, operation and decision.
	AdmissionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_admission_requests_total",
		Help: "Admission requests by kind, operation and decision (allowed, denied, warned, error); kinds and operations outside the known sets count as other.",
	}, []string{"kind", "operation", "decision"})

	// AdmissionDuration is the time the webhook takes to answer, by kind.
	AdmissionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vigil_admission_duration_seconds",
		Help:    "Time the validating webhook takes to decide, by kind (other for kinds outside the known set).",
		Buckets: []float64{1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
	}, []string{"kind"})

	// ReportWrites counts PolicyReport writes by outcome.
	ReportWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_report_writes_total",
		Help: "PolicyReport writes by outcome (created, updated, unchanged, deleted, error).",
	}, []string{"outcome"})

	// ReportWriteRetries counts report writes sent a second time, as a
	// server-side apply, because the first (a create, or an update of the
	// version Vigil held) found the report in another state.
	ReportWriteRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_report_write_retries_total",
		Help: "Report writes sent again as a server-side apply: the report existed, was gone, or was at another version than Vigil held (someone else wrote it).",
	})

	// PolicyReady is 1 when the policy compiled and is in use, 0 otherwise.
	PolicyReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_policy_ready",
		Help: "1 when the ClusterImagePolicy compiled and is used for decisions, 0 when it is not Ready.",
	}, []string{"policy"})

	// EventsDropped counts events not emitted because of the rate limit.
	EventsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_events_dropped_total",
		Help: "Kubernetes events Vigil did not emit because a burst exceeded the rate limit.",
	})

	// LastEvaluation is the time of the last evaluation of any pod.
	LastEvaluation = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_last_evaluation_timestamp_seconds",
		Help: "Unix time of the last evaluation of a running pod by the verify path (admission does not count, so a stuck verify path shows).",
	})

	// APIConcurrencyLimit is how many requests the verify path may have in
	// flight to the API server now (--api-latency-tolerance).
	APIConcurrencyLimit = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_api_concurrency_limit",
		Help: "Requests the verify path may have in flight to the API server now: grows while the API server answers within --api-latency-tolerance times its fastest recent answers, shrinks when it queues (0 while the pacing is off).",
	})
)

// Signature verification (internal/verify reports through
// VerificationObserver). Registries are tenant input: the registry label
// takes at most MaxRegistryLabels distinct values, then Other.
var (
	// RegistryRequests counts HTTP requests to registries by registry and
	// status code ("0" when no response arrived).
	RegistryRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_registry_requests_total",
		Help: "HTTP requests to OCI registries by registry (other past the first 50) and status code (0: no response; codes outside the known set count by class, e.g. 4xx).",
	}, []string{"registry", "code"})

	// VerificationCacheLookups counts signature verifications answered from
	// the cache (hit) or not (miss).
	VerificationCacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_verification_cache_lookups_total",
		Help: "Signature verifications by cache result (hit, miss).",
	}, []string{"result"})

	// Verifications counts the verifications that reached the registry, by
	// outcome: pass, or the reason they did not pass.
	Verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_verifications_total",
		Help: "Signature verifications that reached a registry, by outcome (pass, or the reason: NoSignatures, SignatureMismatch, IdentityMismatch are verdicts; the others are errors) and kind (pass, verdict, error).",
	}, []string{"outcome", "kind"})

	// VerificationDuration is the time one verification takes, registry
	// requests and cryptography together.
	VerificationDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "vigil_verification_duration_seconds",
		Help:    "Time one signature verification takes, registry requests included, by kind (pass, verdict, error).",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"kind"})
)

// EvaluationObserver records policy evaluation times in
// vigil_evaluation_duration_seconds; pass it as policy.Options.Observer.
type EvaluationObserver struct{}

// evaluationTypes are the observers of the known policy types, resolved
// once: a decision observes each of its policies.
var evaluationTypes = map[string]prometheus.Observer{
	"cue":    EvaluationDuration.WithLabelValues("cue"),
	"rego":   EvaluationDuration.WithLabelValues("rego"),
	"static": EvaluationDuration.WithLabelValues("static"),
}

// ObserveEvaluation records d for policyType (cue, rego or static; other
// values are not recorded, so that the label stays bounded).
func (EvaluationObserver) ObserveEvaluation(policyType string, d time.Duration) {
	if o, ok := evaluationTypes[policyType]; ok {
		o.Observe(d.Seconds())
	}
}

// The per-pod metrics are registered once, with or without the namespace
// label: a registry never accepts one name with two label sets.
var (
	perPod         sync.Once
	namespaceLabel bool
)

func registerPerPod(byNamespace bool) (registered bool) {
	perPod.Do(func() {
		namespaceLabel = byNamespace
		PolicyResults = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_policy_results",
			Help: "Running pods per policy and result (pass, fail, warn, error, skip), as their PolicyReports say now.",
		}, withNamespace([]string{"policy", "result"}, byNamespace))
		Drift = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_drift_total",
			Help: "Drift: results of running pods that turned fail or warn from pass, skip, error or no result (a new policy), and first judgements of fail (the pod got in unjudged).",
		}, withNamespace([]string{"policy"}, byNamespace))
		DriftedPods = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_drifted_pods",
			Help: "Running pods that drifted out of the policy and are still out of it (fail or warn), now.",
		}, withNamespace([]string{"policy"}, byNamespace))
		crmetrics.Registry.MustRegister(PolicyResults, Drift, DriftedPods)
		registered = true
	})
	return registered
}

func withNamespace(labels []string, byNamespace bool) []string {
	if byNamespace {
		return append(labels, "namespace")
	}
	return labels
}

// UseNamespaceLabel adds a namespace label to vigil_policy_results,
// vigil_drift_total and vigil_drifted_pods, for those who accept one series per namespace and
// policy. It must come before anything is recorded.
func UseNamespaceLabel() error {
	if !registerPerPod(true) && !namespaceLabel {
		return errors.New("the namespace label must be chosen before any pod result is recorded")
	}
	return nil
}

// NamespaceLabel says whether the per-pod metrics carry a namespace label.
func NamespaceLabel() bool {
	registerPerPod(false)
	return namespaceLabel
}

// SetPolicyResults sets the number of pods with result for policy; namespace
// is used only with the namespace label.
func SetPolicyResults(policy, result, namespace string, pods int) {
	if NamespaceLabel() {
		PolicyResults.WithLabelValues(policy, result, namespace).Set(float64(pods))
		return
	}
	PolicyResults.WithLabelValues(policy, result).Set(float64(pods))
}

// AddDrift counts one drift of a pod in namespace against policy.
func AddDrift(policy, namespace string) {
	if NamespaceLabel() {
		Drift.WithLabelValues(policy, namespace).Inc()
		return
	}
	Drift.WithLabelValues(policy).Inc()
}

// SetDriftedPods sets the number of pods drifted out of policy; namespace is
// used only with the namespace label.
func SetDriftedPods(policy, namespace string, pods int) {
	if NamespaceLabel() {
		DriftedPods.WithLabelValues(policy, namespace).Set(float64(pods))
		return
	}
	DriftedPods.WithLabelValues(policy).Set(float64(pods))
}

// ForgetPolicy drops every vigil_policy_results and vigil_drifted_pods
// series of policy.
func ForgetPolicy(policy string) {
	registerPerPod(false)
	PolicyResults.DeletePartialMatch(prometheus.Labels{"policy": policy})
	DriftedPods.DeletePartialMatch(prometheus.Labels{"policy": policy})
}

func init() {
	crmetrics.Registry.MustRegister(
		Evaluations, EvaluationDuration, AdmissionRequests,
		AdmissionDuration, ReportWrites, ReportWriteRetries, PolicyReady, EventsDropped, LastEvaluation, APIConcurrencyLimit,
		RegistryRequests, VerificationCacheLookups, Verifications, VerificationDuration,
	)
	// Besides rest_client_requests_total, which controller-runtime always
	// serves: how long Vigil's requests take, and how long client-go's
	// token bucket (--kube-api-qps) held them back, so throttling shows.
	crmetrics.RegisterRESTClientMetrics(crmetrics.MetricRequestLatency, crmetrics.MetricRateLimiterLatency)
}
