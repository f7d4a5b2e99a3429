package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/protobuf/encoding/protojson"

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

func cosignBinary(t testing.TB) string { return verifytest.CosignBinary(t) }

func cosignKey(t testing.TB, cosign string) (string, []byte) { return verifytest.CosignKey(t, cosign) }

func cosignSign(t testing.TB, cosign, key string, d name.Digest, format SignatureFormat, env ...string) {
	verifytest.CosignSign(t, cosign, key, d, format == FormatBundle, env...)
}

func signKeylessLegacy(t testing.TB, vs *ca.VirtualSigstore, d name.Digest, subject, issuer string) {
	verifytest.SignKeylessLegacy(t, vs, d, subject, issuer)
}

// signKeylessBundle attests d with a VirtualSigstore certificate, the way
// cosign v3 signs: a DSSE envelope of an in-toto statement of type
// https://sigstore.dev/cosign/sign/v1 in a v0.3 bundle, attached as a referrer.
func signKeylessBundle(t testing.TB, vs *ca.VirtualSigstore, d name.Digest, subject, issuer, predicateType string) {
	t.Helper()
	statement := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":%q,"digest":{"sha256":%q}}],"predicateType":%q,"predicate":{}}`,
		d.Context().Name(), strings.TrimPrefix(d.DigestStr(), "sha256:"), predicateType)
	e, err := vs.AttestAtTime(subject, issuer, []byte(statement), time.Now().Add(5*time.Minute), true)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	tss, _ := e.Timestamps()
	env := sc.EnvelopeContent().RawEnvelope()
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	tle := entries[0].TransparencyLogEntry()
	_, set := verifytest.InclusionPromise(t, vs, tle)
	tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	var ts []*protocommon.RFC3161SignedTimestamp
	for _, t := range tss {
		ts = append(ts, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: t})
	}
	pb := &protobundle.Bundle{
		MediaType: bundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
			TlogEntries:               []*protorekor.TransparencyLogEntry{tle},
			TimestampVerificationData: &protobundle.TimestampVerificationData{Rfc3161Timestamps: ts},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	attachReferrer(t, d, d.Context(), raw)
}

// attachReferrer pushes a bundle as an OCI 1.1 referrer of d into repo, as
// cosign does: an empty config, one bundle layer, artifactType and subject.
func attachReferrer(t testing.TB, d name.Digest, repo name.Repository, bundleJSON []byte, opts ...remote.Option) {
	t.Helper()
	subject, err := remote.Head(d, opts...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := static.NewLayer([]byte("{}"), emptyConfigType)
	layer := static.NewLayer(bundleJSON, bundleMediaType)
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			t.Fatal(err)
		}
	}
	desc := func(l v1.Layer) map[string]any {
		dg, _ := l.Digest()
		sz, _ := l.Size()
		mt, _ := l.MediaType()
		return map[string]any{"mediaType": mt, "digest": dg.String(), "size": sz}
	}
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIManifestSchema1, "artifactType": bundleMediaType,
		"config": desc(cfg), "layers": []any{desc(layer)},
		"subject": map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest.String(), "size": subject.Size},
	})
	sum := sha256.Sum256(m)
	if err := remote.Put(repo.Digest("sha256:"+hex.EncodeToString(sum[:])), rawManifest(m), opts...); err != nil {
		t.Fatal(err)
	}
}

type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

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
