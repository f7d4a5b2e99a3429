package verify

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// verdict is what a cache holds as a pass: Evidence (signatures) or
// AttestationEvidence (verified statements, which may be megabytes).
type verdict[T any] interface {
	comparable
	// stamped is a copy verified now, to be verified again from refresh
	// on, valid until expires.
	stamped(now, refresh, expires time.Time) T
	// asCached is a copy marked as answered from the cache, to be verified
	// again from refresh on.
	asCached(refresh time.Time) T
	// size is about how many bytes the pass keeps in memory.
	size() int64
}

// cacheEntry is what the cache knows about one (digest, authority) pair:
// a verdict with its expiry, and separately the state of errors, which are
// never verdicts: they hold later attempts back, with growing back-off.
type cacheEntry[T verdict[T]] struct {
	evidence       T     // a pass
	failure        error // a verdict failure (Reason.Verdict())
	verdictExpires time.Time
	refreshAt      time.Time // a pass: from then on a refresh verifies again

	lastErr error // the last error (not a verdict)
	errors  int   // consecutive errors
	retryAt time.Time

	bytes int64 // evidence.size() when stored
}

func (e *cacheEntry[T]) verdictValid(now time.Time) bool {
	var none T
	return (e.evidence != none || e.failure != nil) && now.Before(e.verdictExpires)
}

// cache is an LRU of entries bounded in count and, for passes that carry
// bodies, in bytes; safe for concurrent use.
type cache[T verdict[T]] struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, *cacheEntry[T]]

	passTTL, failTTL    time.Duration
	refreshAhead        time.Duration // the end of a pass's life in which a refresh verifies again
	backoff, maxBackoff time.Duration
	// maxBytes bounds the sum of the passes' sizes; 0: no bound.
	maxBytes, bytes int64
}

func newCache[T verdict[T]](size int, maxBytes int64, passTTL, failTTL, backoff, maxBackoff time.Duration) *cache[T] {
	c := &cache[T]{passTTL: passTTL, failTTL: failTTL, refreshAhead: passTTL / RefreshFraction,
		backoff: backoff, maxBackoff: maxBackoff, maxBytes: maxBytes}
	c.lru, _ = simplelru.NewLRU[string, *cacheEntry[T]](size, func(_ string, e *cacheEntry[T]) { c.bytes -= e.bytes }) // size > 0 is checked by New
	return c
}

// RefreshFraction sets the refresh window: the last 1/RefreshFraction of a
// pass's life, in which a refresh (the verify path's) verifies it again
// while the pass still stands for everyone else.
const RefreshFraction = 10

// lookup answers from the cache when it can: a valid verdict, or the last
// error while its back-off runs. With refresh, a pass inside its refresh
// window is verified again unless an error's back-off holds that back.
// ok is false when the registry must be asked. A pass comes marked as
// cached, with the time from which asking again may verify it again.
func (c *cache[T]) lookup(key string, now time.Time, refresh bool) (ev T, err error, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.lru.Get(key)
	if !found {
		return ev, nil, false
	}
	var none T
	backingOff := e.lastErr != nil && now.Before(e.retryAt)
	if e.verdictValid(now) {
		if e.evidence == none {
			return ev, e.failure, true
		}
		next := e.refreshAt
		if backingOff && e.retryAt.After(next) {
			next = e.retryAt // a refresh failed: the next one waits for the back-off
		}
		if !refresh || now.Before(next) {
			return e.evidence.asCached(minTime(next, e.verdictExpires)), nil, true
		}
		return ev, nil, false
	}
	if backingOff {
		return ev, e.lastErr, true
	}
	return ev, nil, false
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// store records the outcome of one verification and returns the evidence
// as cached (with its expiry).
func (c *cache[T]) store(key string, now time.Time, ev T, err error) T {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.lru.Get(key)
	if !found {
		e = &cacheEntry[T]{}
	}
	var none T
	switch {
	case err == nil:
		expires := now.Add(c.passTTL)
		refresh := expires.Add(-c.refreshAhead)
		ev = ev.stamped(now, refresh, expires)
		*e = cacheEntry[T]{evidence: ev, verdictExpires: expires, refreshAt: refresh, bytes: e.bytes}
	case ReasonOf(err).Verdict():
		*e = cacheEntry[T]{failure: err, verdictExpires: now.Add(c.failTTL), bytes: e.bytes}
	default:
		// An error leaves an unexpired verdict in place: it still stands
		// until its own expiry, never after.
		e.lastErr = err
		e.errors++
		d := c.backoff << min(e.errors-1, 30)
		if d > c.maxBackoff || d <= 0 {
			d = c.maxBackoff
		}
		e.retryAt = now.Add(d)
	}
	size := int64(0)
	if e.evidence != none {
		size = e.evidence.size()
	}
	c.bytes += size - e.bytes
	e.bytes = size
	c.lru.Add(key, e)
	// The newest entry stays even when it alone passes the bound: it is
	// what the callers waiting on this verification are about to read.
	for c.maxBytes > 0 && c.bytes > c.maxBytes && c.lru.Len() > 1 {
		c.lru.RemoveOldest()
	}
	return ev
}

// until is when the answer cached for key may change: the end of an error's
// back-off, else the expiry of the verdict; zero when nothing is cached.
func (c *cache[T]) until(key string, now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.lru.Peek(key)
	switch {
	case !found:
		return time.Time{}
	case e.lastErr != nil && now.Before(e.retryAt):
		return e.retryAt
	case e.verdictValid(now):
		return e.verdictExpires
	}
	return time.Time{}
}

func (c *cache[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// size is the sum of the cached passes' sizes, in bytes.
func (c *cache[T]) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
