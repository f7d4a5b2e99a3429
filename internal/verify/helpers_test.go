package verify

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// testRegistry is verifytest's registry under the names this package's
// tests use.
type testRegistry struct {
	*verifytest.Registry
	host     string
	mode     *atomic.Value // "", "429", "nohead"
	requests *atomic.Int64
}

const testUser, testPassword = verifytest.User, verifytest.Password

func newTestRegistry(t testing.TB) *testRegistry {
	r := verifytest.NewRegistry(t)
	return &testRegistry{Registry: r, host: r.Host, mode: &r.Mode, requests: &r.Requests}
}

// pushImage pushes a random image and returns its digest reference.
func (r *testRegistry) pushImage(t testing.TB, repo string) name.Digest { return r.PushImage(t, repo) }

// keychain holds the registry's credentials.
func (r *testRegistry) keychain() authn.Keychain { return staticKeychain{} }

type staticKeychain = verifytest.Keychain

func cosignBinary(t testing.TB) string { return verifytest.FindCosign(t).Bin }

// cosignKey generates a key pair with the real cosign CLI and returns the
// private key path and the public key PEM.
func cosignKey(t testing.TB, cosign string) (string, []byte) {
	t.Helper()
	return (&verifytest.Cosign{Bin: cosign}).GenerateKey(t)
}

// testCosign is the cosign CLI logged in to the test registry.
func testCosign(bin string) *verifytest.Cosign {
	return &verifytest.Cosign{Bin: bin, Username: testUser, Password: testPassword}
}

// cosignSign signs d with the real cosign CLI, offline (no transparency
// log, no signing config). env adds variables (COSIGN_REPOSITORY).
func cosignSign(t testing.TB, cosign, key string, d name.Digest, format SignatureFormat, env ...string) {
	t.Helper()
	testCosign(cosign).Sign(t, key, d, format == FormatBundle, env...)
}

// cosignAttest attests d with the real cosign CLI, offline: `cosign attest
// --type typ` with the predicate marshalled to JSON.
func cosignAttest(t testing.TB, cosign, key string, d name.Digest, format SignatureFormat, typ string, predicate any) {
	t.Helper()
	testCosign(cosign).Attest(t, key, d, format == FormatBundle, typ, predicate)
}

// simpleSigningPayload is what cosign signs for an image.
func simpleSigningPayload(d name.Digest) []byte { return verifytest.SimpleSigningPayload(d) }

// signKeylessLegacy signs d keyless in cosign's legacy layout.
func signKeylessLegacy(t testing.TB, vs *ca.VirtualSigstore, d name.Digest, subject, issuer string) {
	t.Helper()
	verifytest.SignKeylessLegacy(t, vs, d, subject, issuer)
}

// signKeylessBundle attests d keyless as a bundle referrer with an empty
// predicate (of type cosignSignPredicate: a signature).
func signKeylessBundle(t testing.TB, vs *ca.VirtualSigstore, d name.Digest, subject, issuer, predicateType string) {
	t.Helper()
	verifytest.AttestKeylessBundle(t, vs, d, subject, issuer, predicateType, map[string]any{})
}

// attachReferrer pushes a bundle as an OCI 1.1 referrer of d into repo.
func attachReferrer(t testing.TB, d name.Digest, repo name.Repository, bundleJSON []byte, opts ...remote.Option) {
	t.Helper()
	verifytest.AttachBundle(t, d, repo, bundleJSON, opts...)
}

// copySignatures copies the .sig manifest of from to the signature tag of
// to in repo (with prefix), as a registry-side tamper or a relocation would.
func copySignatures(t testing.TB, from, to name.Digest, repo name.Repository, prefix string) {
	verifytest.CopySignatures(t, from, to, repo, prefix)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// countingObserver counts what the verifier reports.
type countingObserver struct {
	mu       sync.Mutex
	requests map[string]int // "host code"
	hits     int
	misses   int
	outcomes map[string]int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{requests: map[string]int{}, outcomes: map[string]int{}}
}

func (o *countingObserver) RegistryRequest(host string, code int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests[fmt.Sprintf("%s %d", host, code)]++
}

func (o *countingObserver) CacheLookup(hit bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if hit {
		o.hits++
	} else {
		o.misses++
	}
}

func (o *countingObserver) Verified(outcome string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outcomes[outcome]++
}

func (o *countingObserver) snapshot() (hits, misses int, outcomes map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]int{}
	for k, v := range o.outcomes {
		out[k] = v
	}
	return o.hits, o.misses, out
}

// mustCompile compiles an authority spec or fails the test.
func mustCompile(t testing.TB, spec AuthoritySpec) *Authority {
	t.Helper()
	a, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// expectReason checks an error's reason and that its message names the
// authority and the image.
func expectReason(t *testing.T, err error, want Reason, a *Authority, d name.Digest, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("verification passed, want %s", want)
	}
	if got := ReasonOf(err); got != want {
		t.Fatalf("reason %q, want %q: %v", got, want, err)
	}
	msg := err.Error()
	for _, s := range []string{"validation failed for authority " + a.Name(), d.String(), contains} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q does not contain %q", msg, s)
		}
	}
}

// hold makes the registry's requests wait until the returned func runs.
func (r *testRegistry) hold() (release func()) { return r.Hold() }

func mustDigest(t testing.TB, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newVirtualSigstore(t testing.TB) *ca.VirtualSigstore { return verifytest.NewVirtualSigstore(t) }

// keylessImages: a VirtualSigstore and two images it signed for ciSubject
// and ciIssuer, one in the legacy layout and one as a bundle.
type keylessImages struct {
	vs              *ca.VirtualSigstore
	reg             *testRegistry
	legacy, bundled name.Digest
}

func newKeylessImages(t testing.TB) *keylessImages {
	t.Helper()
	f := &keylessImages{vs: newVirtualSigstore(t), reg: newTestRegistry(t)}
	f.legacy = f.reg.pushImage(t, "keyless/legacy")
	signKeylessLegacy(t, f.vs, f.legacy, ciSubject, ciIssuer)
	f.bundled = f.reg.pushImage(t, "keyless/bundle")
	signKeylessBundle(t, f.vs, f.bundled, ciSubject, ciIssuer, cosignSignPredicate)
	return f
}
