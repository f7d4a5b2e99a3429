package verify

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// The cache answers repeated questions without the registry, lets passes
// and failures expire after their TTLs, never caches errors as verdicts,
// and shares one verification among concurrent callers.
func TestCache(t *testing.T) {
	reg, a, d := keylessFixture(t)
	clock := &fakeClock{now: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	obs := newCountingObserver()
	v := New(Options{Now: clock.Now, Observer: obs, PassTTL: time.Hour, FailTTL: 10 * time.Minute, ErrorBackoff: time.Second, MaxErrorBackoff: 8 * time.Second})
	ctx := context.Background()
	req := Request{Image: d.String()}

	verify := func(t *testing.T) (*Evidence, error, int64) {
		t.Helper()
		before := reg.requests.Load()
		ev, err := v.Verify(ctx, a, req)
		return ev, err, reg.requests.Load() - before
	}

	t.Run("miss then hit", func(t *testing.T) {
		ev, err, n := verify(t)
		if err != nil || ev.Cached || n == 0 {
			t.Fatalf("first verification: cached=%v requests=%d err=%v", ev != nil && ev.Cached, n, err)
		}
		if !ev.ExpiresAt.Equal(clock.Now().Add(time.Hour)) {
			t.Fatalf("pass expires at %v", ev.ExpiresAt)
		}
		ev, err, n = verify(t)
		if err != nil || !ev.Cached || n != 0 {
			t.Fatalf("second verification: cached=%v requests=%d err=%v", ev != nil && ev.Cached, n, err)
		}
	})
	t.Run("pass expires after its TTL", func(t *testing.T) {
		clock.Add(59 * time.Minute)
		if _, err, n := verify(t); err != nil || n != 0 {
			t.Fatalf("within TTL: requests=%d err=%v", n, err)
		}
		clock.Add(2 * time.Minute)
		if ev, err, n := verify(t); err != nil || ev.Cached || n == 0 {
			t.Fatalf("after TTL: requests=%d err=%v", n, err)
		}
	})
	t.Run("refresh verifies again inside the refresh window only, once", func(t *testing.T) {
		r := req
		r.Refresh, r.Lane = true, LaneBackground
		refresh := func(t *testing.T) (*Evidence, int64) {
			t.Helper()
			before := reg.requests.Load()
			ev, err := v.Verify(ctx, a, r)
			if err != nil {
				t.Fatal(err)
			}
			return ev, reg.requests.Load() - before
		}
		// The pass above was verified now, for an hour: its window is the
		// last six minutes.
		ev, n := refresh(t)
		if !ev.Cached || n != 0 || !ev.RefreshAt.Equal(clock.Now().Add(54*time.Minute)) {
			t.Fatalf("a refresh before the window: cached=%v requests=%d refreshAt=%v", ev.Cached, n, ev.RefreshAt)
		}
		clock.Add(55 * time.Minute)
		if ev, _, n := verify(t); !ev.Cached || n != 0 {
			t.Fatalf("the webhook's lookup inside the window verified again (%d requests)", n)
		}
		ev, n = refresh(t)
		if ev.Cached || n == 0 || !ev.ExpiresAt.Equal(clock.Now().Add(time.Hour)) {
			t.Fatalf("a refresh inside the window: cached=%v requests=%d expires=%v", ev.Cached, n, ev.ExpiresAt)
		}
		// The next pod of the same digest finds the renewed pass.
		if ev, n = refresh(t); !ev.Cached || n != 0 {
			t.Fatalf("a second refresh verified again: %d requests", n)
		}
	})
	t.Run("a refresh that meets an error keeps the pass until it expires", func(t *testing.T) {
		r := req
		r.Refresh, r.Lane = true, LaneBackground
		clock.Add(55 * time.Minute) // inside the window of the pass renewed above
		expires := clock.Now().Add(5 * time.Minute)
		reg.mode.Store("429")
		defer reg.mode.Store("")
		ev, err := v.Verify(ctx, a, r)
		if err != nil || !ev.Cached || !ev.ExpiresAt.Equal(expires) || !ev.RefreshAt.Equal(clock.Now().Add(time.Second)) {
			t.Fatalf("refresh against a registry answering 429: err=%v evidence=%+v", err, ev)
		}
		clock.Add(5*time.Minute + time.Second)
		if _, err := v.Verify(ctx, a, r); ReasonOf(err).Verdict() || err == nil {
			t.Fatalf("past the pass's expiry with the registry answering 429: %v, want an error", err)
		}
		reg.mode.Store("")
		clock.Add(10 * time.Second) // past the back-off
		if ev, err := v.Verify(ctx, a, r); err != nil || ev.Cached {
			t.Fatalf("after the registry recovered: %v", err)
		}
	})
	t.Run("an error is never a stale pass past the TTL, and backs off", func(t *testing.T) {
		reg.mode.Store("429")
		defer reg.mode.Store("")
		clock.Add(61 * time.Minute)
		_, err, n := verify(t)
		expectReason(t, err, ReasonRateLimited, a, d, "429")
		if n == 0 {
			t.Fatal("no registry request")
		}
		// During the back-off the error is answered without the registry...
		_, err, n = verify(t)
		if ReasonOf(err) != ReasonRateLimited || n != 0 {
			t.Fatalf("within back-off: requests=%d err=%v", n, err)
		}
		// ...and after it the registry is asked again.
		clock.Add(1100 * time.Millisecond)
		if _, err, n = verify(t); ReasonOf(err) != ReasonRateLimited || n == 0 {
			t.Fatalf("after back-off: requests=%d err=%v", n, err)
		}
		// The back-off doubled: 1.1s is not enough now.
		clock.Add(1100 * time.Millisecond)
		if _, _, n = verify(t); n != 0 {
			t.Fatalf("second back-off did not double: %d requests", n)
		}
		reg.mode.Store("")
		clock.Add(time.Second)
		if ev, err, _ := verify(t); err != nil || ev.Cached {
			t.Fatalf("after the registry recovered: %v", err)
		}
	})
	t.Run("a failure lives the failure TTL", func(t *testing.T) {
		unsigned := reg.pushImage(t, "unsigned")
		r := Request{Image: unsigned.String()}
		if _, err := v.Verify(ctx, a, r); ReasonOf(err) != ReasonNoSignatures {
			t.Fatal(err)
		}
		before := reg.requests.Load()
		clock.Add(9 * time.Minute)
		if _, err := v.Verify(ctx, a, r); ReasonOf(err) != ReasonNoSignatures || reg.requests.Load() != before {
			t.Fatalf("within failure TTL: %v", err)
		}
		clock.Add(2 * time.Minute)
		if _, err := v.Verify(ctx, a, r); ReasonOf(err) != ReasonNoSignatures || reg.requests.Load() == before {
			t.Fatalf("after failure TTL: %v", err)
		}
	})
}

// Concurrent callers of one (digest, authority) share one verification.
func TestCacheSingleflight(t *testing.T) {
	reg, a, d := keylessFixture(t)
	obs := newCountingObserver()
	v := New(Options{Observer: obs})
	release := reg.hold()
	defer release()
	const callers = 8
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), a, Request{Image: d.String()})
			errs <- err
		}()
	}
	// Every caller has joined the flight once it has counted its miss.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, misses, _ := obs.snapshot(); misses == callers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("callers did not reach the cache")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, _, outcomes := obs.snapshot(); outcomes["pass"] != 1 || len(outcomes) != 1 {
		t.Fatalf("%d callers made verifications %v, want one", callers, outcomes)
	}
}

// The cache holds at most its size, evicting the least recently used.
func TestCacheBounded(t *testing.T) {
	c := newCache[*Evidence](2, 0, time.Hour, time.Minute, time.Second, time.Minute)
	now := time.Now()
	ev := &Evidence{Image: name.MustParseReference("example.com/a@sha256:" + sixtyFour).(name.Digest)}
	for _, k := range []string{"a", "b", "c"} {
		c.store(k, now, ev, nil)
	}
	if c.len() != 2 {
		t.Fatalf("cache holds %d entries, want 2", c.len())
	}
	if _, _, ok := c.lookup("a", now, false); ok {
		t.Fatal("the oldest entry was kept")
	}
	for _, k := range []string{"b", "c"} {
		if got, err, ok := c.lookup(k, now, false); !ok || err != nil || got == nil {
			t.Fatalf("entry %s lost", k)
		}
	}
}

const sixtyFour = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// Attestation passes carry bodies: the cache is bounded in bytes, evicting
// the least recently used, and always keeps the newest entry.
func TestCacheBoundedInBytes(t *testing.T) {
	const mib = 1 << 20
	c := newCache[*AttestationEvidence](100, 3*mib+mib/2, time.Hour, time.Minute, time.Second, time.Minute)
	now := time.Now()
	body := make([]byte, mib)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		c.store(k, now, &AttestationEvidence{Attestations: []Attestation{{Statement: body}}}, nil)
	}
	if c.len() != 3 || c.size() > 3*mib+mib/2 || c.size() < 3*mib {
		t.Fatalf("cache holds %d entries, %d bytes; want 3 entries within the bound", c.len(), c.size())
	}
	for k, kept := range map[string]bool{"a": false, "b": false, "c": true, "d": true, "e": true} {
		if _, _, ok := c.lookup(k, now, false); ok != kept {
			t.Errorf("entry %s kept = %v, want %v", k, ok, kept)
		}
	}
	// A verdict failure in place of a pass gives its bytes back.
	c.store("e", now, nil, failure(ReasonNoAttestations, "no attestations found"))
	if c.size() >= 3*mib {
		t.Errorf("after a pass turned into a failure the cache still counts %d bytes", c.size())
	}
	// An entry larger than the bound alone is kept (its callers read it).
	huge := &AttestationEvidence{Attestations: []Attestation{{Statement: make([]byte, 4*mib)}}}
	if got := c.store("huge", now, huge, nil); got == nil {
		t.Fatal("store returned no evidence")
	}
	if _, _, ok := c.lookup("huge", now, false); !ok || c.len() != 1 {
		t.Errorf("after an oversized entry: %d entries, huge kept %v", c.len(), ok)
	}
}
