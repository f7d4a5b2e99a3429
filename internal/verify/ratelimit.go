package verify

import (
	"context"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Lane says who is waiting for a verification: a webhook request holds an
// API call open, a background re-verification does not.
type Lane int

const (
	// LaneAdmission goes first: it may use every token of the rate limits.
	LaneAdmission Lane = iota
	// LaneBackground may not take the tokens kept for admission, and waits
	// whenever admission requests are queued.
	LaneBackground
)

func (l Lane) String() string {
	if l == LaneBackground {
		return "background"
	}
	return "admission"
}

type laneKey struct{}

// WithLane marks a context's registry requests with a lane.
func WithLane(ctx context.Context, l Lane) context.Context {
	return context.WithValue(ctx, laneKey{}, l)
}

func laneOf(ctx context.Context) Lane {
	l, _ := ctx.Value(laneKey{}).(Lane)
	return l
}

// maxRegistries bounds the per-registry limiters kept; image references are
// tenant input, so the set of hosts is too.
const maxRegistries = 1024

// limiter is a global and a per-registry token bucket with two lanes. The
// background lane takes a token only while more than reserve tokens remain
// in both buckets, so admission finds tokens waiting and never queues
// behind background work; a queued admission request drives the buckets
// negative, which holds the background lane back until it is served.
type limiter struct {
	mu          sync.Mutex
	global      *rate.Limiter
	perRegistry map[string]*rate.Limiter
	qps         rate.Limit
	burst       int
	reserve     float64 // fraction of each bucket's burst kept for admission
}

func newLimiter(globalQPS float64, globalBurst int, registryQPS float64, registryBurst int, reserve float64) *limiter {
	return &limiter{
		global:      rate.NewLimiter(rate.Limit(globalQPS), globalBurst),
		perRegistry: map[string]*rate.Limiter{},
		qps:         rate.Limit(registryQPS),
		burst:       registryBurst,
		reserve:     reserve,
	}
}

func (l *limiter) registry(host string) *rate.Limiter {
	r, ok := l.perRegistry[host]
	if !ok {
		if len(l.perRegistry) >= maxRegistries {
			for h := range l.perRegistry { // forget one: a fresh bucket is full, never stricter
				delete(l.perRegistry, h)
				break
			}
		}
		r = rate.NewLimiter(l.qps, l.burst)
		l.perRegistry[host] = r
	}
	return r
}

// take asks for one request to host at now. Admission always gets a token
// and is told how long to wait for it (cancel undoes it). Background gets
// one only when both buckets hold more than their reserve; otherwise ok is
// false and wait says when to ask again.
func (l *limiter) take(now time.Time, lane Lane, host string) (wait time.Duration, ok bool, cancel func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	reg := l.registry(host)
	if lane == LaneAdmission {
		g, r := l.global.ReserveN(now, 1), reg.ReserveN(now, 1)
		wait = max(g.DelayFrom(now), r.DelayFrom(now))
		return wait, true, func() { g.CancelAt(now); r.CancelAt(now) }
	}
	for _, b := range []*rate.Limiter{l.global, reg} {
		need := l.reserve*float64(b.Burst()) + 1
		if have := b.TokensAt(now); have < need {
			wait = max(wait, time.Duration((need-have)/float64(b.Limit())*float64(time.Second)))
		}
	}
	if wait > 0 {
		return max(wait, time.Millisecond), false, nil
	}
	l.global.AllowN(now, 1)
	reg.AllowN(now, 1)
	return 0, true, nil
}

// wait blocks until a request to host may go, or ctx ends.
func (l *limiter) wait(ctx context.Context, now func() time.Time, host string) error {
	lane := laneOf(ctx)
	for {
		d, ok, cancel := l.take(now(), lane, host)
		if ok && d == 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			if ok {
				return nil
			}
		case <-ctx.Done():
			t.Stop()
			if cancel != nil {
				cancel()
			}
			return ctx.Err()
		}
	}
}

// limitedTransport applies the limiter to every registry request and tells
// the observer its registry and status code.
type limitedTransport struct {
	base     http.RoundTripper
	limiter  *limiter
	now      func() time.Time
	observer Observer
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.limiter.wait(req.Context(), t.now, req.URL.Host); err != nil {
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	t.observer.RegistryRequest(req.URL.Host, code)
	return resp, err
}
