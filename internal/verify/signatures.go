package verify

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
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
		if a.kind == "key" && a.evidence == evidenceNone {
			err = a.verifyLegacyKey(s)
		} else {
			sig, err = a.verifyLegacyEntity(s)
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

// verifyLegacyEntity hands a .sig layer to sigstore-go as a signed entity:
// the certificate (keyless) or the authority's key, the signature over the
// payload, the Rekor entry from the bundle annotation and any RFC 3161
// timestamp.
func (a *Authority) verifyLegacyEntity(s legacySignature) (Signature, error) {
	e, err := a.newLegacyEntity(s)
	if err != nil {
		return Signature{}, err
	}
	sig, res, err := a.verifyEntity(e, sgverify.WithArtifact(bytes.NewReader(s.payload)))
	if err == nil {
		err = checkStatement(res)
	}
	return sig, err
}

// verifyEntity verifies a signed entity (a signature or an attestation, a
// legacy layer or a bundle) with the authority's keys or trust root, once it
// carries the evidence the authority asks for.
func (a *Authority) verifyEntity(e sgverify.SignedEntity, artifact sgverify.ArtifactPolicyOption) (Signature, *sgverify.VerificationResult, error) {
	if err := a.checkEvidence(e); err != nil {
		return Signature{}, nil, err
	}
	if a.kind == "key" {
		res, err := a.verifyKeyEntity(e, artifact)
		return Signature{}, res, err
	}
	return a.verifyKeylessEntity(e, artifact)
}

// checkEvidence says, before any cryptography, why an entity cannot pass
// for want of a log entry or a timestamp, in words a person can act on.
func (a *Authority) checkEvidence(e sgverify.SignedEntity) error {
	switch a.evidence {
	case evidenceLog:
		entries, err := e.TlogEntries()
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return errNoLogEntry
		}
		for _, en := range entries {
			if _, ok := a.rekorLogs[hex.EncodeToString([]byte(en.LogKeyID()))]; ok {
				return nil
			}
		}
		return fmt.Errorf("transparency log entry of an unknown log: log ID %x is not among the Rekor keys of trustroot %q",
			entries[0].LogKeyID(), a.logRoot)
	case evidenceTimestamp:
		ts, err := e.Timestamps()
		if err != nil {
			return err
		}
		if len(ts) == 0 {
			return errNoTimestamp
		}
	}
	return nil
}

var (
	// errNoLogEntry starts with cosign's message for a signature without a
	// Rekor bundle when it may not search the log (--offline): Vigil never does.
	errNoLogEntry = errors.New("offline verification failed: the signature carries no transparency log entry " +
		"(cosign's " + annotationBundle + " annotation, or a bundle's tlogEntries); " +
		"its inclusion promise is verified offline, the log is never searched")
	errNoTimestamp = errors.New("the signature carries no RFC 3161 timestamp (cosign's " + annotationTimestamp +
		" annotation, or a bundle's timestamps), which rfc3161timestamp requires")
)

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
	return a.verifyEntity(&b, artifact)
}

// imageArtifact: what a bundle must be about, the image's digest.
func imageArtifact(d name.Digest) (sgverify.ArtifactPolicyOption, error) {
	digest, err := hex.DecodeString(strings.TrimPrefix(d.DigestStr(), "sha256:"))
	if err != nil {
		return nil, err
	}
	return sgverify.WithArtifactDigest("sha256", digest), nil
}

// verifyKeyEntity verifies a key-signed entity offline against each key.
func (a *Authority) verifyKeyEntity(e sgverify.SignedEntity, artifact sgverify.ArtifactPolicyOption) (*sgverify.VerificationResult, error) {
	var last error
	for _, v := range a.keyVerifiers {
		res, err := v.Verify(e, sgverify.NewPolicy(artifact, sgverify.WithKey()))
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

// legacyEntity is a cosign .sig or .att layer seen as a sigstore-go
// SignedEntity.
type legacyEntity struct {
	verification sgverify.VerificationContent
	content      sgverify.SignatureContent
	entries      []*tlog.Entry
	timestamps   [][]byte
}

// newLegacyEntity reads a .sig layer: a message signature over its payload.
func (a *Authority) newLegacyEntity(s legacySignature) (*legacyEntity, error) {
	raw, err := base64.StdEncoding.DecodeString(s.signature)
	if err != nil {
		return nil, fmt.Errorf("signature is not base64: %w", err)
	}
	sum := sha256.Sum256(s.payload)
	return a.newLegacyEntityWith(s, "signature", bundle.NewMessageSignature(sum[:], "SHA2_256", raw))
}

// newLegacyEntityWith reads a layer's certificate and chain (keyless) or
// stands for the authority's key, and its Rekor bundle and timestamp
// annotations, around the signed content (a message signature of a .sig
// layer, the DSSE envelope of a .att layer); what names it in messages.
func (a *Authority) newLegacyEntityWith(s legacySignature, what string, content sgverify.SignatureContent) (*legacyEntity, error) {
	e := &legacyEntity{verification: keyContent{}, content: content}
	if a.kind == "keyless" {
		if s.certificate == "" {
			return nil, fmt.Errorf("%s has no certificate", what)
		}
		vc, err := legacyCertificateOf(s)
		if err != nil {
			return nil, err
		}
		e.verification = vc
	}
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

// legacyCertificateOf reads the certificate and chain annotations of a
// keyless layer.
func legacyCertificateOf(s legacySignature) (*legacyCertificate, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(s.certificate))
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("signature certificate is not PEM: %v", err)
	}
	c := &legacyCertificate{VerificationContent: bundle.NewCertificate(certs[0])}
	if s.chain != "" {
		chain, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(s.chain))
		if err != nil {
			return nil, fmt.Errorf("signature chain is not PEM: %w", err)
		}
		for _, cert := range chain {
			if !cert.IsCA || !bytes.Equal(cert.RawSubject, cert.RawIssuer) { // roots come from the trust root only
				c.intermediates = append(c.intermediates, cert)
			}
		}
	}
	return c, nil
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
	return e.verification, nil
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

// keyContent is the verification content of a key-signed legacy layer: the
// authority's key, which its trusted material gives for any hint.
type keyContent struct{}

func (keyContent) CompareKey(key any, tm root.TrustedMaterial) bool {
	v, err := tm.PublicKeyVerifier("")
	if err != nil {
		return false
	}
	pub, err := v.PublicKey()
	if err != nil {
		return false
	}
	k, ok := key.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}

func (keyContent) ValidAtTime(t time.Time, tm root.TrustedMaterial) bool {
	v, err := tm.PublicKeyVerifier("")
	return err == nil && v.ValidAtTime(t)
}

func (keyContent) Certificate() *x509.Certificate          { return nil }
func (keyContent) Intermediates() []*x509.Certificate      { return nil }
func (k keyContent) PublicKey() sgverify.PublicKeyProvider { return k }
func (keyContent) Hint() string                            { return "" }
