package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// pacerClock is a clock that requests advance by what they take.
type pacerClock struct{ t time.Time }

func (c *pacerClock) now() time.Time { return c.t }

// answer runs one request of kind that takes took and ends with err.
func (c *pacerClock) answer(t *testing.T, p *pacer, kind requestKind, took time.Duration, err error) {
	t.Helper()
	got := p.do(context.Background(), kind, func() error {
		c.t = c.t.Add(took)
		return err
	})
	if !errors.Is(got, err) {
		t.Fatalf("do returned %v, want %v", got, err)
	}
}

func limitOf(p *pacer) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit
}

func TestPacer(t *testing.T) {
	clock := &pacerClock{t: time.Unix(1_000_000, 0)}
	p := newPacer(2, 16, clock.now)
	if got := limitOf(p); got != 1 {
		t.Fatalf("a new pacer allows %g requests, want 1 until the server has answered", got)
	}

	// Fast answers: one more per answer until the first slow one, up to the workers.
	for range 20 {
		clock.answer(t, p, requestWrite, 4*time.Millisecond, nil)
	}
	if got := limitOf(p); got != 16 {
		t.Fatalf("after 20 fast answers the limit is %g, want the 16 workers", got)
	}

	// One answer held up (a collection, the scheduler) is not a queue.
	clock.answer(t, p, requestWrite, 30*time.Millisecond, nil)
	if got := limitOf(p); got != 16 {
		t.Fatalf("one slow answer cut the limit to %g; the average of the answers decides", got)
	}
	// Answers stay slow: their average passes twice the fastest (plus the
	// slack) within a few answers, and the limit is cut by a quarter.
	for i := 0; limitOf(p) == 16; i++ {
		if i == 5 {
			t.Fatal("five more answers of 7.5 times the fastest did not cut the limit")
		}
		clock.answer(t, p, requestWrite, 30*time.Millisecond, nil)
	}
	if got := limitOf(p); got != 12 {
		t.Fatalf("after slow answers the limit is %g, want 12", got)
	}
	// A request sent before the cut comes back slow too: the same signal.
	clock.answer(t, p, requestWrite, 30*time.Millisecond, nil)
	if got := limitOf(p); got != 12 {
		t.Fatalf("a slow answer to a request sent before the cut cut again: %g, want 12", got)
	}
	// Reads have a baseline of their own: 1 ms reads are fast even though
	// writes now take 30 ms, and 5 ms reads are slow although writes were
	// that fast.
	clock.answer(t, p, requestRead, time.Millisecond, nil)
	if got := limitOf(p); got <= 12 {
		t.Fatalf("a fast read did not count as fast: limit %g", got)
	}
	for range 10 {
		clock.t = clock.t.Add(time.Second)
		clock.answer(t, p, requestRead, 5*time.Millisecond, nil)
	}
	if got := limitOf(p); got >= 12 {
		t.Fatalf("reads five times the fastest read did not cut the limit: %g", got)
	}

	// The server keeps queueing: the limit falls to one, never below.
	for range 30 {
		clock.t = clock.t.Add(time.Second)
		clock.answer(t, p, requestWrite, 50*time.Millisecond, nil)
	}
	if got := limitOf(p); got != 1 {
		t.Fatalf("after many slow rounds the limit is %g, want 1", got)
	}

	// Once answers are fast again (on average), the limit grows by about
	// one per round, one answer divided by the limit, not one per answer.
	for i := 0; limitOf(p) == 1; i++ {
		if i == 100 {
			t.Fatal("100 fast answers did not let the limit grow")
		}
		clock.answer(t, p, requestWrite, 4*time.Millisecond, nil)
	}
	for range 4 {
		clock.answer(t, p, requestWrite, 4*time.Millisecond, nil)
	}
	if got := limitOf(p); got < 3 || got > 4 {
		t.Fatalf("5 fast answers from 1 leave the limit at %g, want about 3.5 (additive; doubling would be 6)", got)
	}

	// A server that refuses (429, priority and fairness) is slow however fast it says so.
	clock.t = clock.t.Add(time.Second)
	before := limitOf(p)
	clock.answer(t, p, requestWrite, time.Millisecond, apierrors.NewTooManyRequests("queue full", 1))
	if got := limitOf(p); got >= before {
		t.Fatalf("a 429 did not cut the limit: %g, was %g", got, before)
	}
	// Not found is an answer like any other.
	before = limitOf(p)
	clock.answer(t, p, requestWrite, 4*time.Millisecond, apierrors.NewNotFound(schema.GroupResource{Resource: "policyreports"}, "x"))
	if got := limitOf(p); got <= before {
		t.Fatalf("a fast not-found did not count as a fast answer: %g, was %g", got, before)
	}

	// A server that became slower for good: after two windows its slower
	// answers are the baseline, and the limit grows again.
	for range 3 {
		clock.t = clock.t.Add(baselineWindow)
		clock.answer(t, p, requestWrite, 40*time.Millisecond, nil)
		clock.answer(t, p, requestRead, 20*time.Millisecond, nil)
	}
	before = limitOf(p)
	for range 10 {
		clock.answer(t, p, requestWrite, 40*time.Millisecond, nil)
	}
	if got := limitOf(p); got <= before {
		t.Fatalf("the baseline did not follow a server that became slower: limit %g, was %g", got, before)
	}
}

// The limit holds requests back, a freed slot lets one through, and a
// waiting request gives up with its context.
func TestPacerHoldsRequests(t *testing.T) {
	p := newPacer(2, 4, time.Now)
	if err := p.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second request at a limit of 1 got %v, want to wait until its context ends", err)
	}
	through := make(chan error, 1)
	go func() { through <- p.acquire(context.Background()) }()
	select {
	case err := <-through:
		t.Fatalf("a request passed a full limit: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	p.release(requestRead, time.Now(), time.Millisecond, false)
	select {
	case err := <-through:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot did not let the waiting request through")
	}

	var off *pacer
	ran := false
	if err := off.do(context.Background(), requestWrite, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("a nil pacer: ran %v, %v", ran, err)
	}
	if newPacer(0, 16, time.Now) != nil {
		t.Fatal("tolerance 0 made a pacer; it should pace nothing")
	}
}
