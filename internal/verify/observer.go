package verify

import "time"

// Observer receives what the verifier does, for metrics. internal/metrics
// implements it; the methods must be cheap and safe for concurrent use.
type Observer interface {
	// RegistryRequest is one HTTP request to a registry: its host and the
	// status code, or 0 when no response arrived.
	RegistryRequest(registry string, code int)
	// CacheLookup is one Verify call answered from the cache (hit) or not.
	CacheLookup(hit bool)
	// Verified is one verification that reached the registry: its outcome
	// ("pass", or a Reason) and how long it took.
	Verified(outcome string, took time.Duration)
}

// nopObserver is the default Observer.
type nopObserver struct{}

func (nopObserver) RegistryRequest(string, int)    {}
func (nopObserver) CacheLookup(bool)               {}
func (nopObserver) Verified(string, time.Duration) {}
