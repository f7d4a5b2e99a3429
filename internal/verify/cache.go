package verify

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// cacheEntry is what the cache knows about one (digest, authority) pair:
// a verdict with its expiry, and separately the state of errors, which are
// never verdicts: they hold later attempts back, with growing back-off.
type cacheEntry struct {
	evidence       *Evidence // a pass
	failure        error     // a verdict failure (Reason.Verdict())
	verdictExpires time.Time

	lastErr error // the last error (not a verdict)
	errors  int   // consecutive errors
	retryAt time.Time
}

func (e *cacheEntry) verdictValid(now time.Time) bool {
	return (e.evidence != nil || e.failure != nil) && now.Before(e.verdictExpires)
}

// cache is a bounded LRU of entries; safe for concurrent use.
type cache struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, *cacheEntry]

	passTTL, failTTL    time.Duration
	backoff, maxBackoff time.Duration
}

func newCache(size int, passTTL, failTTL, backoff, maxBackoff time.Duration) *cache {
	l, _ := simplelru.NewLRU[string, *cacheEntry](size, nil) // size > 0 is checked by New
	return &cache{lru: l, passTTL: passTTL, failTTL: failTTL, backoff: backoff, maxBackoff: maxBackoff}
}

// lookup answers from the cache when it can: a valid verdict (unless
// refresh asks to verify again), or the last error while its back-off
// runs. ok is false when the registry must be asked.
func (c *cache) lookup(key string, now time.Time, refresh bool) (ev *Evidence, err error, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.lru.Get(key)
	if !found {
		return nil, nil, false
	}
	if !refresh && e.verdictValid(now) {
		return e.evidence, e.failure, true
	}
	if e.lastErr != nil && now.Before(e.retryAt) {
		if e.verdictValid(now) { // a refresh during back-off keeps the verdict
			return e.evidence, e.failure, true
		}
		return nil, e.lastErr, true
	}
	return nil, nil, false
}

// store records the outcome of one verification and returns the evidence
// as cached (with its expiry).
func (c *cache) store(key string, now time.Time, ev *Evidence, err error) *Evidence {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.lru.Get(key)
	if !found {
		e = &cacheEntry{}
	}
	switch {
	case err == nil:
		copied := *ev
		copied.VerifiedAt, copied.ExpiresAt = now, now.Add(c.passTTL)
		*e = cacheEntry{evidence: &copied, verdictExpires: copied.ExpiresAt}
		ev = &copied
	case ReasonOf(err).Verdict():
		*e = cacheEntry{failure: err, verdictExpires: now.Add(c.failTTL)}
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
	c.lru.Add(key, e)
	return ev
}

// until is when the answer cached for key may change: the end of an error's
// back-off, else the expiry of the verdict; zero when nothing is cached.
func (c *cache) until(key string, now time.Time) time.Time {
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

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
