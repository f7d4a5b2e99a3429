package verify

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// SignatureFormat is where and how signatures are stored, as in
// policy-controller's `signatureFormat`.
type SignatureFormat string

const (
	// FormatLegacy: cosign's `sha256-<hex>.sig` tag (the default).
	FormatLegacy SignatureFormat = "legacy"
	// FormatBundle: sigstore bundles attached as OCI 1.1 referrers.
	FormatBundle SignatureFormat = "bundle"
)

// AuthoritySpec is an authority as a policy states it, with every reference
// (Secret, TrustRoot) already read by the caller. Exactly one of Key and
// Keyless is set.
type AuthoritySpec struct {
	Name            string
	Key             *KeySpec
	Keyless         *KeylessSpec
	Source          *SourceSpec
	SignatureFormat SignatureFormat // "" means legacy
	// CTLog is policy-controller's `ctlog`: every signature must carry a
	// transparency log entry whose inclusion promise (or inclusion proof)
	// verifies offline against the Rekor keys of CTLog's trust root, and
	// whose body is the signature and its key or certificate. For a keyless
	// authority those Rekor keys replace the keyless trust root's.
	CTLog *RootRef
	// RFC3161Timestamp is `rfc3161timestamp`: every signature must carry an
	// RFC 3161 timestamp signed by a timestamp authority of its trust root,
	// and no log entry is needed (it wins over CTLog, as in
	// policy-controller); a keyless certificate must be valid at the
	// timestamp's time.
	RFC3161Timestamp *RootRef
}

// RootRef is the trust root that an authority's ctlog or rfc3161timestamp
// names, already read. A nil TrustRoot means it is not available:
// verification gives ReasonMissingTrustRoot.
type RootRef struct {
	TrustRoot *TrustRoot
}

// KeySpec is a `key` authority: one or more PEM public keys (ECDSA, RSA,
// ed25519); a signature by any of them passes.
type KeySpec struct {
	PEM           []byte
	HashAlgorithm string // sha224, sha256 (default), sha384, sha512
}

// KeylessSpec is a `keyless` authority.
type KeylessSpec struct {
	Identities []Identity
	// TrustRoot holds the Fulcio CAs, Rekor and CT log keys and TSAs. Nil
	// means no root is available: verification gives ReasonMissingTrustRoot.
	TrustRoot *TrustRoot
	// InsecureIgnoreSCT skips the certificate transparency check of the leaf.
	InsecureIgnoreSCT bool
}

// Identity is one accepted signer: an issuer and a subject, each exact or a
// regular expression.
type Identity struct {
	Issuer, IssuerRegExp, Subject, SubjectRegExp string
}

// TrustRoot names trusted material (from a TrustRoot object or the public
// Sigstore root).
type TrustRoot struct {
	Name     string
	Material root.TrustedMaterial
}

func (tr *TrustRoot) available() bool { return tr != nil && tr.Material != nil }

// SourceSpec says where signatures live when not beside the image.
type SourceSpec struct {
	OCI                  string   // repository holding the signatures
	TagPrefix            string   // prepended to the signature tag
	SignaturePullSecrets []string // names of the Secrets behind Request.SignatureKeychain
}

// evidence is what a signature must carry besides itself to pass.
type evidence string

const (
	// evidenceNone: the signature alone (a key authority without ctlog:
	// policy-controller's IgnoreTlog).
	evidenceNone evidence = "none"
	// evidenceLog: a transparency log entry of a trusted log (keyless
	// authorities, and key authorities with ctlog).
	evidenceLog evidence = "tlog"
	// evidenceTimestamp: an RFC 3161 timestamp of a trusted TSA
	// (rfc3161timestamp).
	evidenceTimestamp evidence = "rfc3161timestamp"
)

// Authority is a compiled, immutable authority; safe for concurrent use.
type Authority struct {
	name         string
	kind         string // "key" or "keyless"
	format       SignatureFormat
	source       *name.Repository
	tagPrefix    string
	keys         []signature.Verifier // legacy signatures without evidence: verified directly
	keyVerifiers []*sgverify.Verifier // bundles, and legacy signatures with evidence: one per key
	keyless      *sgverify.Verifier
	hash         crypto.Hash
	identities   []sgverify.CertificateIdentity
	ignoreSCT    bool
	evidence     evidence
	// rekorLogs are the trusted logs (evidenceLog), from the trust root
	// logRoot names.
	rekorLogs map[string]*root.TransparencyLog
	logRoot   string
	// missing, when set, names what has no trust root: nothing verifies.
	missing     string
	fingerprint string
}

// Name is the authority's name.
func (a *Authority) Name() string { return a.name }

// Fingerprint identifies everything verification depends on: key bytes and
// hash, identities, the content of the trust roots (keyless, ctlog and
// rfc3161timestamp), the evidence required, source and pull-secret names.
func (a *Authority) Fingerprint() string { return a.fingerprint }

var hashes = map[string]crypto.Hash{
	"": crypto.SHA256, "sha224": crypto.SHA224, "sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512,
}

// writeField writes one input of verification to a fingerprint.
func writeField(w io.Writer, k, v string) { fmt.Fprintf(w, "%s=%q\n", k, v) }

// Compile checks an authority and prepares it for verification. Errors name
// the authority and the field.
func Compile(spec AuthoritySpec) (*Authority, error) {
	a := &Authority{name: spec.Name, format: spec.SignatureFormat, hash: crypto.SHA256}
	fp := sha256.New()
	var err error
	switch a.format {
	case "":
		a.format = FormatLegacy
	case FormatLegacy, FormatBundle:
	default:
		err = fmt.Errorf("signatureFormat: %q is not one of legacy, bundle", a.format)
	}
	writeField(fp, "format", string(a.format))
	switch {
	case err != nil:
	case spec.Key != nil && spec.Keyless != nil:
		err = errors.New("key, keyless: expected exactly one, got both")
	case spec.Key != nil:
		err = a.compileKey(spec, fp)
	case spec.Keyless != nil:
		err = a.compileKeyless(spec, fp)
	default:
		err = errors.New("key, keyless: expected exactly one, got neither")
	}
	if err == nil {
		err = a.compileSource(spec.Source, fp)
	}
	if err != nil {
		return nil, fmt.Errorf("authority %q: %w", spec.Name, err)
	}
	a.fingerprint = hex.EncodeToString(fp.Sum(nil))
	return a, nil
}

// compileKey prepares a key authority: a verifier per key for legacy
// signatures, and a sigstore-go verifier per key for bundles and for
// signatures that must carry a log entry or a timestamp.
func (a *Authority) compileKey(spec AuthoritySpec, fp io.Writer) error {
	a.kind = "key"
	h, ok := hashes[spec.Key.HashAlgorithm]
	if !ok {
		return fmt.Errorf("key.hashAlgorithm: %q is not one of sha224, sha256, sha384, sha512", spec.Key.HashAlgorithm)
	}
	a.hash = h
	keys, err := parsePublicKeys(spec.Key.PEM)
	if err != nil {
		return fmt.Errorf("key.data: %w", err)
	}
	m, err := a.trust(spec, fp)
	if err != nil {
		return err
	}
	for _, k := range keys {
		v, err := signature.LoadVerifier(k, h)
		if err != nil {
			return fmt.Errorf("key.hashAlgorithm: %s with a %s key: %w", spec.Key.HashAlgorithm, keyType(k), err)
		}
		a.keys = append(a.keys, v)
		if a.missing == "" {
			withKey := *m
			withKey.key = root.NewExpiringKey(v, time.Time{}, time.Time{})
			sv, err := sgverify.NewVerifier(&withKey, a.verifierOptions()...)
			if err != nil {
				return fmt.Errorf("key.data: %w", err)
			}
			a.keyVerifiers = append(a.keyVerifiers, sv)
		}
		der, _ := x509.MarshalPKIXPublicKey(k)
		writeField(fp, "key", hex.EncodeToString(der))
	}
	writeField(fp, "hash", h.String())
	return nil
}

// compileKeyless prepares a keyless authority: its identities and one
// sigstore-go verifier over its trusted material.
func (a *Authority) compileKeyless(spec AuthoritySpec, fp io.Writer) error {
	a.kind = "keyless"
	if len(spec.Keyless.Identities) == 0 {
		return errors.New("keyless.identities: missing field(s)")
	}
	for i, id := range spec.Keyless.Identities {
		ci, err := sgverify.NewShortCertificateIdentity(id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp)
		if err != nil {
			return fmt.Errorf("keyless.identities[%d]: %w", i, err)
		}
		a.identities = append(a.identities, ci)
		writeField(fp, "identity", fmt.Sprintf("%q %q %q %q", id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp))
	}
	a.ignoreSCT = spec.Keyless.InsecureIgnoreSCT
	writeField(fp, "ignoreSCT", fmt.Sprint(a.ignoreSCT))
	m, err := a.trust(spec, fp)
	if err != nil || a.missing != "" {
		return err
	}
	v, err := sgverify.NewVerifier(m, a.verifierOptions()...)
	if err != nil {
		return &RootError{Field: "keyless.trustRootRef", Err: err}
	}
	a.keyless = v
	return nil
}

// RootError is a trust root that an authority names but cannot use: the
// field naming it (keyless.trustRootRef, ctlog.trustRootRef or
// rfc3161timestamp.trustRootRef) and why. Fixing the TrustRoot fixes the
// authority.
type RootError struct {
	Field string
	Err   error
}

func (e *RootError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *RootError) Unwrap() error { return e.Err }

// trust gathers what the authority trusts from its trust roots, and the
// evidence its signatures must carry: the keyless root gives everything;
// ctlog's root gives the Rekor keys, and rfc3161timestamp's the timestamp
// authorities (then no log entry is needed, as policy-controller's
// IgnoreTlog). A root that is not available sets a.missing.
func (a *Authority) trust(spec AuthoritySpec, fp io.Writer) (*authorityMaterial, error) {
	m := &authorityMaterial{}
	a.evidence = evidenceNone
	if spec.Keyless != nil {
		a.evidence = evidenceLog
		if tr := spec.Keyless.TrustRoot; tr.available() {
			writeField(fp, "trustRoot", tr.Name)
			tm := tr.Material
			m.cas, m.ctlogs, m.rekor, m.tsas = tm.FulcioCertificateAuthorities(), tm.CTLogs(), tm.RekorLogs(), tm.TimestampingAuthorities()
			a.logRoot = tr.Name
		} else {
			a.missing = "keyless verification"
		}
	}
	if c := spec.CTLog; c != nil {
		a.evidence = evidenceLog
		if tr := c.TrustRoot; tr.available() {
			writeField(fp, "ctlog", tr.Name)
			m.rekor, a.logRoot = tr.Material.RekorLogs(), tr.Name
			if len(m.rekor) == 0 {
				return nil, &RootError{Field: "ctlog.trustRootRef", Err: fmt.Errorf("trustroot %q holds no transparency log keys (tLogs)", tr.Name)}
			}
		} else {
			a.missing = "the transparency log (ctlog)"
		}
	}
	if t := spec.RFC3161Timestamp; t != nil {
		a.evidence = evidenceTimestamp
		if tr := t.TrustRoot; tr.available() {
			writeField(fp, "rfc3161timestamp", tr.Name)
			m.tsas = tr.Material.TimestampingAuthorities()
			if len(m.tsas) == 0 {
				return nil, &RootError{Field: "rfc3161timestamp.trustRootRef",
					Err: fmt.Errorf("trustroot %q holds no timestamp authorities (timestampAuthorities)", tr.Name)}
			}
		} else {
			a.missing = "timestamp verification (rfc3161timestamp)"
		}
	}
	writeField(fp, "evidence", string(a.evidence))
	a.rekorLogs = m.rekor
	fingerprintTrustedMaterial(fp, m)
	return m, nil
}

// verifierOptions are sigstore-go's requirements for the evidence: keyless
// needs a time to check the certificate at (the log's integrated time or
// the TSA's), and an SCT unless insecureIgnoreSCT, as cosign does; keys need
// no time.
func (a *Authority) verifierOptions() []sgverify.VerifierOption {
	var opts []sgverify.VerifierOption
	switch {
	case a.evidence == evidenceTimestamp:
		opts = append(opts, sgverify.WithSignedTimestamps(1))
	case a.evidence == evidenceLog && a.kind == "keyless":
		opts = append(opts, sgverify.WithTransparencyLog(1), sgverify.WithObserverTimestamps(1))
	case a.evidence == evidenceLog:
		opts = append(opts, sgverify.WithTransparencyLog(1), sgverify.WithNoObserverTimestamps())
	default:
		opts = append(opts, sgverify.WithNoObserverTimestamps())
	}
	if a.kind == "keyless" && !a.ignoreSCT {
		opts = append(opts, sgverify.WithSignedCertificateTimestamps(1))
	}
	return opts
}

// compileSource reads where the signatures live.
func (a *Authority) compileSource(s *SourceSpec, fp io.Writer) error {
	if s == nil {
		return nil
	}
	if s.OCI != "" {
		repo, err := name.NewRepository(s.OCI, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("source[0].oci: %w", err)
		}
		a.source = &repo
		writeField(fp, "source", repo.Name())
	}
	a.tagPrefix = s.TagPrefix
	writeField(fp, "tagPrefix", s.TagPrefix)
	secrets := append([]string(nil), s.SignaturePullSecrets...)
	sort.Strings(secrets)
	writeField(fp, "signaturePullSecrets", strings.Join(secrets, ","))
	return nil
}

// authorityMaterial is what one authority trusts, gathered from up to three
// trust roots: its key, the keyless root's Fulcio CAs and CT logs, the Rekor
// keys of ctlog's root (or the keyless root's), and the timestamp
// authorities of rfc3161timestamp's root (or the keyless root's).
type authorityMaterial struct {
	key    root.TimeConstrainedVerifier
	cas    []root.CertificateAuthority
	ctlogs map[string]*root.TransparencyLog
	rekor  map[string]*root.TransparencyLog
	tsas   []root.TimestampingAuthority
}

var _ root.TrustedMaterial = (*authorityMaterial)(nil)

func (m *authorityMaterial) FulcioCertificateAuthorities() []root.CertificateAuthority { return m.cas }
func (m *authorityMaterial) CTLogs() map[string]*root.TransparencyLog                  { return m.ctlogs }
func (m *authorityMaterial) RekorLogs() map[string]*root.TransparencyLog               { return m.rekor }
func (m *authorityMaterial) TimestampingAuthorities() []root.TimestampingAuthority     { return m.tsas }

// PublicKeyVerifier is the authority's key, whatever the hint: a bundle's
// hint names a key only the signer knows the name of.
func (m *authorityMaterial) PublicKeyVerifier(string) (root.TimeConstrainedVerifier, error) {
	if m.key == nil {
		return nil, errors.New("the authority has no public key")
	}
	return m.key, nil
}

func keyType(k crypto.PublicKey) string {
	return strings.TrimPrefix(strings.TrimSuffix(fmt.Sprintf("%T", k), ".PublicKey"), "*")
}

func parsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		k, err := cryptoutils.UnmarshalPEMToPublicKey(pem.EncodeToMemory(block))
		if err != nil {
			return nil, fmt.Errorf("not a PEM public key: %w", err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

// fingerprintTrustedMaterial writes the content of a trust root: CA and TSA
// certificates, log keys and their validity.
func fingerprintTrustedMaterial(w io.Writer, tm root.TrustedMaterial) {
	certs := func(kind string, cs ...*x509.Certificate) {
		for _, c := range cs {
			if c != nil {
				fmt.Fprintf(w, "%s %x\n", kind, sha256.Sum256(c.Raw))
			}
		}
	}
	for _, ca := range tm.FulcioCertificateAuthorities() {
		if f, ok := ca.(*root.FulcioCertificateAuthority); ok {
			certs("fulcio", append([]*x509.Certificate{f.Root}, f.Intermediates...)...)
			fmt.Fprintf(w, "fulcio-validity %d %d\n", f.ValidityPeriodStart.Unix(), f.ValidityPeriodEnd.Unix())
		} else {
			fmt.Fprintf(w, "fulcio %T %p\n", ca, ca)
		}
	}
	for _, ta := range tm.TimestampingAuthorities() {
		if s, ok := ta.(*root.SigstoreTimestampingAuthority); ok {
			certs("tsa", append([]*x509.Certificate{s.Root, s.Leaf}, s.Intermediates...)...)
		} else {
			fmt.Fprintf(w, "tsa %T %p\n", ta, ta)
		}
	}
	logs := func(kind string, m map[string]*root.TransparencyLog) {
		ids := make([]string, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			der, _ := x509.MarshalPKIXPublicKey(m[id].PublicKey)
			fmt.Fprintf(w, "%s %s %x\n", kind, id, sha256.Sum256(der))
		}
	}
	logs("rekor", tm.RekorLogs())
	logs("ctlog", tm.CTLogs())
}
