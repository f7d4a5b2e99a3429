package verify

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tuf"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	tufmetadata "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"

	"github.com/vigil-dev/vigil/apis/policy/v1alpha1"
)

// PublicGoodTrustRootName names the public-good Sigstore root in messages and
// fingerprints, where a TrustRoot's name would stand.
const PublicGoodTrustRootName = "sigstore-public-good"

const (
	defaultTargetsDir        = "targets"
	defaultTrustedRootTarget = "trusted_root.json"
	// Bounds of an offline repository (TrustRoot.spec.repository.mirrorFS),
	// which a cluster administrator supplies: entries and bytes unpacked.
	maxMirrorFiles = 4096
	maxMirrorBytes = 64 << 20
)

// TrustRootOptions configure loading trust roots that come through TUF.
type TrustRootOptions struct {
	// CacheDir keeps TUF metadata of `remote` TrustRoots and of the
	// public-good root between restarts. Empty: kept in memory only.
	CacheDir string
	// Fetcher downloads TUF metadata and targets for `remote` TrustRoots and
	// the public-good root [go-tuf's HTTP fetcher]. Offline repositories
	// never use it.
	Fetcher fetcher.Fetcher
}

// LoadTrustRoot builds the trusted material of a TrustRoot object from
// whichever source its spec names: the keys inline, an offline TUF
// repository, or a TUF mirror over the network. Errors name the TrustRoot
// and the field.
func LoadTrustRoot(tr *v1alpha1.TrustRoot, opts TrustRootOptions) (*TrustRoot, error) {
	// The helpers' errors start with the field below spec.<source>.
	fail := func(source string, err error) (*TrustRoot, error) {
		return nil, fmt.Errorf("trustroot %q: spec.%s.%w", tr.Name, source, err)
	}
	s := tr.Spec
	set := 0
	for _, present := range []bool{s.SigstoreKeys != nil, s.Repository != nil, s.Remote != nil} {
		if present {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("trustroot %q: spec: expected exactly one of remote, repository and sigstoreKeys, got %d", tr.Name, set)
	}
	var (
		tm  root.TrustedMaterial
		err error
	)
	switch {
	case s.SigstoreKeys != nil:
		tm, err = trustedRootFromKeys(s.SigstoreKeys)
		if err != nil {
			return fail("sigstoreKeys", err)
		}
	case s.Repository != nil:
		tm, err = trustedRootFromRepository(s.Repository)
		if err != nil {
			return fail("repository", err)
		}
	case s.Remote != nil:
		tm, err = trustedRootFromRemote(s.Remote, opts)
		if err != nil {
			return fail("remote", err)
		}
	}
	return &TrustRoot{Name: tr.Name, Material: tm}, nil
}

// PublicGoodTrustRoot loads the public-good Sigstore root through
// sigstore-go's TUF client, from the root embedded in sigstore-go and the
// mirror https://tuf-repo-cdn.sigstore.dev. It needs network access to the
// mirror (the metadata is cached in opts.CacheDir); when the mirror cannot be
// reached it returns an error, and keyless authorities without a
// trustRootRef then give `error` results, never a pass.
func PublicGoodTrustRoot(opts TrustRootOptions) (*TrustRoot, error) {
	o := tuf.DefaultOptions()
	o.CachePath = opts.CacheDir
	if opts.CacheDir == "" {
		o.DisableLocalCache = true
	}
	if opts.Fetcher != nil {
		o.Fetcher = opts.Fetcher
	}
	tm, err := trustedRootFromTUF(o, defaultTrustedRootTarget)
	if err != nil {
		return nil, fmt.Errorf("the public-good Sigstore trust root (TUF mirror %s): %w", tuf.DefaultMirror, err)
	}
	return &TrustRoot{Name: PublicGoodTrustRootName, Material: tm}, nil
}

func trustedRootFromKeys(k *v1alpha1.SigstoreKeys) (*root.TrustedRoot, error) {
	if len(k.CertificateAuthorities) == 0 && len(k.TimeStampAuthorities) == 0 {
		return nil, errors.New("certificateAuthorities, timestampAuthorities: expected at least one, got neither")
	}
	var cas []root.CertificateAuthority
	for i, ca := range k.CertificateAuthorities {
		chain, err := splitChain(ca.CertChain)
		if err != nil {
			return nil, fmt.Errorf("certificateAuthorities[%d].certChain: %w", i, err)
		}
		if chain.leaf != nil {
			return nil, fmt.Errorf("certificateAuthorities[%d].certChain: certificate %q is not a CA certificate", i, chain.leaf.Subject)
		}
		cas = append(cas, &root.FulcioCertificateAuthority{Root: chain.root, Intermediates: chain.intermediates, URI: ca.URI})
	}
	var tsas []root.TimestampingAuthority
	for i, ta := range k.TimeStampAuthorities {
		chain, err := splitChain(ta.CertChain)
		if err != nil {
			return nil, fmt.Errorf("timestampAuthorities[%d].certChain: %w", i, err)
		}
		tsas = append(tsas, &root.SigstoreTimestampingAuthority{Root: chain.root, Intermediates: chain.intermediates, Leaf: chain.leaf, URI: ta.URI})
	}
	tlogs, err := transparencyLogs("tLogs", k.TLogs)
	if err != nil {
		return nil, err
	}
	ctlogs, err := transparencyLogs("ctLogs", k.CTLogs)
	if err != nil {
		return nil, err
	}
	return root.NewTrustedRoot(root.TrustedRootMediaType01, cas, ctlogs, tsas, tlogs)
}

type certChain struct {
	leaf          *x509.Certificate // the one certificate that is not a CA, if any
	intermediates []*x509.Certificate
	root          *x509.Certificate
}

// splitChain reads a PEM chain written leaf (or intermediates) first and the
// self-signed root last, as policy-controller's TrustRoot states it.
func splitChain(pemData []byte) (certChain, error) {
	var c certChain
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(pemData)
	if err != nil {
		return c, fmt.Errorf("not a PEM certificate chain: %w", err)
	}
	if len(certs) == 0 {
		return c, errors.New("no PEM certificate found")
	}
	c.root = certs[len(certs)-1]
	if !c.root.IsCA || !bytes.Equal(c.root.RawSubject, c.root.RawIssuer) || c.root.CheckSignatureFrom(c.root) != nil {
		return c, fmt.Errorf("the last certificate (%q) must be a self-signed root CA", c.root.Subject)
	}
	for _, cert := range certs[:len(certs)-1] {
		switch {
		case cert.IsCA:
			c.intermediates = append(c.intermediates, cert)
		case c.leaf != nil:
			return c, fmt.Errorf("more than one certificate that is not a CA (%q, %q)", c.leaf.Subject, cert.Subject)
		default:
			c.leaf = cert
		}
	}
	return c, nil
}

var logHashes = map[string]crypto.Hash{"sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512}

// logsValidFrom is when the logs of a TrustRoot start to count. The CRD
// carries no validity periods (as policy-controller's), so a key counts from
// the start of Unix time without end; sigstore-go refuses a Rekor key whose
// start is unset.
var logsValidFrom = time.Unix(0, 0).UTC()

// transparencyLogs keys each log by the hex SHA-256 of its DER public key,
// the log ID that Rekor entries and SCTs carry.
func transparencyLogs(field string, logs []v1alpha1.TransparencyLogInstance) (map[string]*root.TransparencyLog, error) {
	out := map[string]*root.TransparencyLog{}
	for i, l := range logs {
		h, ok := logHashes[l.HashAlgorithm]
		if !ok {
			return nil, fmt.Errorf("%s[%d].hashAlgorithm: %q is not one of sha256, sha384, sha512", field, i, l.HashAlgorithm)
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(l.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("%s[%d].publicKey: not a PEM public key: %w", field, i, err)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("%s[%d].publicKey: %w", field, i, err)
		}
		id := sha256.Sum256(der)
		out[hex.EncodeToString(id[:])] = &root.TransparencyLog{
			BaseURL: l.BaseURL, ID: id[:], HashFunc: h, PublicKey: pub, SignatureHashFunc: signatureHash(pub),
			ValidityPeriodStart: logsValidFrom,
		}
	}
	return out, nil
}

// signatureHash is the hash a log signs with: the one that fits an ECDSA
// curve, SHA-256 otherwise (ed25519 ignores it).
func signatureHash(pub crypto.PublicKey) crypto.Hash {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		switch k.Curve {
		case elliptic.P384():
			return crypto.SHA384
		case elliptic.P521():
			return crypto.SHA512
		}
	}
	return crypto.SHA256
}

// offlineBaseURL is the mirror URL the TUF client is given for an offline
// repository; the in-memory fetcher answers it and nothing goes out.
const offlineBaseURL = "https://offline.tuf.invalid"

func trustedRootFromRepository(r *v1alpha1.Repository) (*root.TrustedRoot, error) {
	if len(r.Root) == 0 {
		return nil, errors.New("root: missing field")
	}
	files, err := untarMirror(r.MirrorFS)
	if err != nil {
		return nil, fmt.Errorf("mirrorFS: %w", err)
	}
	o := &tuf.Options{
		Root:              r.Root,
		RepositoryBaseURL: offlineBaseURL,
		DisableLocalCache: true,
		Fetcher:           &fileFetcher{base: offlineBaseURL + "/", targets: targetsDir(r.Targets), files: files},
	}
	tm, err := trustedRootFromTUF(o, trustedRootTarget(r.TrustedRootTarget))
	if err != nil {
		return nil, fmt.Errorf("root, mirrorFS: %w", err)
	}
	return tm, nil
}

func trustedRootFromRemote(r *v1alpha1.Remote, opts TrustRootOptions) (*root.TrustedRoot, error) {
	if len(r.Root) == 0 {
		return nil, errors.New("root: missing field")
	}
	if u, err := url.Parse(r.Mirror); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("mirror: %q is not an http(s) URL", r.Mirror)
	}
	base := strings.TrimSuffix(r.Mirror, "/")
	f := opts.Fetcher
	if f == nil {
		f = fetcher.NewDefaultFetcher()
	}
	o := &tuf.Options{
		Root:              r.Root,
		RepositoryBaseURL: base,
		CachePath:         opts.CacheDir,
		DisableLocalCache: opts.CacheDir == "",
		Fetcher:           &targetsRewriter{base: base + "/", targets: targetsDir(r.Targets), next: f},
	}
	tm, err := trustedRootFromTUF(o, trustedRootTarget(r.TrustedRootTarget))
	if err != nil {
		return nil, fmt.Errorf("root, mirror %s: %w", base, err)
	}
	return tm, nil
}

func trustedRootFromTUF(o *tuf.Options, target string) (*root.TrustedRoot, error) {
	c, err := tuf.New(o)
	if err != nil {
		return nil, err
	}
	data, err := c.GetTarget(target)
	if err != nil {
		return nil, err
	}
	tr, err := root.NewTrustedRootFromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", target, err)
	}
	return tr, nil
}

func targetsDir(s string) string {
	if s == "" {
		return defaultTargetsDir
	}
	return strings.Trim(s, "/")
}

func trustedRootTarget(s string) string {
	if s == "" {
		return defaultTrustedRootTarget
	}
	return s
}

// untarMirror unpacks a gzipped tar of a TUF repository into memory, keyed
// by the path below its top directory `repository/`.
func untarMirror(data []byte) (map[string][]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not a gzipped tar archive: %w", err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	total := int64(0)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a gzipped tar archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if len(files) == maxMirrorFiles {
			return nil, fmt.Errorf("more than %d files", maxMirrorFiles)
		}
		total += h.Size
		if total > maxMirrorBytes {
			return nil, fmt.Errorf("more than %d bytes unpacked", maxMirrorBytes)
		}
		body, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return nil, err
		}
		p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		p = strings.TrimPrefix(p, "repository/")
		files[p] = body
	}
	if len(files) == 0 {
		return nil, errors.New("the archive holds no files")
	}
	return files, nil
}

// fileFetcher answers the TUF client from an unpacked repository; a file it
// does not hold is a 404, which ends the client's search for newer roots.
type fileFetcher struct {
	base, targets string
	files         map[string][]byte
}

func (f *fileFetcher) DownloadFile(u string, maxLength int64, _ time.Duration) ([]byte, error) {
	p := rewriteTargets(strings.TrimPrefix(u, f.base), f.targets)
	b, ok := f.files[p]
	if !ok {
		return nil, &tufmetadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: u}
	}
	if int64(len(b)) > maxLength {
		return nil, &tufmetadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: %d bytes, more than the %d expected", u, len(b), maxLength)}
	}
	return b, nil
}

// targetsRewriter sends target downloads to the TrustRoot's targets directory
// (the TUF client always asks below <mirror>/targets/).
type targetsRewriter struct {
	base, targets string
	next          fetcher.Fetcher
}

func (t *targetsRewriter) DownloadFile(u string, maxLength int64, timeout time.Duration) ([]byte, error) {
	if rel, ok := strings.CutPrefix(u, t.base); ok {
		u = t.base + rewriteTargets(rel, t.targets)
	}
	return t.next.DownloadFile(u, maxLength, timeout)
}

func rewriteTargets(rel, dir string) string {
	if name, ok := strings.CutPrefix(rel, defaultTargetsDir+"/"); ok {
		return dir + "/" + name
	}
	return rel
}

// PublicGoodLoader returns a function that loads the public-good root
// (PublicGoodTrustRoot) at its first call and keeps it once loaded. After a
// failure it answers with that failure until retry has passed, then tries
// again: a cluster without access to the mirror does not ask it at every
// evaluation, and one that regains access gets the root.
func PublicGoodLoader(opts TrustRootOptions, retry time.Duration, now func() time.Time) func() (*TrustRoot, error) {
	if now == nil {
		now = time.Now
	}
	var (
		mu      sync.Mutex
		root    *TrustRoot
		lastErr error
		next    time.Time
	)
	return func() (*TrustRoot, error) {
		mu.Lock()
		defer mu.Unlock()
		if root != nil {
			return root, nil
		}
		if lastErr != nil && now().Before(next) {
			return nil, lastErr
		}
		root, lastErr = PublicGoodTrustRoot(opts)
		next = now().Add(retry)
		return root, lastErr
	}
}
