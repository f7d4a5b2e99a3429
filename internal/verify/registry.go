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
	maxSignatures   = 64      // layers of a .sig manifest, or referrers considered
	maxBlobBytes    = 1 << 20 // one signature payload or bundle
	bundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	emptyConfigType = "application/vnd.oci.empty.v1+json"

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

// legacySignature is one layer of a cosign .sig manifest.
type legacySignature struct {
	id          string // the layer digest
	payload     []byte
	signature   string // base64
	certificate string // PEM, keyless only
	chain       string // PEM
	rekorBundle string // JSON
	timestamp   string // JSON
}

// legacySignatures reads the `<prefix>sha256-<hex>.sig` manifest of d.
func (v *Verifier) legacySignatures(ctx context.Context, a *Authority, d name.Digest, kc authn.Keychain) ([]legacySignature, error) {
	repo := a.signatureRepository(d)
	tag := repo.Tag(a.tagPrefix + strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	opts := v.remoteOptions(ctx, kc)
	img, err := remote.Image(tag, opts...)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return nil, failure(ReasonNoSignatures, "no signatures found")
		}
		return nil, registryFailure(repo.RegistryStr(), "fetch signatures "+tag.String(), err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, registryFailure(repo.RegistryStr(), "read signature manifest "+tag.String(), err)
	}
	if len(m.Layers) > maxSignatures {
		return nil, failure(ReasonSignatureMismatch, "signature manifest %s has %d layers, more than the %d read", tag, len(m.Layers), maxSignatures)
	}
	var sigs []legacySignature
	for _, l := range m.Layers {
		ann := l.Annotations
		if ann[annotationSignature] == "" {
			continue
		}
		payload, err := readBlob(repo, l, func() (io.ReadCloser, error) {
			layer, err := img.LayerByDigest(l.Digest)
			if err != nil {
				return nil, err
			}
			return layer.Compressed()
		})
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, legacySignature{
			id: l.Digest.String(), payload: payload, signature: ann[annotationSignature],
			certificate: ann[annotationCertificate], chain: ann[annotationChain],
			rekorBundle: ann[annotationBundle], timestamp: ann[annotationTimestamp],
		})
	}
	if len(sigs) == 0 {
		return nil, failure(ReasonNoSignatures, "no signatures found")
	}
	return sigs, nil
}

// bundleReferrer is one sigstore bundle attached to d as a referrer.
type bundleReferrer struct {
	id   string // the referrer manifest's digest
	json []byte
}

// bundles lists the referrers of d (the referrers API, or the tag schema
// where the registry lacks it) and reads the sigstore bundles among them.
func (v *Verifier) bundles(ctx context.Context, a *Authority, d name.Digest, kc authn.Keychain) ([]bundleReferrer, error) {
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
		b, err := v.readBundle(repo.Digest(desc.Digest.String()), opts)
		if err != nil {
			return nil, err
		}
		if b != nil {
			out = append(out, bundleReferrer{id: desc.Digest.String(), json: b})
		}
	}
	if len(out) == 0 {
		return nil, failure(ReasonNoSignatures, "no signatures found")
	}
	return out, nil
}

// readBundle returns the bundle a referrer manifest carries, or nil when it
// carries something else.
func (v *Verifier) readBundle(ref name.Digest, opts []remote.Option) ([]byte, error) {
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
	return readBlob(ref.Context(), l, func() (io.ReadCloser, error) {
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return nil, err
		}
		return layer.Compressed()
	})
}

// readBlob reads one blob of at most maxBlobBytes; go-containerregistry
// checks its digest as it reads.
func readBlob(repo name.Repository, d v1.Descriptor, open func() (io.ReadCloser, error)) ([]byte, error) {
	if d.Size > maxBlobBytes {
		return nil, failure(ReasonSignatureMismatch, "blob %s is %d bytes, more than the %d read", d.Digest, d.Size, maxBlobBytes)
	}
	rc, err := open()
	if err != nil {
		return nil, registryFailure(repo.RegistryStr(), "fetch blob "+d.Digest.String(), err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxBlobBytes+1))
	if err != nil {
		return nil, registryFailure(repo.RegistryStr(), "read blob "+d.Digest.String(), err)
	}
	if len(b) > maxBlobBytes {
		return nil, failure(ReasonSignatureMismatch, "blob %s is more than %d bytes", d.Digest, maxBlobBytes)
	}
	return b, nil
}
