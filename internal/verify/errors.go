package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// What a verification checks, as policy-controller's messages name it.
const (
	checkSignature   = "signature"
	checkAttestation = "attestation"
)

// Reason classifies why a verification did not pass. The strings are stable:
// they label metrics and appear in reports.
type Reason string

const (
	// Verdicts: the registry answered and the signatures do not satisfy the authority.
	ReasonNoSignatures      Reason = "NoSignatures"
	ReasonSignatureMismatch Reason = "SignatureMismatch"
	ReasonIdentityMismatch  Reason = "IdentityMismatch"
	// ReasonNoAttestations: no attestation, or none of a predicate type asked for.
	ReasonNoAttestations Reason = "NoAttestations"

	// Errors: no verdict could be reached. Never cached as verdicts.
	ReasonRegistryUnreachable Reason = "RegistryUnreachable"
	ReasonUnauthorized        Reason = "Unauthorized"
	ReasonRateLimited         Reason = "RateLimited"
	ReasonTimeout             Reason = "Timeout"
	ReasonNotFound            Reason = "NotFound"
	ReasonRegistryError       Reason = "RegistryError"
	ReasonMissingTrustRoot    Reason = "MissingTrustRoot"
	ReasonInvalidReference    Reason = "InvalidReference"
)

// Verdict reports whether the reason is a verified failure (cached for the
// failure TTL) rather than an error (retried with back-off).
func (r Reason) Verdict() bool {
	switch r {
	case ReasonNoSignatures, ReasonSignatureMismatch, ReasonIdentityMismatch, ReasonNoAttestations:
		return true
	}
	return false
}

// Error is what Verify returns when an image does not pass an authority. Its
// message follows policy-controller's ("signature key validation failed for
// authority X for IMAGE: no matching signatures: ...").
type Error struct {
	Reason Reason
	// Check is what was verified: "signature" (when empty) or "attestation".
	Check     string
	Authority string // the authority's name
	Kind      string // "key" or "keyless"
	Image     string // the image as judged: repository@digest when resolved
	Err       error
	// RetryAt is when verifying again may give another answer: the expiry
	// of a cached failure, or the end of an error's back-off. Zero when
	// unknown (the image could not be resolved).
	RetryAt time.Time
}

func (e *Error) Error() string {
	if e.Authority == "" {
		return fmt.Sprintf("%s: %v", e.Image, e.Err)
	}
	check := e.Check
	if check == "" {
		check = checkSignature
	}
	return fmt.Sprintf("%s %s validation failed for authority %s for %s: %v", check, e.Kind, e.Authority, e.Image, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason of a verification error, or "" for nil and for
// errors that did not come from this package.
func ReasonOf(err error) Reason {
	var ve *Error
	if errors.As(err, &ve) {
		return ve.Reason
	}
	var ce *classified
	if errors.As(err, &ce) {
		return ce.reason
	}
	return ""
}

// classified is an error with a reason, before the authority and image are known.
type classified struct {
	reason Reason
	err    error
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() error { return c.err }

func failure(reason Reason, format string, args ...any) error {
	return &classified{reason: reason, err: fmt.Errorf(format, args...)}
}

// registryFailure classifies an error from go-containerregistry and says
// which registry gave it.
func registryFailure(registry, what string, err error) error {
	reason := ReasonRegistryError
	var terr *transport.Error
	var nerr net.Error
	switch {
	case errors.As(err, &terr):
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			reason = ReasonUnauthorized
		case terr.StatusCode == http.StatusTooManyRequests:
			reason = ReasonRateLimited
		case terr.StatusCode == http.StatusNotFound:
			reason = ReasonNotFound
		case terr.StatusCode == http.StatusRequestTimeout || terr.StatusCode == http.StatusGatewayTimeout:
			reason = ReasonTimeout
		}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		reason = ReasonTimeout
	case errors.As(err, &nerr), isDialError(err):
		reason = ReasonRegistryUnreachable
	}
	return &classified{reason: reason, err: fmt.Errorf("%s: registry %s: %s: %w", what, registry, describe(reason), err)}
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

func describe(r Reason) string {
	switch r {
	case ReasonUnauthorized:
		return "access denied"
	case ReasonRateLimited:
		return "rate limited (429)"
	case ReasonNotFound:
		return "not found"
	case ReasonTimeout:
		return "timed out"
	case ReasonRegistryUnreachable:
		return "unreachable"
	}
	return "failed"
}
