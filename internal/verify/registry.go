package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

const (
	// Bounds on what a registry (tenant-controlled) may make us read.
	maxSignatures = 64      // layers of a .sig manifest, or referrers considered
	maxBlobBytes  = 1 << 20 // one signature payload or bundle
	// One attestation (a DSSE envelope or a bundle): SBOMs of large images
	// run to a few MiB, and the envelope base64-encodes the statement (4/3).
	maxAttestationBytes = 8 << 20
	// All the attestations of one image read in one verification, which is
	// also about the most one attestation cache entry holds.
	maxAttestationTotal = 32 << 20
	bundleMediaType     = "application/vnd.dev.sigstore.bundle.v0.3+json"
	emptyConfigType     = "application/vnd.oci.empty.v1+json"

	// cosign's layer annotations on a legacy .sig manifest.
	annotationSignature   = "dev.cosignproject.cosign/signature"
	annotationCertificate = "dev.sigstore.cosign/certificate"
	annotationChain       = "dev.sigstore.cosign/chain"
	annotationBundle      = "dev.sigstore.cosign/bundle"
	annotationTimestamp   = "dev.sigstore.cosign/rfc3161timestamp"
)

// remoteOptions are the go-containerregistry options of one request: the
// caller's keychain, our rate-limited transport, and no retries of its own
// (the cache retries errors with back-off).
func (v *Verifier) remoteOptions(ctx context.Context, kc authn.Keychain) []remote.Option {
	auth := remote.WithAuth(authn.Anonymous)
	if kc != nil {
		auth = remote.WithAuthFromKeychain(kc)
	}
	return []remote.Option{
		remote.WithContext(ctx),
		auth,
		remote.WithTransport(v.transport),
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
	}
}

// Resolve turns an image reference into a digest: a digest reference as it
// is, a tag by HEAD, falling back to GET for registries that answer HEAD
// without a digest or not at all.
func (v *Verifier) Resolve(ctx context.Context, image string, kc authn.Keychain, lane Lane) (name.Digest, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return name.Digest{}, &Error{Reason: ReasonInvalidReference, Image: image, Err: fmt.Errorf("could not parse reference: %w", err)}
	}
	if d, ok := ref.(name.Digest); ok {
		return d, nil
	}
	ctx = WithLane(ctx, lane)
	opts := v.remoteOptions(ctx, kc)
	desc, err := remote.Head(ref, opts...)
	if err != nil && headFallsBack(err) {
		var got *remote.Descriptor
		if got, err = remote.Get(ref, opts...); err == nil {
			desc = &got.Descriptor
		}
	}
	if err != nil {
		err = registryFailure(ref.Context().RegistryStr(), "resolve tag", err)
		return name.Digest{}, &Error{Reason: ReasonOf(err), Image: image, Err: err}
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}

// headFallsBack: a GET may succeed where a HEAD failed, unless the registry
// refused us, throttled us or could not be reached.
func headFallsBack(err error) bool {
	switch statusOf(err) {
	case 0, http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		return false
	}
	return true
}

// statusOf is the HTTP status a registry answered with, or 0.
func statusOf(err error) int {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode
	}
	return 0
}

// signatureRepository is where an authority's signatures for d live.
func (a *Authority) signatureRepository(d name.Digest) name.Repository {
	if a.source != nil {
		return *a.source
	}
	return d.Context()
}

// legacySignature is one layer of a cosign .sig manifest, or (payload a
// DSSE envelope) of a .att manifest.
type legacySignature struct {
	id          string // the layer digest
	payload     []byte
	signature   string // base64; empty in a .att layer, whose envelope holds it
	certificate string // PEM, keyless only
	chain       string // PEM
	rekorBundle string // JSON
	timestamp   string // JSON
	err         error  // the layer could not be read within the bounds
}

// readLimits bound what one verification reads: each blob, and all of them.
type readLimits struct{ each, total int64 }

var (
	signatureLimits   = readLimits{each: maxBlobBytes, total: maxSignatures * maxBlobBytes}
	attestationLimits = readLimits{each: maxAttestationBytes, total: maxAttestationTotal}
)

// legacySignatures reads the `<prefix>sha256-<hex>.sig` manifest of d.
func (v *Verifier) legacySignatures(ctx context.Context, a *Authority, d name.Digest, kc authn.Keychain) ([]legacySignature, error) {
	sigs, err := v.legacyLayers(ctx, a, d, kc, ".sig", signatureLimits, func(l v1.Descriptor) bool {
		return l.Annotations[annotationSignature] != ""
	})
	if err == nil && len(sigs) == 0 {
		err = failure(ReasonNoSignatures, "no signatures found")
	}
	return sigs, err
}

// legacyLayers reads the layers of d's `<prefix>sha256-<hex><suffix>`
// manifest that want accepts; none is not an error.
func (v *Verifier) legacyLayers(ctx context.Context, a *Authority, d name.Digest, kc authn.Keychain, suffix string, lim readLimits, want func(v1.Descriptor) bool) ([]legacySignature, error) {
	repo := a.signatureRepository(d)
	tag := repo.Tag(a.tagPrefix + strings.Replace(d.DigestStr(), ":", "-", 1) + suffix)
	opts := v.remoteOptions(ctx, kc)
	img, err := remote.Image(tag, opts...)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return nil, nil
		}
		return nil, registryFailure(repo.RegistryStr(), "fetch "+tag.String(), err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, registryFailure(repo.RegistryStr(), "read manifest "+tag.String(), err)
	}
	if len(m.Layers) > maxSignatures {
		return nil, failure(ReasonSignatureMismatch, "manifest %s has %d layers, more than the %d read", tag, len(m.Layers), maxSignatures)
	}
	var sigs []legacySignature
	read := int64(0)
	for _, l := range m.Layers {
		if !want(l) {
			continue
		}
		ann := l.Annotations
		payload, err := readBlob(repo, l, lim, &read, func() (io.ReadCloser, error) {
			layer, err := img.LayerByDigest(l.Digest)
			if err != nil {
				return nil, err
			}
			return layer.Compressed()
		})
		if err != nil && !ReasonOf(err).Verdict() {
			return nil, err
		}
		sigs = append(sigs, legacySignature{
			id: l.Digest.String(), payload: payload, signature: ann[annotationSignature],
			certificate: ann[annotationCertificate], chain: ann[annotationChain],
			rekorBundle: ann[annotationBundle], timestamp: ann[annotationTimestamp], err: err,
		})
	}
	return sigs, nil
}

// bundleReferrer is one sigstore bundle attached to d as a referrer.
type bundleReferrer struct {
	id   string // the referrer manifest's digest
	json []byte
	err  error // the bundle could not be read within the bounds
}

// bundles lists the referrers of d (the referrers API, or the tag schema
// where the registry lacks it) and reads the sigstore bundles among them;
// none is not an error.
func (v *Verifier) bundles(ctx context.Context, a *Authority, d name.Digest, kc authn.Keychain, lim readLimits) ([]bundleReferrer, error) {
	repo := a.signatureRepository(d)
	opts := v.remoteOptions(ctx, kc)
	idx, err := remote.Referrers(repo.Digest(d.DigestStr()), opts...)
	if err != nil {
		return nil, registryFailure(repo.RegistryStr(), "list referrers of "+d.DigestStr(), err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, registryFailure(repo.RegistryStr(), "list referrers of "+d.DigestStr(), err)
	}
	var out []bundleReferrer
	read := int64(0)
	for _, desc := range im.Manifests {
		// Registries report the manifest's artifactType, or (like
		// go-containerregistry's) the config media type: look inside those.
		switch desc.ArtifactType {
		case bundleMediaType, emptyConfigType, "":
		default:
			continue
		}
		if len(out) == maxSignatures {
			break
		}
		b, err := v.readBundle(repo.Digest(desc.Digest.String()), opts, lim, &read)
		if err != nil && !ReasonOf(err).Verdict() {
			return nil, err
		}
		if b != nil || err != nil {
			out = append(out, bundleReferrer{id: desc.Digest.String(), json: b, err: err})
		}
	}
	return out, nil
}

// readBundle returns the bundle a referrer manifest carries, or nil when it
// carries something else.
func (v *Verifier) readBundle(ref name.Digest, opts []remote.Option, lim readLimits, read *int64) ([]byte, error) {
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return nil, registryFailure(ref.RegistryStr(), "fetch referrer "+ref.DigestStr(), err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, registryFailure(ref.RegistryStr(), "fetch referrer "+ref.DigestStr(), err)
	}
	var m struct {
		ArtifactType string          `json:"artifactType"`
		Layers       []v1.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) != 1 {
		return nil, nil
	}
	l := m.Layers[0]
	if m.ArtifactType != bundleMediaType && !strings.HasPrefix(string(l.MediaType), "application/vnd.dev.sigstore.bundle") {
		return nil, nil
	}
	return readBlob(ref.Context(), l, lim, read, func() (io.ReadCloser, error) {
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return nil, err
		}
		return layer.Compressed()
	})
}

// readBlob reads one blob of at most lim.each bytes, counting it in *read,
// which may not pass lim.total; go-containerregistry checks its digest as it
// reads. A blob past a bound is a verdict about that blob.
func readBlob(repo name.Repository, d v1.Descriptor, lim readLimits, read *int64, open func() (io.ReadCloser, error)) ([]byte, error) {
	if d.Size > lim.each {
		return nil, failure(ReasonSignatureMismatch, "blob %s is %d bytes, more than the %d read", d.Digest, d.Size, lim.each)
	}
	if *read+max(d.Size, 0) > lim.total {
		return nil, failure(ReasonSignatureMismatch, "blob %s (%d bytes) would pass the %d bytes read for one image", d.Digest, d.Size, lim.total)
	}
	rc, err := open()
	if err != nil {
		return nil, registryFailure(repo.RegistryStr(), "fetch blob "+d.Digest.String(), err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, lim.each+1))
	if err != nil {
		return nil, registryFailure(repo.RegistryStr(), "read blob "+d.Digest.String(), err)
	}
	*read += int64(len(b))
	if int64(len(b)) > lim.each {
		return nil, failure(ReasonSignatureMismatch, "blob %s is more than %d bytes", d.Digest, lim.each)
	}
	return b, nil
}
