package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/vigil-dev/vigil/internal/verify"
)

// MaxRegistryLabels bounds the distinct values of the registry label: a
// tenant chooses the registries its images come from, so past this many the
// requests count under Other.
const MaxRegistryLabels = 50

// Verification kinds, the values of the kind label.
const (
	VerificationPass    = "pass"
	VerificationVerdict = "verdict"
	VerificationError   = "error"
)

// verificationOutcomes are the values the outcome label may take.
var verificationOutcomes = []string{
	VerificationPass,
	string(verify.ReasonNoSignatures), string(verify.ReasonSignatureMismatch), string(verify.ReasonIdentityMismatch),
	string(verify.ReasonRegistryUnreachable), string(verify.ReasonUnauthorized), string(verify.ReasonRateLimited),
	string(verify.ReasonTimeout), string(verify.ReasonNotFound), string(verify.ReasonRegistryError),
	string(verify.ReasonMissingTrustRoot), string(verify.ReasonInvalidReference),
}

// knownCodes are the status codes registries answer with that get a label
// value of their own; others count by class ("4xx"), so a registry cannot
// add series by inventing codes.
var knownCodes = map[int]bool{
	0: true, 200: true, 201: true, 202: true, 204: true, 206: true, 307: true, 308: true,
	400: true, 401: true, 403: true, 404: true, 405: true, 408: true, 409: true, 416: true, 429: true,
	500: true, 502: true, 503: true, 504: true,
}

func codeLabel(code int) string {
	if knownCodes[code] {
		return strconv.Itoa(code)
	}
	if code >= 100 && code < 600 {
		return strconv.Itoa(code/100) + "xx"
	}
	return Other
}

// VerificationObserver implements verify.Observer with Vigil's metrics;
// pass one to verify.New. Its zero value is not usable: use
// NewVerificationObserver.
type VerificationObserver struct {
	maxRegistries int
	mu            sync.Mutex
	registries    map[string]struct{}
}

var _ verify.Observer = (*VerificationObserver)(nil)

// NewVerificationObserver returns an observer that gives the first
// MaxRegistryLabels registries a label value of their own.
func NewVerificationObserver() *VerificationObserver {
	return &VerificationObserver{maxRegistries: MaxRegistryLabels, registries: map[string]struct{}{}}
}

// registryLabel is registry while fewer than maxRegistries values are in
// use or it already has one, Other otherwise.
func (o *VerificationObserver) registryLabel(registry string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.registries[registry]; ok {
		return registry
	}
	if len(o.registries) >= o.maxRegistries {
		return Other
	}
	o.registries[registry] = struct{}{}
	return registry
}

// RegistryRequest counts one request to registry that ended with code.
func (o *VerificationObserver) RegistryRequest(registry string, code int) {
	RegistryRequests.WithLabelValues(o.registryLabel(registry), codeLabel(code)).Inc()
}

// CacheLookup counts one verification answered from the cache or not.
func (o *VerificationObserver) CacheLookup(hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	VerificationCacheLookups.WithLabelValues(result).Inc()
}

// Verified counts one verification that reached the registry and records
// how long it took.
func (o *VerificationObserver) Verified(outcome string, took time.Duration) {
	kind := VerificationError
	switch {
	case outcome == VerificationPass:
		kind = VerificationPass
	case verify.Reason(outcome).Verdict():
		kind = VerificationVerdict
	}
	Verifications.WithLabelValues(Known(outcome, verificationOutcomes), kind).Inc()
	VerificationDuration.WithLabelValues(kind).Observe(took.Seconds())
}
