package verify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// cosignSignPredicate is the in-toto predicate type of cosign v3's bundle
// signatures; bundles of any other predicate type are attestations.
const cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"

// Signature is one verified signature.
type Signature struct {
	ID      string          // digest of the .sig layer or the referrer manifest
	Format  SignatureFormat // where it was found
	Subject string          // keyless: the certificate's subject alternative name
	Issuer  string          // keyless: the OIDC issuer
}

// simpleSigning is the part of cosign's signed payload that binds it to an image.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// checkPayload checks that a verified payload names the image's digest.
func checkPayload(payload []byte, d name.Digest) error {
	var ss simpleSigning
	if err := json.Unmarshal(payload, &ss); err != nil {
		return fmt.Errorf("signature payload is not a simple-signing document: %w", err)
	}
	if got := ss.Critical.Image.DockerManifestDigest; got != d.DigestStr() {
		return fmt.Errorf("signature payload is for digest %q, not %s", got, d.DigestStr())
	}
	return nil
}

// verifyLegacy checks cosign .sig layers; any one that verifies suffices.
func (a *Authority) verifyLegacy(sigs []legacySignature, d name.Digest) ([]Signature, error) {
	return anyPasses(sigs, FormatLegacy, func(s legacySignature) (string, Signature, error) {
		var sig Signature
		err := s.err
		if err != nil {
			return s.id, sig, err
		}
		if a.kind == "key" {
			err = a.verifyLegacyKey(s)
		} else {
			sig, err = a.verifyLegacyKeyless(s)
		}
		if err == nil {
			err = checkPayload(s.payload, d)
		}
		return s.id, sig, err
	})
}

// anyPasses checks each signature and keeps those that pass; with none, the
// error says why each failed.
func anyPasses[T any](items []T, format SignatureFormat, check func(T) (string, Signature, error)) ([]Signature, error) {
	var passed []Signature
	var errs failures
	for _, it := range items {
		id, sig, err := check(it)
		if err != nil {
			errs.add(err)
			continue
		}
		sig.ID, sig.Format = id, format
		passed = append(passed, sig)
	}
	if len(passed) == 0 {
		return nil, errs.err()
	}
	return passed, nil
}

// verifyLegacyKey verifies offline: a key authority needs no transparency
// log unless the policy asks for one (policy-controller's IgnoreTlog).
func (a *Authority) verifyLegacyKey(s legacySignature) error {
	raw, err := base64.StdEncoding.DecodeString(s.signature)
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	for _, k := range a.keys {
		if k.VerifySignature(bytes.NewReader(raw), bytes.NewReader(s.payload)) == nil {
			return nil
		}
	}
	return errors.New("invalid signature when validating ASN.1 encoded signature")
}

// verifyLegacyKeyless hands a .sig layer to sigstore-go as a signed entity:
// the certificate, the signature over the payload, the Rekor entry from the
// bundle annotation and any RFC 3161 timestamp.
func (a *Authority) verifyLegacyKeyless(s legacySignature) (Signature, error) {
	if s.certificate == "" {
		return Signature{}, errors.New("signature has no certificate")
	}
	e, err := newLegacyEntity(s)
	if err != nil {
		return Signature{}, err
	}
	return a.verifyKeyless(e, sgverify.WithArtifact(bytes.NewReader(s.payload)))
}

func (a *Authority) verifyKeyless(e sgverify.SignedEntity, artifact sgverify.ArtifactPolicyOption) (Signature, error) {
	sig, res, err := a.verifyKeylessEntity(e, artifact)
	if err == nil {
		err = checkStatement(res)
	}
	return sig, err
}

// verifyKeylessEntity verifies a signed entity (a signature or an
// attestation) against the trust root and the identities.
func (a *Authority) verifyKeylessEntity(e sgverify.SignedEntity, artifact sgverify.ArtifactPolicyOption) (Signature, *sgverify.VerificationResult, error) {
	opts := make([]sgverify.PolicyOption, len(a.identities))
	for i, id := range a.identities {
		opts[i] = sgverify.WithCertificateIdentity(id)
	}
	res, err := a.keyless.Verify(e, sgverify.NewPolicy(artifact, opts...))
	if err != nil {
		var nomatch *sgverify.ErrNoMatchingCertificateIdentity
		if errors.As(err, &nomatch) {
			return Signature{}, nil, identityMismatch(e)
		}
		return Signature{}, nil, err
	}
	sig := Signature{}
	if c := res.Signature.Certificate; c != nil {
		sig.Subject, sig.Issuer = c.SubjectAlternativeName, c.Extensions.Issuer
	}
	return sig, res, nil
}

// identityMismatch is cosign's message for a certificate no identity matches.
func identityMismatch(e sgverify.SignedEntity) error {
	subject, issuer := "", ""
	if vc, err := e.VerificationContent(); err == nil && vc.Certificate() != nil {
		if s, err := certificate.SummarizeCertificate(vc.Certificate()); err == nil {
			subject, issuer = s.SubjectAlternativeName, s.Extensions.Issuer
		}
	}
	return &classified{reason: ReasonIdentityMismatch,
		err: fmt.Errorf("none of the expected identities matched what was in the certificate, got subjects [%s] with issuer %s", subject, issuer)}
}

// verifyBundles checks sigstore bundles; any one that verifies suffices.
func (a *Authority) verifyBundles(refs []bundleReferrer, d name.Digest) ([]Signature, error) {
	artifact, err := imageArtifact(d)
	if err != nil {
		return nil, err
	}
	return anyPasses(refs, FormatBundle, func(r bundleReferrer) (string, Signature, error) {
		sig, res, err := a.verifyBundle(r, artifact)
		if err == nil {
			err = checkStatement(res)
		}
		return r.id, sig, err
	})
}

// verifyBundle parses and verifies one referrer's bundle, a signature or an
// attestation, with the authority's keys or trust root.
func (a *Authority) verifyBundle(r bundleReferrer, artifact sgverify.ArtifactPolicyOption) (Signature, *sgverify.VerificationResult, error) {
	if r.err != nil {
		return Signature{}, nil, r.err
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(r.json); err != nil {
		return Signature{}, nil, fmt.Errorf("referrer %s: %w", r.id, err)
	}
	if a.kind == "key" {
		res, err := a.verifyBundleKey(&b, artifact)
		return Signature{}, res, err
	}
	return a.verifyKeylessEntity(&b, artifact)
}

// imageArtifact: what a bundle must be about, the image's digest.
func imageArtifact(d name.Digest) (sgverify.ArtifactPolicyOption, error) {
	digest, err := hex.DecodeString(strings.TrimPrefix(d.DigestStr(), "sha256:"))
	if err != nil {
		return nil, err
	}
	return sgverify.WithArtifactDigest("sha256", digest), nil
}

// verifyBundleKey verifies a key-signed bundle offline against each key.
func (a *Authority) verifyBundleKey(b *bundle.Bundle, artifact sgverify.ArtifactPolicyOption) (*sgverify.VerificationResult, error) {
	var last error
	for _, v := range a.keyVerifiers {
		res, err := v.Verify(b, sgverify.NewPolicy(artifact, sgverify.WithKey()))
		if err == nil {
			return res, nil
		}
		last = err
	}
	return nil, last
}

// checkStatement rejects DSSE bundles that are attestations, not signatures.
func checkStatement(res *sgverify.VerificationResult) error {
	if res.Statement != nil && res.Statement.PredicateType != cosignSignPredicate {
		return fmt.Errorf("bundle is an attestation of type %q, not a signature", res.Statement.PredicateType)
	}
	return nil
}

// failures collects why each signature failed, as cosign reports them.
type failures struct {
	msgs     []string
	identity bool
	crypto   bool
}

func (f *failures) add(err error) {
	if ReasonOf(err) == ReasonIdentityMismatch {
		f.identity = true
	} else {
		f.crypto = true
	}
	m := err.Error()
	for _, seen := range f.msgs {
		if seen == m {
			return
		}
	}
	f.msgs = append(f.msgs, m)
}

// err is "no matching signatures: ..."; the reason is an identity mismatch
// only when every signature verified but named the wrong signer.
func (f *failures) err() error { return f.errAbout("signatures") }

// errAbout is err for signatures or attestations.
func (f *failures) errAbout(what string) error {
	reason := ReasonSignatureMismatch
	if f.identity && !f.crypto {
		reason = ReasonIdentityMismatch
	}
	return &classified{reason: reason, err: fmt.Errorf("no matching %s: %s", what, strings.Join(f.msgs, "\n "))}
}

// legacyEntity is a cosign .sig layer seen as a sigstore-go SignedEntity.
type legacyEntity struct {
	cert          *x509.Certificate
	intermediates []*x509.Certificate
	content       sgverify.SignatureContent
	entries       []*tlog.Entry
	timestamps    [][]byte
}

func newLegacyEntity(s legacySignature) (*legacyEntity, error) {
	raw, err := base64.StdEncoding.DecodeString(s.signature)
	if err != nil {
		return nil, fmt.Errorf("signature is not base64: %w", err)
	}
	sum := sha256.Sum256(s.payload)
	return newLegacyEntityWith(s, bundle.NewMessageSignature(sum[:], "SHA2_256", raw))
}

// newLegacyEntityWith reads a layer's certificate, chain, Rekor bundle and
// timestamp annotations around the signed content (a message signature of
// a .sig layer, the DSSE envelope of a .att layer).
func newLegacyEntityWith(s legacySignature, content sgverify.SignatureContent) (*legacyEntity, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(s.certificate))
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("signature certificate is not PEM: %v", err)
	}
	e := &legacyEntity{cert: certs[0]}
	if s.chain != "" {
		chain, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(s.chain))
		if err != nil {
			return nil, fmt.Errorf("signature chain is not PEM: %w", err)
		}
		for _, c := range chain {
			if !c.IsCA || !bytes.Equal(c.RawSubject, c.RawIssuer) { // roots come from the trust root only
				e.intermediates = append(e.intermediates, c)
			}
		}
	}
	e.content = content
	if s.rekorBundle != "" {
		entry, err := parseRekorBundle(s.rekorBundle)
		if err != nil {
			return nil, err
		}
		e.entries = append(e.entries, entry)
	}
	if s.timestamp != "" {
		var ts struct {
			SignedRFC3161Timestamp []byte
		}
		if err := json.Unmarshal([]byte(s.timestamp), &ts); err != nil {
			return nil, fmt.Errorf("signature timestamp annotation: %w", err)
		}
		e.timestamps = append(e.timestamps, ts.SignedRFC3161Timestamp)
	}
	return e, nil
}

// rekorBundle is cosign's `dev.sigstore.cosign/bundle` annotation.
type rekorBundle struct {
	SignedEntryTimestamp []byte
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	}
}

func parseRekorBundle(s string) (*tlog.Entry, error) {
	var rb rekorBundle
	if err := json.Unmarshal([]byte(s), &rb); err != nil {
		return nil, fmt.Errorf("signature bundle annotation: %w", err)
	}
	body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
	if err != nil {
		return nil, fmt.Errorf("signature bundle annotation body: %w", err)
	}
	logID, err := hex.DecodeString(rb.Payload.LogID)
	if err != nil {
		return nil, fmt.Errorf("signature bundle annotation logID: %w", err)
	}
	// NewEntry reads the kind and version from the body, which is what a
	// legacy annotation has (it carries no KindVersion).
	return tlog.NewEntry(body, rb.Payload.IntegratedTime, rb.Payload.LogIndex, logID, rb.SignedEntryTimestamp, nil) //nolint:staticcheck
}

func (e *legacyEntity) HasInclusionPromise() bool { return len(e.entries) > 0 }
func (e *legacyEntity) HasInclusionProof() bool   { return false }
func (e *legacyEntity) VerificationContent() (sgverify.VerificationContent, error) {
	return &legacyCertificate{VerificationContent: bundle.NewCertificate(e.cert), intermediates: e.intermediates}, nil
}
func (e *legacyEntity) SignatureContent() (sgverify.SignatureContent, error) { return e.content, nil }
func (e *legacyEntity) Timestamps() ([][]byte, error)                        { return e.timestamps, nil }
func (e *legacyEntity) TlogEntries() ([]*tlog.Entry, error)                  { return e.entries, nil }

// Version "v0.1" lets sigstore-go accept what older cosign clients signed.
func (e *legacyEntity) Version() (string, error) { return "v0.1", nil }

// legacyCertificate adds the chain annotation's intermediates.
type legacyCertificate struct {
	sgverify.VerificationContent
	intermediates []*x509.Certificate
}

func (c *legacyCertificate) Intermediates() []*x509.Certificate { return c.intermediates }
