package controllers

import (
	"context"
	"math"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/internal/metrics"
)

// pacer bounds the verify path's requests in flight to the API server by
// how fast the API server answers them. Priority and fairness shares the
// API server's seats, not its CPU or etcd's disk: on a server whose CPU is
// the limit, Vigil's workers all writing at once lengthen every other
// client's requests, whatever their priority level. The pacer keeps a
// baseline per kind of request (the fastest answer in the last few
// minutes) and, like a congestion window, grows its limit by one a round
// while answers stay within tolerance times the baseline (on average) and
// cuts it by a quarter when they do not. So Vigil takes what the server gives without
// queueing, on a small server as on a large one, and gives way as soon as
// anyone else's load makes the server queue.
//
// A nil pacer, or one of tolerance 0, bounds nothing.
type pacer struct {
	tolerance float64
	max       float64
	now       func() time.Time

	mu       sync.Mutex
	limit    float64
	inflight int
	// freed is closed, and replaced, whenever a request ends or the limit
	// grows, to wake the requests that wait.
	freed chan struct{}
	// slowStart: no answer has been slow yet, so the limit grows by one
	// per fast answer (doubling each round), not by one per round.
	slowStart bool
	lastCut   time.Time
	latencies [requestKinds]latencies
}

// requestKind is what a request does: reads are served from the API
// server's watch cache, writes go to etcd, so each has its own baseline.
type requestKind int

const (
	requestRead requestKind = iota
	requestWrite
	requestKinds
)

// Pacing constants.
const (
	// baselineWindow: the baseline is the fastest answer of the current
	// window and the one before it, so it follows a server that became
	// slower for good within two windows, never within one flip.
	baselineWindow = 5 * time.Minute
	// latencySlack is added to tolerance × baseline: answers of a
	// millisecond differ by more than their ratio says.
	latencySlack = time.Millisecond
	// cutFactor is what a slow answer leaves of the limit.
	cutFactor = 0.75
)

// DefaultAPILatencyTolerance is Options.APILatencyTolerance's default.
const DefaultAPILatencyTolerance = 3

func newPacer(tolerance float64, workers int, now func() time.Time) *pacer {
	if tolerance <= 0 || workers < 1 {
		return nil
	}
	p := &pacer{tolerance: tolerance, max: float64(workers), now: now, limit: 1, slowStart: true, freed: make(chan struct{})}
	metrics.APIConcurrencyLimit.Set(p.limit)
	return p
}

// do runs request as one request of kind, when the limit allows it.
func (p *pacer) do(ctx context.Context, kind requestKind, request func() error) error {
	if p == nil {
		return request()
	}
	if err := p.acquire(ctx); err != nil {
		return err
	}
	began := p.now()
	err := request()
	p.release(kind, began, p.now().Sub(began), overloaded(err) && ctx.Err() == nil)
	return err
}

// overloaded: the error says the API server could not answer in time or
// would not take the request now, which counts as a slow answer. Other
// errors (not found, conflict, invalid) are answers like any other.
func overloaded(err error) bool {
	if err == nil {
		return false
	}
	return apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.ReasonForError(err) == metav1.StatusReasonUnknown
}

func (p *pacer) acquire(ctx context.Context) error {
	for {
		p.mu.Lock()
		if p.inflight < int(p.limit) {
			p.inflight++
			p.mu.Unlock()
			return nil
		}
		freed := p.freed
		p.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release ends a request sent at began that took took; failed: the server
// refused it or timed out (overloaded), which counts as slow.
func (p *pacer) release(kind requestKind, began time.Time, took time.Duration, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight--
	now := p.now()
	slow := failed
	if !failed { // a refusal's speed says nothing of the server's
		base, smoothed := p.latencies[kind].observe(took, now)
		slow = smoothed > time.Duration(p.tolerance*float64(base))+latencySlack
	}
	switch {
	case slow:
		p.slowStart = false
		// One cut per round: the requests sent before the last cut come
		// back slow too, and are the same signal.
		if began.After(p.lastCut) {
			p.limit = math.Max(1, p.limit*cutFactor)
			p.lastCut = now
		}
	case p.slowStart:
		p.limit = math.Min(p.max, p.limit+1)
	default:
		p.limit = math.Min(p.max, p.limit+1/p.limit)
	}
	metrics.APIConcurrencyLimit.Set(math.Floor(p.limit))
	close(p.freed)
	p.freed = make(chan struct{})
}

// latencies are what the answers of a kind took: the fastest in the
// current window and the one before it (the baseline), and a moving
// average (weight 1/8 to the newest, as TCP smooths its round-trip time),
// so that one answer held up by a collection or the scheduler is not taken
// for a queue.
type latencies struct {
	current, previous time.Duration
	began             time.Time
	smoothed          time.Duration
}

func (l *latencies) observe(took time.Duration, now time.Time) (baseline, smoothed time.Duration) {
	if now.Sub(l.began) >= baselineWindow {
		l.previous, l.current, l.began = l.current, 0, now
	}
	if l.current == 0 || took < l.current {
		l.current = took
	}
	if l.smoothed == 0 {
		l.smoothed = took
	} else {
		l.smoothed += (took - l.smoothed) / 8
	}
	baseline = l.current
	if l.previous != 0 && l.previous < baseline {
		baseline = l.previous
	}
	return baseline, l.smoothed
}
