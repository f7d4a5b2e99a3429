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
	// stamped is a copy valid from now until expires.
	stamped(now, expires time.Time) T
	// asCached is a copy marked as answered from the cache.
	asCached() T
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
	backoff, maxBackoff time.Duration
	// maxBytes bounds the sum of the passes' sizes; 0: no bound.
	maxBytes, bytes int64
}

func newCache[T verdict[T]](size int, maxBytes int64, passTTL, failTTL, backoff, maxBackoff time.Duration) *cache[T] {
	c := &cache[T]{passTTL: passTTL, failTTL: failTTL, backoff: backoff, maxBackoff: maxBackoff, maxBytes: maxBytes}
	c.lru, _ = simplelru.NewLRU[string, *cacheEntry[T]](size, func(_ string, e *cacheEntry[T]) { c.bytes -= e.bytes }) // size > 0 is checked by New
	return c
}

// lookup answers from the cache when it can: a valid verdict (unless
// refresh asks to verify again), or the last error while its back-off
// runs. ok is false when the registry must be asked.
func (c *cache[T]) lookup(key string, now time.Time, refresh bool) (ev T, err error, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.lru.Get(key)
	if !found {
		return ev, nil, false
	}
	if !refresh && e.verdictValid(now) {
		return e.evidence, e.failure, true
	}
	if e.lastErr != nil && now.Before(e.retryAt) {
		if e.verdictValid(now) { // a refresh during back-off keeps the verdict
			return e.evidence, e.failure, true
		}
		return ev, e.lastErr, true
	}
	return ev, nil, false
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
		ev = ev.stamped(now, now.Add(c.passTTL))
		*e = cacheEntry[T]{evidence: ev, verdictExpires: now.Add(c.passTTL), bytes: e.bytes}
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
