package verify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/singleflight"
)

// Options configure a Verifier; zero values take the defaults in brackets.
type Options struct {
	PassTTL         time.Duration // how long a pass stands [1h]
	FailTTL         time.Duration // how long a verified failure stands [10m]
	ErrorBackoff    time.Duration // first wait after an error [1s], doubling
	MaxErrorBackoff time.Duration // longest wait after errors [1m]
	CacheSize       int           // entries kept, least recently used evicted [10000]
	// AttestationCacheBytes bounds the verified attestation statements
	// kept (SBOMs can be megabytes each), least recently used evicted [256 MiB].
	AttestationCacheBytes int64
	Timeout               time.Duration // one verification, all its registry requests [30s]

	GlobalQPS     float64 // registry requests per second, all registries [50]
	GlobalBurst   int     // [100]
	RegistryQPS   float64 // registry requests per second to one registry [10]
	RegistryBurst int     // [20]
	// AdmissionReserve is the fraction of each bucket's burst that the
	// background lane leaves to admission [0.5].
	AdmissionReserve float64

	Transport http.RoundTripper // [go-containerregistry's DefaultTransport]
	Observer  Observer          // [none]
	Now       func() time.Time  // [time.Now]; tests inject a clock
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PassTTL, time.Hour)
	def(&o.FailTTL, 10*time.Minute)
	def(&o.ErrorBackoff, time.Second)
	def(&o.MaxErrorBackoff, time.Minute)
	def(&o.Timeout, 30*time.Second)
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	if o.AttestationCacheBytes <= 0 {
		o.AttestationCacheBytes = 256 << 20
	}
	if o.GlobalQPS <= 0 {
		o.GlobalQPS, o.GlobalBurst = 50, max(o.GlobalBurst, 100)
	}
	if o.GlobalBurst <= 0 {
		o.GlobalBurst = 100
	}
	if o.RegistryQPS <= 0 {
		o.RegistryQPS, o.RegistryBurst = 10, max(o.RegistryBurst, 20)
	}
	if o.RegistryBurst <= 0 {
		o.RegistryBurst = 20
	}
	if o.AdmissionReserve <= 0 || o.AdmissionReserve >= 1 {
		o.AdmissionReserve = 0.5
	}
	if o.Transport == nil {
		o.Transport = remote.DefaultTransport
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Verifier verifies images against authorities, with a cache and rate
// limits; one instance serves a whole process. Safe for concurrent use.
type Verifier struct {
	opts      Options
	transport http.RoundTripper
	cache     *cache[*Evidence]
	// attestations holds verified statements, bounded in bytes too.
	attestations *cache[*AttestationEvidence]
	configs      *cache[*ConfigFiles]
	flights      singleflight.Group
}

// New returns a Verifier.
func New(o Options) *Verifier {
	o = o.withDefaults()
	return &Verifier{
		opts: o,
		transport: &limitedTransport{
			base:     o.Transport,
			limiter:  newLimiter(o.GlobalQPS, o.GlobalBurst, o.RegistryQPS, o.RegistryBurst, o.AdmissionReserve),
			now:      o.Now,
			observer: o.Observer,
		},
		cache:        newCache[*Evidence](o.CacheSize, 0, o.PassTTL, o.FailTTL, o.ErrorBackoff, o.MaxErrorBackoff),
		attestations: newCache[*AttestationEvidence](o.CacheSize, o.AttestationCacheBytes, o.PassTTL, o.FailTTL, o.ErrorBackoff, o.MaxErrorBackoff),
		configs:      newCache[*ConfigFiles](o.CacheSize, maxConfigCacheBytes, o.PassTTL, o.FailTTL, o.ErrorBackoff, o.MaxErrorBackoff),
	}
}

// Request is one image to verify against one authority.
type Request struct {
	// Image is a reference; a tag is resolved to its digest first.
	Image string
	// Keychain gives credentials for the image's registry (for example
	// authn/kubernetes from the pod's namespace, service account and
	// imagePullSecrets); nil means anonymous.
	Keychain authn.Keychain
	// SignatureKeychain gives credentials for the signature repository
	// (the authority's signaturePullSecrets); nil means Keychain.
	SignatureKeychain authn.Keychain
	// Lane is admission (goes first) or background.
	Lane Lane
	// Refresh verifies a cached pass again once it is inside its refresh
	// window (the last 1/RefreshFraction of its life), so that the verify
	// path finds a deleted signature or a rotated key before the pass
	// expires, and the webhook keeps finding passes in the cache. A refresh
	// that meets an error answers with the standing pass until it expires;
	// errors back off as always.
	Refresh bool
}

// Evidence is a pass: the signatures that satisfied the authority.
type Evidence struct {
	Authority  string
	Image      name.Digest
	Signatures []Signature
	VerifiedAt time.Time
	// RefreshAt is when the verify path (Request.Refresh) verifies the pass
	// again, before it expires; after an error, when it may try again.
	RefreshAt time.Time
	ExpiresAt time.Time // the pass stands until then
	Cached    bool      // answered from the cache
}

// Verify checks that the image carries a signature satisfying the
// authority. It returns evidence, or an *Error whose Reason says whether
// it is a verified failure (Reason.Verdict) or an error.
func (v *Verifier) Verify(ctx context.Context, a *Authority, req Request) (*Evidence, error) {
	return verifyCached(ctx, v, v.cache, checkSignature, a, req, v.verify)
}

// Evidence's cache behaviour.
func (e *Evidence) stamped(now, refresh, expires time.Time) *Evidence {
	c := *e
	c.VerifiedAt, c.RefreshAt, c.ExpiresAt = now, refresh, expires
	return &c
}

func (e *Evidence) asCached(refresh time.Time) *Evidence {
	c := *e
	c.Cached, c.RefreshAt = true, refresh
	return &c
}

// size: a pass holds a few short strings per signature.
func (e *Evidence) size() int64 { return int64(256 + 128*len(e.Signatures)) }

// verifyCached is the flow every check shares: resolve the image to its
// digest, answer from c when it can, otherwise run work once for all the
// callers asking the same (singleflight) under its own deadline, and cache
// the outcome. check names what was checked in errors.
func verifyCached[T verdict[T]](ctx context.Context, v *Verifier, c *cache[T], check string, a *Authority, req Request,
	work func(context.Context, *Authority, name.Digest, Request) (T, error)) (T, error) {
	var none T
	d, err := v.Resolve(ctx, req.Image, req.Keychain, req.Lane)
	if err != nil {
		var ve *Error
		if errors.As(err, &ve) {
			ve.Authority, ve.Kind, ve.Check = a.name, a.kind, check
		}
		return none, err
	}
	key := d.String() + "|" + a.fingerprint
	failed := func(err error) error {
		if err == nil {
			return nil
		}
		return v.wrap(check, a, d, c.until(key, v.opts.Now()), err)
	}
	if ev, err, ok := c.lookup(key, v.opts.Now(), req.Refresh); ok {
		v.opts.Observer.CacheLookup(true)
		return ev, failed(err)
	}
	flight := check + "|" + key
	if req.Refresh {
		flight += "|refresh"
	}
	ch := v.flights.DoChan(flight, func() (any, error) {
		// A flight for key that ended between the lookup above and DoChan
		// has stored its outcome: answer from it, do not verify again.
		if ev, err, ok := c.lookup(key, v.opts.Now(), req.Refresh); ok {
			return ev, err
		}
		// The shared work outlives any one caller's deadline, so a caller
		// that gives up does not fail the others; its result is cached.
		fctx, cancel := context.WithTimeout(WithLane(context.WithoutCancel(ctx), req.Lane), v.opts.Timeout)
		defer cancel()
		start := time.Now()
		ev, err := work(fctx, a, d, req)
		outcome := "pass"
		if err != nil {
			outcome = string(ReasonOf(err))
		}
		v.opts.Observer.Verified(outcome, time.Since(start))
		return c.store(key, v.opts.Now(), ev, err), err
	})
	v.opts.Observer.CacheLookup(false) // after joining the flight: tests wait on it
	select {
	case r := <-ch:
		ev, _ := r.Val.(T)
		if r.Err == nil {
			return ev, nil
		}
		if req.Refresh && !ReasonOf(r.Err).Verdict() {
			// A refresh that met an error leaves the pass standing until
			// it expires; it is tried again when the back-off ends.
			if ev, _, ok := c.lookup(key, v.opts.Now(), true); ok && ev != none {
				return ev, nil
			}
		}
		return none, failed(r.Err)
	case <-ctx.Done():
		return none, failed(&classified{reason: ReasonTimeout, err: fmt.Errorf("verification did not finish in time: %w", ctx.Err())})
	}
}

// wrap names the authority and the image in an error, and says when the
// cache may answer otherwise (retryAt). Errors held by the cache are
// copied, never changed.
func (v *Verifier) wrap(check string, a *Authority, d name.Digest, retryAt time.Time, err error) error {
	if err == nil {
		return nil
	}
	var out Error
	if ve := (*Error)(nil); errors.As(err, &ve) {
		out = *ve
	} else {
		out = Error{Reason: ReasonOf(err), Check: check, Authority: a.name, Kind: a.kind, Image: d.String(), Err: err}
	}
	out.RetryAt = retryAt
	return &out
}

// verify does the registry work and the cryptography of one verification.
func (v *Verifier) verify(ctx context.Context, a *Authority, d name.Digest, req Request) (*Evidence, error) {
	if err := a.checkTrustRoot(); err != nil {
		return nil, err
	}
	kc := a.keychain(req)
	var sigs []Signature
	var err error
	if a.format == FormatBundle {
		var refs []bundleReferrer
		if refs, err = v.bundles(ctx, a, d, kc, signatureLimits); err == nil && len(refs) == 0 {
			err = failure(ReasonNoSignatures, "no signatures found")
		}
		if err == nil {
			sigs, err = a.verifyBundles(refs, d)
		}
	} else {
		var layers []legacySignature
		if layers, err = v.legacySignatures(ctx, a, d, kc); err == nil {
			sigs, err = a.verifyLegacy(layers, d)
		}
	}
	if err != nil {
		return nil, err
	}
	return &Evidence{Authority: a.name, Image: d, Signatures: sigs}, nil
}

// keychain is the credentials for the authority's signature repository.
func (a *Authority) keychain(req Request) authn.Keychain {
	if a.source != nil && req.SignatureKeychain != nil {
		return req.SignatureKeychain
	}
	return req.Keychain
}

// checkTrustRoot: an authority missing a trust root (keyless, ctlog or
// rfc3161timestamp) cannot verify anything.
func (a *Authority) checkTrustRoot() error {
	if a.missing != "" {
		return failure(ReasonMissingTrustRoot, "no trust root is available for %s", a.missing)
	}
	return nil
}
