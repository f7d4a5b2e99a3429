package verify

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	tufmetadata "github.com/theupdateframework/go-tuf/v2/metadata"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1alpha1"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

func sigstoreKeysOf(t testing.TB, name string, vs *ca.VirtualSigstore) *v1alpha1.TrustRoot {
	return verifytest.SigstoreKeysOf(t, name, vs)
}

func mustLoadTrustRoot(t testing.TB, tr *v1alpha1.TrustRoot, opts TrustRootOptions) *TrustRoot {
	t.Helper()
	root, err := LoadTrustRoot(tr, opts)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// A TrustRoot whose sigstoreKeys hold a VirtualSigstore's material verifies
// that VirtualSigstore's keyless signatures, in both layouts; one holding
// another instance's material does not, and its content changes the
// authority's fingerprint.
func TestTrustRootFromSigstoreKeys(t *testing.T) {
	f := newKeylessImages(t)
	vs, legacy, bundled, other := f.vs, f.legacy, f.bundled, newVirtualSigstore(t)

	tr := mustLoadTrustRoot(t, sigstoreKeysOf(t, "byo", vs), TrustRootOptions{})
	otherTR := mustLoadTrustRoot(t, sigstoreKeysOf(t, "byo", other), TrustRootOptions{})
	authority := func(tr *TrustRoot, format SignatureFormat) *Authority {
		spec := keylessSpec(vs, format, Identity{Issuer: ciIssuer, Subject: ciSubject})
		spec.Keyless.TrustRoot = tr
		return mustCompile(t, spec)
	}
	for format, d := range map[SignatureFormat]string{FormatLegacy: legacy.String(), FormatBundle: bundled.String()} {
		a := authority(tr, format)
		if _, err := New(Options{}).Verify(context.Background(), a, Request{Image: d}); err != nil {
			t.Errorf("%s: want a pass with the TrustRoot's material: %v", format, err)
		}
		b := authority(otherTR, format)
		_, err := New(Options{}).Verify(context.Background(), b, Request{Image: d})
		expectReason(t, err, ReasonSignatureMismatch, b, mustDigest(t, d), "no matching signatures")
		if a.Fingerprint() == b.Fingerprint() {
			t.Errorf("%s: trust roots of different content give the same fingerprint", format)
		}
		if again := authority(mustLoadTrustRoot(t, sigstoreKeysOf(t, "byo", vs), TrustRootOptions{}), format); again.Fingerprint() != a.Fingerprint() {
			t.Errorf("%s: the same TrustRoot loaded twice gives two fingerprints", format)
		}
	}
}

// Malformed TrustRoots give an error that names the TrustRoot and the field.
func TestTrustRootErrors(t *testing.T) {
	vs := newVirtualSigstore(t)
	fulcio := vs.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority)
	tsa := vs.TimestampingAuthorities()[0].(*root.SigstoreTimestampingAuthority)
	pemOf := func(c *x509.Certificate) []byte {
		p, _ := cryptoutils.MarshalCertificateToPEM(c)
		return p
	}
	repo := newTUFRepository(t, []byte(`{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	for _, tc := range []struct {
		name   string
		mutate func(*v1alpha1.TrustRootSpec)
		want   string
	}{
		{"no source", func(s *v1alpha1.TrustRootSpec) { s.SigstoreKeys = nil },
			`trustroot "bad": spec: expected exactly one of remote, repository and sigstoreKeys, got 0`},
		{"two sources", func(s *v1alpha1.TrustRootSpec) { s.Remote = &v1alpha1.Remote{Mirror: "https://tuf.example.com"} },
			`trustroot "bad": spec: expected exactly one of remote, repository and sigstoreKeys, got 2`},
		{"no authorities", func(s *v1alpha1.TrustRootSpec) { s.SigstoreKeys = &v1alpha1.SigstoreKeys{} },
			`trustroot "bad": spec.sigstoreKeys.certificateAuthorities, timestampAuthorities: expected at least one, got neither`},
		{"certChain not PEM", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys.CertificateAuthorities[0].CertChain = []byte("garbage")
		},
			`trustroot "bad": spec.sigstoreKeys.certificateAuthorities[0].certChain: not a PEM certificate chain`},
		{"certChain without its root", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys.CertificateAuthorities[0].CertChain = pemOf(fulcio.Intermediates[0])
		}, `spec.sigstoreKeys.certificateAuthorities[0].certChain: the last certificate ("CN=sigstore-intermediate,O=sigstore.dev") must be a self-signed root CA`},
		{"a leaf in a CA chain", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys.CertificateAuthorities[0].CertChain = append(pemOf(tsa.Leaf), pemOf(tsa.Root)...)
		}, `spec.sigstoreKeys.certificateAuthorities[0].certChain: certificate "" is not a CA certificate`},
		{"two TSA leaves", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys.TimeStampAuthorities[0].CertChain = bytes.Join([][]byte{pemOf(tsa.Leaf), pemOf(tsa.Leaf), pemOf(tsa.Root)}, nil)
		}, `spec.sigstoreKeys.timestampAuthorities[0].certChain: more than one certificate that is not a CA`},
		{"tlog key not PEM", func(s *v1alpha1.TrustRootSpec) { s.SigstoreKeys.TLogs[0].PublicKey = []byte("garbage") },
			`trustroot "bad": spec.sigstoreKeys.tLogs[0].publicKey: not a PEM public key`},
		{"tlog hash", func(s *v1alpha1.TrustRootSpec) { s.SigstoreKeys.TLogs[0].HashAlgorithm = "md5" },
			`trustroot "bad": spec.sigstoreKeys.tLogs[0].hashAlgorithm: "md5" is not one of sha256, sha384, sha512`},
		{"ctlog key not PEM", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys.CTLogs[0].PublicKey = []byte("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n")
		},
			`trustroot "bad": spec.sigstoreKeys.ctLogs[0].publicKey: not a PEM public key`},
		{"repository without root", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys = nil
			s.Repository = &v1alpha1.Repository{MirrorFS: repo.mirrorFS(t)}
		}, `trustroot "bad": spec.repository.root: missing field`},
		{"remote mirror not a URL", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys = nil
			s.Remote = &v1alpha1.Remote{Root: repo.root, Mirror: "tuf.example.com"}
		}, `trustroot "bad": spec.remote.mirror: "tuf.example.com" is not an http(s) URL`},
		{"mirrorFS not an archive", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys = nil
			s.Repository = &v1alpha1.Repository{Root: repo.root, MirrorFS: []byte("garbage")}
		}, `trustroot "bad": spec.repository.mirrorFS: not a gzipped tar archive`},
		{"repository root of another repository", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys = nil
			s.Repository = &v1alpha1.Repository{Root: newTUFRepository(t, nil).root, MirrorFS: repo.mirrorFS(t)}
		}, `trustroot "bad": spec.repository.root, mirrorFS: `},
		{"repository without the target", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys = nil
			s.Repository = &v1alpha1.Repository{Root: repo.root, MirrorFS: repo.mirrorFS(t), TrustedRootTarget: "other.json"}
		}, `trustroot "bad": spec.repository.root, mirrorFS: getting info for target "other.json"`},
		{"target not a trusted root", func(s *v1alpha1.TrustRootSpec) {
			s.SigstoreKeys = nil
			bad := newTUFRepository(t, []byte("{not json"))
			s.Repository = &v1alpha1.Repository{Root: bad.root, MirrorFS: bad.mirrorFS(t)}
		}, `trustroot "bad": spec.repository.root, mirrorFS: target trusted_root.json: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := sigstoreKeysOf(t, "bad", vs)
			tc.mutate(&tr.Spec)
			got, err := LoadTrustRoot(tr, TrustRootOptions{})
			if err == nil {
				t.Fatalf("LoadTrustRoot = %+v, want an error containing %q", got, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\ndoes not contain %q", err, tc.want)
			}
		})
	}
}

// An offline TUF repository (spec.repository) and a TUF mirror
// (spec.remote, here on a loopback port) deliver the trusted root their
// targets hold: the same material as the keys inline, and signatures verify
// against it.
func TestTrustRootFromTUF(t *testing.T) {
	f := newKeylessImages(t)
	vs, img := f.vs, f.legacy
	inline := mustLoadTrustRoot(t, sigstoreKeysOf(t, "tuf", vs), TrustRootOptions{})
	trustedRootJSON, err := inline.Material.(*root.TrustedRoot).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	repo := newTUFRepository(t, trustedRootJSON)

	var requests []string
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests = append(requests, r.URL.Path)
		if b, ok := repo.files[strings.TrimPrefix(r.URL.Path, "/")]; ok {
			_, _ = w.Write(b)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(mirror.Close)
	cache := t.TempDir()

	for _, tc := range []struct {
		name string
		spec v1alpha1.TrustRootSpec
		opts TrustRootOptions
	}{
		{"repository", v1alpha1.TrustRootSpec{Repository: &v1alpha1.Repository{Root: repo.root, MirrorFS: repo.mirrorFS(t)}}, TrustRootOptions{}},
		{"remote", v1alpha1.TrustRootSpec{Remote: &v1alpha1.Remote{Root: repo.root, Mirror: mirror.URL}}, TrustRootOptions{CacheDir: cache}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := mustLoadTrustRoot(t, &v1alpha1.TrustRoot{ObjectMeta: metav1.ObjectMeta{Name: "tuf"}, Spec: tc.spec}, tc.opts)
			spec := keylessSpec(vs, FormatLegacy, Identity{Issuer: ciIssuer, Subject: ciSubject})
			spec.Keyless.TrustRoot = tr
			a := mustCompile(t, spec)
			spec.Keyless.TrustRoot = inline
			if b := mustCompile(t, spec); a.Fingerprint() != b.Fingerprint() {
				t.Error("the root from TUF and the same keys inline give different fingerprints")
			}
			if _, err := New(Options{}).Verify(context.Background(), a, Request{Image: img.String()}); err != nil {
				t.Errorf("want a pass: %v", err)
			}
		})
	}
	if len(requests) == 0 {
		t.Error("the remote TrustRoot never asked its mirror")
	}
	if entries, _ := os.ReadDir(cache); len(entries) == 0 {
		t.Errorf("nothing cached in %s", cache)
	}
	// A custom targets directory is honoured.
	moved := map[string][]byte{}
	for p, b := range repo.files {
		moved[strings.Replace(p, "targets/", "roots/", 1)] = b
	}
	custom := &tufRepository{root: repo.root, files: moved}
	mustLoadTrustRoot(t, &v1alpha1.TrustRoot{ObjectMeta: metav1.ObjectMeta{Name: "tuf"}, Spec: v1alpha1.TrustRootSpec{
		Repository: &v1alpha1.Repository{Root: repo.root, MirrorFS: custom.mirrorFS(t), Targets: "roots"}}}, TrustRootOptions{})
}

// tufRepository is a TUF repository with consistent snapshots whose one
// target, trusted_root.json, holds the given bytes (none when nil), signed
// by one fresh ed25519 key for every role.
type tufRepository struct {
	root  []byte            // 1.root.json
	files map[string][]byte // path below the repository's top -> content
}

func newTUFRepository(t testing.TB, trustedRoot []byte) *tufRepository {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	key, err := tufmetadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Now().AddDate(1, 0, 0).UTC()
	rootMD := tufmetadata.Root(expires)
	for _, role := range []string{tufmetadata.ROOT, tufmetadata.TARGETS, tufmetadata.SNAPSHOT, tufmetadata.TIMESTAMP} {
		if err := rootMD.Signed.AddKey(key, role); err != nil {
			t.Fatal(err)
		}
	}
	repo := &tufRepository{files: map[string][]byte{}}
	targets := tufmetadata.Targets(expires)
	if trustedRoot != nil {
		tf, err := tufmetadata.TargetFile().FromBytes("trusted_root.json", trustedRoot, "sha256")
		if err != nil {
			t.Fatal(err)
		}
		targets.Signed.Targets["trusted_root.json"] = tf
		repo.files["targets/"+hex.EncodeToString(tf.Hashes["sha256"])+".trusted_root.json"] = trustedRoot
	}
	snapshot := tufmetadata.Snapshot(expires)
	snapshot.Signed.Meta["targets.json"] = tufmetadata.MetaFile(1)
	timestamp := tufmetadata.Timestamp(expires)
	timestamp.Signed.Meta["snapshot.json"] = tufmetadata.MetaFile(1)
	write := func(name string, sign func(signature.Signer) (*tufmetadata.Signature, error), bytesOf func(bool) ([]byte, error)) {
		if _, err := sign(signer); err != nil {
			t.Fatal(err)
		}
		b, err := bytesOf(false)
		if err != nil {
			t.Fatal(err)
		}
		repo.files[name] = b
	}
	write("1.root.json", rootMD.Sign, rootMD.ToBytes)
	write("1.targets.json", targets.Sign, targets.ToBytes)
	write("1.snapshot.json", snapshot.Sign, snapshot.ToBytes)
	write("timestamp.json", timestamp.Sign, timestamp.ToBytes)
	repo.root = repo.files["1.root.json"]
	return repo
}

// mirrorFS is the repository as TrustRoot.spec.repository.mirrorFS holds
// it: a gzipped tar with the files below repository/.
func (r *tufRepository) mirrorFS(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for p, b := range r.files {
		name := filepath.ToSlash(filepath.Join("repository", p))
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unreachable is a TUF fetcher for a mirror that cannot be reached.
type unreachable struct{ asked *int }

func (u unreachable) DownloadFile(url string, _ int64, _ time.Duration) ([]byte, error) {
	*u.asked++
	return nil, fmt.Errorf("dial %s: connection refused", url)
}

// Without its mirror the public-good root does not load: a clear error, and
// no trusted material that a keyless authority could pass with. The test
// never touches the network: the fetcher stands in for the mirror.
func TestPublicGoodTrustRootUnreachable(t *testing.T) {
	asked := 0
	tr, err := PublicGoodTrustRoot(TrustRootOptions{Fetcher: unreachable{&asked}})
	if err == nil || tr != nil {
		t.Fatalf("PublicGoodTrustRoot = %+v, %v; want an error", tr, err)
	}
	want := "the public-good Sigstore trust root (TUF mirror https://tuf-repo-cdn.sigstore.dev): "
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q, want %q and the cause", err, want)
	}
	if asked == 0 {
		t.Error("the fetcher was never asked: the error does not come from the mirror")
	}
}

// BenchmarkLoadTrustRoot: the cost of loading a TrustRoot from keys inline
// and from an offline TUF repository (unpack, TUF checks, parse).
func BenchmarkLoadTrustRoot(b *testing.B) {
	vs := newVirtualSigstore(b)
	keys := sigstoreKeysOf(b, "bench", vs)
	inline := mustLoadTrustRoot(b, keys, TrustRootOptions{})
	trustedRootJSON, err := inline.Material.(*root.TrustedRoot).MarshalJSON()
	if err != nil {
		b.Fatal(err)
	}
	repo := newTUFRepository(b, trustedRootJSON)
	offline := &v1alpha1.TrustRoot{ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: v1alpha1.TrustRootSpec{Repository: &v1alpha1.Repository{Root: repo.root, MirrorFS: repo.mirrorFS(b)}}}
	for name, tr := range map[string]*v1alpha1.TrustRoot{"sigstoreKeys": keys, "repository": offline} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := LoadTrustRoot(tr, TrustRootOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
