package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
)

const (
	// inTotoPayloadType is the DSSE payload type of an in-toto statement.
	inTotoPayloadType = "application/vnd.in-toto+json"
	// dsseMediaType is the media type of a .att layer: a DSSE envelope.
	dsseMediaType = "application/vnd.dsse.envelope.v1+json"
)

// predicateTypeURIs are cosign's short predicate names (`cosign attest
// --type`), which policy-controller accepts in `attestations[].predicateType`.
var predicateTypeURIs = map[string]string{
	"custom":           "https://cosign.sigstore.dev/attestation/v1",
	"slsaprovenance":   "https://slsa.dev/provenance/v0.2",
	"slsaprovenance02": "https://slsa.dev/provenance/v0.2",
	"slsaprovenance1":  "https://slsa.dev/provenance/v1",
	"spdx":             "https://spdx.dev/Document",
	"spdxjson":         "https://spdx.dev/Document",
	"cyclonedx":        "https://cyclonedx.org/bom",
	"link":             "https://in-toto.io/Link/v1",
	"vuln":             "https://cosign.sigstore.dev/attestation/vuln/v1",
	"openvex":          "https://openvex.dev/ns",
}

// PredicateTypeURI is the statement predicate type a policy's
// predicateType names: the URI of a short name, or the value as it is.
func PredicateTypeURI(predicateType string) string {
	if uri, ok := predicateTypeURIs[predicateType]; ok {
		return uri
	}
	return predicateType
}

// Attestation is one verified in-toto statement about the image.
type Attestation struct {
	ID            string          // digest of the .att layer or the referrer manifest
	Format        SignatureFormat // where it was found
	PredicateType string          // as the statement states it
	// Statement is the statement's JSON, the input of an attestation
	// policy. It is shared with the cache: read it, never modify it.
	Statement []byte
	Subject   string // keyless: the certificate's subject alternative name
	Issuer    string // keyless: the OIDC issuer
}

// AttestationEvidence is a pass: the image's verified attestations.
type AttestationEvidence struct {
	Authority string
	Image     name.Digest
	// Attestations are every statement that verified, of any type.
	Attestations []Attestation
	// ByType holds, for each predicate type asked for (as the policy names
	// it), the verified statements of that type.
	ByType     map[string][]Attestation
	VerifiedAt time.Time
	RefreshAt  time.Time // as Evidence.RefreshAt
	ExpiresAt  time.Time // the pass stands until then
	Cached     bool      // answered from the cache
}

func (e *AttestationEvidence) stamped(now, refresh, expires time.Time) *AttestationEvidence {
	c := *e
	c.VerifiedAt, c.RefreshAt, c.ExpiresAt = now, refresh, expires
	return &c
}

func (e *AttestationEvidence) asCached(refresh time.Time) *AttestationEvidence {
	c := *e
	c.Cached, c.RefreshAt = true, refresh
	return &c
}

// size is dominated by the statements' bodies.
func (e *AttestationEvidence) size() int64 {
	n := int64(256)
	for _, a := range e.Attestations {
		n += 256 + int64(len(a.Statement))
	}
	return n
}

// VerifyAttestations verifies the image's attestations against the
// authority, as policy-controller does for an authority with
// `attestations`: legacy `.att` tags or bundle referrers (signatureFormat),
// signed with the key or a keyless certificate, about the image's digest.
// Every predicate type asked for (a cosign short name or a URI) needs at
// least one verified statement; statements of other types are skipped. The
// verified statements of an image are cached by digest and authority, not
// by the types asked for. Errors are *Error, as for Verify.
func (v *Verifier) VerifyAttestations(ctx context.Context, a *Authority, req Request, predicateTypes ...string) (*AttestationEvidence, error) {
	ev, err := verifyCached(ctx, v, v.attestations, checkAttestation, a, req, v.verifyAttestations)
	if err != nil {
		return nil, err
	}
	out := *ev // the cached evidence is shared: fill a copy
	out.ByType = make(map[string][]Attestation, len(predicateTypes))
	for _, pt := range predicateTypes {
		uri := PredicateTypeURI(pt)
		for _, att := range ev.Attestations {
			if att.PredicateType == uri {
				out.ByType[pt] = append(out.ByType[pt], att)
			}
		}
		if len(out.ByType[pt]) == 0 {
			return nil, v.wrap(checkAttestation, a, ev.Image, ev.ExpiresAt, failure(ReasonNoAttestations,
				"no matching attestations with type %s, checked the following predicateTypes: %q", pt, strings.Join(seenTypes(ev.Attestations), ", ")))
		}
	}
	return &out, nil
}

func seenTypes(atts []Attestation) []string {
	var types []string
	for _, a := range atts {
		if !slices.Contains(types, a.PredicateType) {
			types = append(types, a.PredicateType)
		}
	}
	return types
}

// verifyAttestations does the registry work and the cryptography.
func (v *Verifier) verifyAttestations(ctx context.Context, a *Authority, d name.Digest, req Request) (*AttestationEvidence, error) {
	if err := a.checkTrustRoot(); err != nil {
		return nil, err
	}
	kc := a.keychain(req)
	var atts []Attestation
	var err error
	if a.format == FormatBundle {
		var refs []bundleReferrer
		if refs, err = v.bundles(ctx, a, d, kc, attestationLimits); err == nil {
			atts, err = a.verifyAttestationBundles(refs, d)
		}
	} else {
		var layers []legacySignature
		if layers, err = v.legacyLayers(ctx, a, d, kc, ".att", attestationLimits, func(l v1.Descriptor) bool {
			return l.MediaType == dsseMediaType
		}); err == nil {
			atts, err = a.verifyLegacyAttestations(layers, d)
		}
	}
	if err != nil {
		return nil, err
	}
	return &AttestationEvidence{Authority: a.name, Image: d, Attestations: atts}, nil
}

// verifyAttestationBundles keeps the bundles that verify and carry an
// in-toto statement other than a cosign signature.
func (a *Authority) verifyAttestationBundles(refs []bundleReferrer, d name.Digest) ([]Attestation, error) {
	artifact, err := imageArtifact(d)
	if err != nil {
		return nil, err
	}
	return verifiedAttestations(refs, func(r bundleReferrer) (Attestation, error) {
		sig, res, err := a.verifyBundle(r, artifact)
		if err != nil {
			return Attestation{}, err
		}
		if res.Statement == nil || res.Statement.PredicateType == cosignSignPredicate {
			return Attestation{}, errNotAttestation
		}
		var b struct {
			DSSEEnvelope struct {
				Payload []byte `json:"payload"`
			} `json:"dsseEnvelope"`
		}
		if err := json.Unmarshal(r.json, &b); err != nil {
			return Attestation{}, fmt.Errorf("referrer %s: %w", r.id, err)
		}
		return Attestation{ID: r.id, Format: FormatBundle, PredicateType: res.Statement.PredicateType,
			Statement: b.DSSEEnvelope.Payload, Subject: sig.Subject, Issuer: sig.Issuer}, nil
	})
}

// errNotAttestation marks a verified bundle that is a signature: skipped.
var errNotAttestation = errors.New("not an attestation")

// verifiedAttestations checks each item and keeps those that pass; with
// none, the error says why each failed ("no matching attestations: ...").
// None at all is "no attestations found".
func verifiedAttestations[T any](items []T, check func(T) (Attestation, error)) ([]Attestation, error) {
	var passed []Attestation
	var errs failures
	for _, it := range items {
		att, err := check(it)
		switch {
		case errors.Is(err, errNotAttestation):
		case err != nil:
			errs.add(err)
		default:
			passed = append(passed, att)
		}
	}
	switch {
	case len(passed) > 0:
		return passed, nil
	case len(errs.msgs) == 0:
		return nil, failure(ReasonNoAttestations, "no attestations found")
	}
	return nil, errs.errAbout("attestations")
}

// dsseEnvelope is a .att layer.
type dsseEnvelope struct {
	PayloadType string `json:"payloadType"`
	Payload     []byte `json:"payload"` // base64 in JSON
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   []byte `json:"sig"` // base64 in JSON
	} `json:"signatures"`
}

// pae is DSSE's pre-authentication encoding, what the signature covers.
func pae(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "DSSEv1 %d %s %d ", len(payloadType), payloadType, len(payload))
	b.Write(payload)
	return b.Bytes()
}

// verifyLegacyAttestations checks cosign .att layers.
func (a *Authority) verifyLegacyAttestations(layers []legacySignature, d name.Digest) ([]Attestation, error) {
	return verifiedAttestations(layers, func(l legacySignature) (Attestation, error) {
		if l.err != nil {
			return Attestation{}, l.err
		}
		var env dsseEnvelope
		if err := json.Unmarshal(l.payload, &env); err != nil {
			return Attestation{}, fmt.Errorf("attestation %s is not a DSSE envelope: %w", l.id, err)
		}
		if env.PayloadType != inTotoPayloadType {
			return Attestation{}, fmt.Errorf("attestation %s has payload type %q, not %s", l.id, env.PayloadType, inTotoPayloadType)
		}
		var sig Signature
		var err error
		if a.kind == "key" && a.evidence == evidenceNone {
			err = a.verifyEnvelopeKey(&env)
		} else {
			sig, err = a.verifyLegacyAttestationEntity(l, &env, d)
		}
		if err != nil {
			return Attestation{}, err
		}
		pt, err := checkStatementSubject(env.Payload, d)
		if err != nil {
			return Attestation{}, err
		}
		return Attestation{ID: l.id, Format: FormatLegacy, PredicateType: pt, Statement: env.Payload,
			Subject: sig.Subject, Issuer: sig.Issuer}, nil
	})
}

// verifyEnvelopeKey: any signature of the envelope by any of the keys.
func (a *Authority) verifyEnvelopeKey(env *dsseEnvelope) error {
	signed := pae(env.PayloadType, env.Payload)
	for _, s := range env.Signatures {
		for _, k := range a.keys {
			if k.VerifySignature(bytes.NewReader(s.Sig), bytes.NewReader(signed)) == nil {
				return nil
			}
		}
	}
	return errors.New("invalid signature when validating ASN.1 encoded signature")
}

// checkStatementSubject checks that an in-toto statement is about the
// image's digest and returns its predicate type.
func checkStatementSubject(statement []byte, d name.Digest) (string, error) {
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(statement, &st); err != nil {
		return "", fmt.Errorf("attestation payload is not an in-toto statement: %w", err)
	}
	want := strings.TrimPrefix(d.DigestStr(), "sha256:")
	for _, s := range st.Subject {
		if s.Digest["sha256"] == want {
			return st.PredicateType, nil
		}
	}
	return "", fmt.Errorf("attestation statement is not about %s", d.DigestStr())
}

// verifyLegacyAttestationEntity hands a .att layer to sigstore-go: the
// envelope, the certificate and chain (keyless) or the authority's key, the
// Rekor bundle and timestamp annotations.
func (a *Authority) verifyLegacyAttestationEntity(l legacySignature, env *dsseEnvelope, d name.Digest) (Signature, error) {
	de := &dsse.Envelope{PayloadType: env.PayloadType, Payload: base64.StdEncoding.EncodeToString(env.Payload)}
	for _, s := range env.Signatures {
		de.Signatures = append(de.Signatures, dsse.Signature{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)})
	}
	var content sgverify.SignatureContent = &bundle.Envelope{Envelope: de}
	if a.evidence == evidenceTimestamp {
		content = timestampedEnvelope{Envelope: &bundle.Envelope{Envelope: de}, layer: l.payload}
	}
	e, err := a.newLegacyEntityWith(l, "attestation", content)
	if err != nil {
		return Signature{}, err
	}
	artifact, err := imageArtifact(d)
	if err != nil {
		return Signature{}, err
	}
	sig, _, err := a.verifyEntity(e, artifact)
	return sig, err
}

// timestampedEnvelope is the envelope of a .att layer whose RFC 3161
// timestamp cosign made over the layer's whole payload (the envelope's
// JSON), not over the DSSE signature as in a bundle: Signature gives what
// the timestamp covers. Only timestamps read it: no log entry is checked
// beside a timestamp.
type timestampedEnvelope struct {
	*bundle.Envelope
	layer []byte
}

func (e timestampedEnvelope) Signature() []byte { return e.layer }
