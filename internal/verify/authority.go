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

// SourceSpec says where signatures live when not beside the image.
type SourceSpec struct {
	OCI                  string   // repository holding the signatures
	TagPrefix            string   // prepended to the signature tag
	SignaturePullSecrets []string // names of the Secrets behind Request.SignatureKeychain
}

// Authority is a compiled, immutable authority; safe for concurrent use.
type Authority struct {
	name         string
	kind         string // "key" or "keyless"
	format       SignatureFormat
	source       *name.Repository
	tagPrefix    string
	keys         []signature.Verifier // legacy signatures: verified directly
	keyVerifiers []*sgverify.Verifier // bundles: one sigstore-go verifier per key
	keyless      *sgverify.Verifier
	hash         crypto.Hash
	identities   []sgverify.CertificateIdentity
	trustRoot    *TrustRoot
	ignoreSCT    bool
	fingerprint  string
}

// Name is the authority's name.
func (a *Authority) Name() string { return a.name }

// Fingerprint identifies everything verification depends on: key bytes and
// hash, identities, trust-root content, source and pull-secret names.
func (a *Authority) Fingerprint() string { return a.fingerprint }

var hashes = map[string]crypto.Hash{
	"": crypto.SHA256, "sha224": crypto.SHA224, "sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512,
}

// Compile checks an authority and prepares it for verification. Errors name
// the authority and the field.
func Compile(spec AuthoritySpec) (*Authority, error) {
	a := &Authority{name: spec.Name, format: spec.SignatureFormat, hash: crypto.SHA256}
	fp := sha256.New()
	field := func(k, v string) { fmt.Fprintf(fp, "%s=%q\n", k, v) }
	fail := func(path string, err error) (*Authority, error) {
		return nil, fmt.Errorf("authority %q: %s: %w", spec.Name, path, err)
	}
	switch a.format {
	case "":
		a.format = FormatLegacy
	case FormatLegacy, FormatBundle:
	default:
		return fail("signatureFormat", fmt.Errorf("%q is not one of legacy, bundle", a.format))
	}
	field("format", string(a.format))
	switch {
	case spec.Key != nil && spec.Keyless != nil:
		return fail("key, keyless", errors.New("expected exactly one, got both"))
	case spec.Key != nil:
		a.kind = "key"
		h, ok := hashes[spec.Key.HashAlgorithm]
		if !ok {
			return fail("key.hashAlgorithm", fmt.Errorf("%q is not one of sha224, sha256, sha384, sha512", spec.Key.HashAlgorithm))
		}
		a.hash = h
		keys, err := parsePublicKeys(spec.Key.PEM)
		if err != nil {
			return fail("key.data", err)
		}
		for _, k := range keys {
			v, err := signature.LoadVerifier(k, h)
			if err != nil {
				return fail("key.hashAlgorithm", fmt.Errorf("%s with a %s key: %w", spec.Key.HashAlgorithm, keyType(k), err))
			}
			a.keys = append(a.keys, v)
			tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
				return root.NewExpiringKey(v, time.Time{}, time.Time{}), nil
			})
			sv, err := sgverify.NewVerifier(tm, sgverify.WithNoObserverTimestamps())
			if err != nil {
				return fail("key.data", err)
			}
			a.keyVerifiers = append(a.keyVerifiers, sv)
			der, _ := x509.MarshalPKIXPublicKey(k)
			field("key", hex.EncodeToString(der))
		}
		field("hash", h.String())
	case spec.Keyless != nil:
		a.kind = "keyless"
		if len(spec.Keyless.Identities) == 0 {
			return fail("keyless.identities", errors.New("missing field(s)"))
		}
		for i, id := range spec.Keyless.Identities {
			ci, err := sgverify.NewShortCertificateIdentity(id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp)
			if err != nil {
				return fail(fmt.Sprintf("keyless.identities[%d]", i), err)
			}
			a.identities = append(a.identities, ci)
			field("identity", fmt.Sprintf("%q %q %q %q", id.Issuer, id.IssuerRegExp, id.Subject, id.SubjectRegExp))
		}
		a.trustRoot = spec.Keyless.TrustRoot
		a.ignoreSCT = spec.Keyless.InsecureIgnoreSCT
		field("ignoreSCT", fmt.Sprint(a.ignoreSCT))
		if a.trustRoot != nil && a.trustRoot.Material != nil {
			field("trustRoot", a.trustRoot.Name)
			fingerprintTrustedMaterial(fp, a.trustRoot.Material)
			// Keyless needs a transparency log entry and an observer
			// timestamp, and an SCT unless insecureIgnoreSCT, as cosign does.
			opts := []sgverify.VerifierOption{sgverify.WithTransparencyLog(1), sgverify.WithObserverTimestamps(1)}
			if !a.ignoreSCT {
				opts = append(opts, sgverify.WithSignedCertificateTimestamps(1))
			}
			v, err := sgverify.NewVerifier(a.trustRoot.Material, opts...)
			if err != nil {
				return fail("keyless.trustRootRef", err)
			}
			a.keyless = v
		}
	default:
		return fail("key, keyless", errors.New("expected exactly one, got neither"))
	}
	if s := spec.Source; s != nil {
		if s.OCI != "" {
			repo, err := name.NewRepository(s.OCI, name.StrictValidation)
			if err != nil {
				return fail("source[0].oci", err)
			}
			a.source = &repo
			field("source", repo.Name())
		}
		a.tagPrefix = s.TagPrefix
		field("tagPrefix", s.TagPrefix)
		secrets := append([]string(nil), s.SignaturePullSecrets...)
		sort.Strings(secrets)
		field("signaturePullSecrets", strings.Join(secrets, ","))
	}
	a.fingerprint = hex.EncodeToString(fp.Sum(nil))
	return a, nil
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
