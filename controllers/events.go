package controllers

import (
	"unicode/utf8"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	"github.com/vigil-dev/vigil/internal/metrics"
)

// Event reasons.
const (
	ReasonPolicyViolation = "PolicyViolation"
	ReasonPolicyCompliant = "PolicyCompliant"
	// ReasonPolicyError: a policy can no longer be evaluated for the pod (an
	// authority or the policy body could not be evaluated, or the policy is
	// not ready).
	ReasonPolicyError   = "PolicyError"
	ReasonPolicyInvalid = "PolicyInvalid"
	ReasonPolicyReady   = "PolicyReady"
)

// maxEventNote keeps notes within what the events API accepts.
const maxEventNote = 1024

// eventEmitter emits events within a token-bucket budget, so a policy change
// that flips 10,000 pods does not flood the API server; what it drops it
// counts in vigil_events_dropped_total (the reports still say everything).
type eventEmitter struct {
	recorder events.EventRecorder
	limiter  *rate.Limiter
}

func newEventEmitter(r events.EventRecorder, perSecond float64, burst int) *eventEmitter {
	return &eventEmitter{recorder: r, limiter: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

func (e *eventEmitter) emit(obj runtime.Object, eventType, reason, note string) {
	if !e.limiter.Allow() {
		metrics.EventsDropped.Inc()
		return
	}
	e.recorder.Eventf(obj, nil, eventType, reason, "Verify", "%s", truncate(note, maxEventNote))
}

// truncate cuts s to at most n bytes, ending in "..." when cut, never in
// the middle of a UTF-8 character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func (e *eventEmitter) warning(obj runtime.Object, reason, note string) {
	e.emit(obj, corev1.EventTypeWarning, reason, note)
}

func (e *eventEmitter) normal(obj runtime.Object, reason, note string) {
	e.emit(obj, corev1.EventTypeNormal, reason, note)
}
