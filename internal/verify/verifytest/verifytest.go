// Package verifytest holds test fixtures for signature verification that
// several packages share: go-containerregistry's in-memory registry behind
// a switch (basic auth, 429), signatures written by the real cosign CLI,
// and keyless signatures from sigstore-go's VirtualSigstore in cosign's
// legacy layout. It is imported by tests only.
package verifytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"crypto/x509"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1alpha1"
)

// User and Password are the registry's credentials.
const User, Password = "reader", "s3cret"

// Mode values of Registry.Mode.
const (
	ModeNormal      = ""
	ModeRateLimited = "429"    // every request answers 429
	ModeNoHead      = "nohead" // HEAD of a manifest answers 405
)

// Registry is go-containerregistry's in-memory registry on a loopback
// port, behind a switch that demands basic auth for /v2/ and for
// repositories under private/, and can answer 429 or refuse HEAD.
type Registry struct {
	Server   *httptest.Server
	Host     string
	Mode     atomic.Value // a Mode* string
	Requests atomic.Int64
	gate     atomic.Pointer[chan struct{}] // when set, requests wait for it to close
}

// NewRegistry starts a registry that stops with the test.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{}
	r.Mode.Store(ModeNormal)
	inner := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.Requests.Add(1)
		if g := r.gate.Load(); g != nil {
			<-*g
		}
		user, pass, hasAuth := req.BasicAuth()
		authed := hasAuth && user == User && pass == Password
		switch {
		case r.Mode.Load() == ModeRateLimited:
			w.WriteHeader(http.StatusTooManyRequests)
			return
		case r.Mode.Load() == ModeNoHead && req.Method == http.MethodHead && strings.Contains(req.URL.Path, "/manifests/"):
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		case req.URL.Path == "/v2/" && !authed,
			strings.HasPrefix(req.URL.Path, "/v2/private/") && !authed:
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.Server.Close)
	r.Host = strings.TrimPrefix(r.Server.URL, "http://")
	return r
}

// PushImage pushes a random image to repo and returns its digest reference.
func (r *Registry) PushImage(t testing.TB, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	return r.Push(t, repo, img)
}

// Push pushes img to repo:latest and returns its digest reference.
func (r *Registry) Push(t testing.TB, repo string, img v1.Image) name.Digest {
	t.Helper()
	tag, err := name.NewTag(r.Host + "/" + repo + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithAuthFromKeychain(Keychain{})); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(d.String())
}

// Hold makes the registry's requests wait until the returned func runs.
func (r *Registry) Hold() (release func()) {
	g := make(chan struct{})
	r.gate.Store(&g)
	var once sync.Once
	return func() { once.Do(func() { close(g) }) }
}

// Keychain holds the registry's credentials.
type Keychain struct{}

// Resolve gives User and Password for every registry.
func (Keychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: User, Password: Password}), nil
}

// RegistryCosign is the real cosign CLI (FindCosign) logged in to a
// Registry (User, Password).
func RegistryCosign(t testing.TB) *Cosign {
	t.Helper()
	c := FindCosign(t)
	c.Username, c.Password = User, Password
	return c
}

// NewVirtualSigstore is sigstore-go's in-memory Fulcio, Rekor, CT log and TSA.
func NewVirtualSigstore(t testing.TB) *ca.VirtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// CopySignatures copies the .sig manifest of from to the signature tag of
// to in repo (with prefix), as a registry-side tamper or a relocation would.
func CopySignatures(t testing.TB, from, to name.Digest, repo name.Repository, prefix string) {
	t.Helper()
	src := from.Context().Tag(strings.Replace(from.DigestStr(), ":", "-", 1) + ".sig")
	img, err := remote.Image(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := repo.Tag(prefix + strings.Replace(to.DigestStr(), ":", "-", 1) + ".sig")
	if err := remote.Write(dst, img); err != nil {
		t.Fatal(err)
	}
}

// SigstoreKeysOf writes a VirtualSigstore's Fulcio chain, Rekor and CT log
// keys and TSA chain as a TrustRoot's sigstoreKeys, PEM as policy-controller
// holds them (intermediates or leaf first, the root last).
func SigstoreKeysOf(t testing.TB, name string, vs *ca.VirtualSigstore) *v1alpha1.TrustRoot {
	t.Helper()
	pemOf := func(certs ...*x509.Certificate) []byte {
		var b []byte
		for _, c := range certs {
			p, err := cryptoutils.MarshalCertificateToPEM(c)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, p...)
		}
		return b
	}
	logs := func(m map[string]*root.TransparencyLog, url string) []v1alpha1.TransparencyLogInstance {
		var out []v1alpha1.TransparencyLogInstance
		for _, l := range m {
			p, err := cryptoutils.MarshalPublicKeyToPEM(l.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v1alpha1.TransparencyLogInstance{BaseURL: url, HashAlgorithm: "sha256", PublicKey: p})
		}
		return out
	}
	fulcio := vs.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority)
	tsa := vs.TimestampingAuthorities()[0].(*root.SigstoreTimestampingAuthority)
	dn := v1alpha1.DistinguishedName{Organization: "example", CommonName: "virtual"}
	return &v1alpha1.TrustRoot{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.TrustRootSpec{SigstoreKeys: &v1alpha1.SigstoreKeys{
			CertificateAuthorities: []v1alpha1.CertificateAuthority{{Subject: dn, URI: "https://fulcio.example.com",
				CertChain: pemOf(append(append([]*x509.Certificate{}, fulcio.Intermediates...), fulcio.Root)...)}},
			TLogs:  logs(vs.RekorLogs(), "https://rekor.example.com"),
			CTLogs: logs(vs.CTLogs(), "https://ctfe.example.com"),
			TimeStampAuthorities: []v1alpha1.CertificateAuthority{{Subject: dn, URI: "https://tsa.example.com",
				CertChain: pemOf(append(append([]*x509.Certificate{tsa.Leaf}, tsa.Intermediates...), tsa.Root)...)}},
		}},
	}
}

// PublicKeyPEM is a new ECDSA P-256 public key in PEM, for a key authority
// whose signatures the test does not need.
func PublicKeyPEM(t testing.TB) []byte {
	t.Helper()
	_, pub := KeyPair(t)
	return pub
}

// KeyPair generates an ECDSA P-256 key and returns it with its public
// key's PEM.
func KeyPair(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k, publicKeyPEM(t, k)
}
