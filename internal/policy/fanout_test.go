package policy

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// A policy change over many pods of few images, as the verify path judges
// them (issue 15): registry traffic follows distinct digests, not pods.
//
//	go test -run '^$' -bench BenchmarkPolicyChangeFanOut -benchtime=1x ./internal/policy/

// fanOut is images signed keyless (VirtualSigstore, cosign's legacy layout)
// in an in-memory registry, and replicas pods per image. Each pod names its
// image by tag, and its running digest comes from its imageID, as the verify
// path gives it (Verification.Digests).
type fanOut struct {
	reg      *verifytest.Registry
	compiler Compiler
	pods     []*Object
	digests  []map[string]string // per pod, spec.containers[0].image → digest
	verified atomic.Int64        // verifications that reached the registry
	refresh  bool                // judge as the verify path does (Verification.Refresh)
}

// fanOut is the verifier's Observer: it counts the verifications.
func (f *fanOut) RegistryRequest(string, int)              {}
func (f *fanOut) CacheLookup(bool)                         {}
func (f *fanOut) Verified(outcome string, _ time.Duration) { f.verified.Add(1) }

func newFanOut(tb testing.TB, images, replicas int) *fanOut {
	tb.Helper()
	f := &fanOut{reg: verifytest.NewRegistry(tb)}
	vs := verifytest.NewVirtualSigstore(tb)
	root := verify.TrustRoot{Name: "ci-root", Material: vs}
	f.compiler = Compiler{TrustRoot: func(n string) (*verify.TrustRoot, error) {
		if n == root.Name {
			return &root, nil
		}
		return nil, fmt.Errorf("trustroot %q not found", n)
	}}
	for i := range images {
		d := f.reg.PushImage(tb, fmt.Sprintf("team-%d/svc-%03d", i%7, i))
		verifytest.SignKeylessLegacy(tb, vs, d, sigSubject, sigIssuer)
		tag := d.Context().Tag("latest").String() // as PushImage tagged it
		// Replicas of one workload are queued together, so that several
		// workers ask for the same digest at once (singleflight).
		for r := range replicas {
			f.pods = append(f.pods, obj(tb, fanOutPod(i, r, tag)))
			f.digests = append(f.digests, map[string]string{"spec.containers[0].image": d.String()})
		}
	}
	return f
}

// fanOutPod is replica r of workload i, as JSON (DecodeObject's fast path).
func fanOutPod(i, r int, image string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"svc-%03d-7d9f8-%05d","namespace":"apps",`+
		`"labels":{"app":"svc-%03d"}},"spec":{"containers":[{"name":"app","image":%q}]}}`, i, r, i, image)
}

// policy is the signed-images policy at generation gen with the identities.
func (f *fanOut) policy(tb testing.TB, gen int64, body string, ids ...v1beta1.Identity) *Set {
	tb.Helper()
	opts := []func(*v1beta1.ClusterImagePolicySpec){withGlobs(f.reg.Host + "/**"), withAuthorities(keylessAuth("ci-root", ids...))}
	if body != "" {
		opts = append(opts, withCUE(body))
	}
	cip := newCIP("signed-images", opts...)
	cip.Generation = gen
	p, err := f.compiler.Compile(cip)
	if err != nil {
		tb.Fatal(err)
	}
	return NewSet([]*CompiledPolicy{p}, nil)
}

// fanOutPass is what judging every pod once cost.
type fanOutPass struct {
	requests, verifications, denied int64
	took                            time.Duration
}

// judge decides every pod with workers workers, as the pod reconciler's
// workers do after a policy change; withDigests false judges the pods as
// the webhook or a Pending pod gives them (tags only).
func (f *fanOut) judge(set *Set, v *verify.Verifier, workers int, withDigests bool) fanOutPass {
	reqs, vers := f.reg.Requests.Load(), f.verified.Load()
	var denied atomic.Int64
	next := atomic.Int64{}
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(f.pods) {
					return
				}
				vf := Verification{Verifier: v, Keychain: verifytest.Keychain{}, Lane: verify.LaneBackground, Refresh: f.refresh}
				if withDigests {
					vf.Digests = f.digests[i]
				}
				if d := set.Decide(context.Background(), f.pods[i], Options{Verification: vf}); !d.Allowed {
					if denied.Add(1) == 1 {
						fmt.Printf("fan-out: %s denied: %s\n", f.pods[i].Name, d.DenyMessage)
					}
				}
			}
		})
	}
	wg.Wait()
	return fanOutPass{requests: f.reg.Requests.Load() - reqs, verifications: f.verified.Load() - vers,
		denied: denied.Load(), took: time.Since(start)}
}

// fanOutVerifier is a verifier without rate limits: the passes measure
// the requests and the decisions, not the limiter (at the default 10
// requests per second to one registry, the limiter alone would pace them).
func (f *fanOut) verifier() *verify.Verifier {
	return verify.New(verify.Options{GlobalQPS: 1e9, GlobalBurst: 1 << 30, RegistryQPS: 1e9, RegistryBurst: 1 << 30, Observer: f})
}

// The passes of a policy change, in order: the policy first applied, its
// body edited (the authority unchanged: its fingerprint stands, the cache
// answers), an identity added (a new fingerprint: every digest verified
// again), and the same policy over pods without imageIDs (each judgement
// resolves its tag).
var (
	firstIdentity = v1beta1.Identity{Issuer: sigIssuer, Subject: sigSubject}
	addedIdentity = v1beta1.Identity{Issuer: sigIssuer, SubjectRegExp: `^https://github\.com/acme/.*$`}
)

const fanOutBody = `spec: containers: [...{name: string}]`

func (f *fanOut) passes(tb testing.TB, workers int) (first, body, identity, tags fanOutPass) {
	v := f.verifier()
	first = f.judge(f.policy(tb, 1, "", firstIdentity), v, workers, true)
	body = f.judge(f.policy(tb, 2, fanOutBody, firstIdentity), v, workers, true)
	changed := f.policy(tb, 3, fanOutBody, firstIdentity, addedIdentity)
	identity = f.judge(changed, v, workers, true)
	tags = f.judge(changed, v, workers, false)
	return first, body, identity, tags
}

// TestPolicyChangeFanOut counts the registry work of a policy change over
// 1,000 pods of 10 images through the real decision and verifier: one
// verification per digest and authority, whatever the number of pods.
func TestPolicyChangeFanOut(t *testing.T) {
	const images, replicas = 10, 100
	f := newFanOut(t, images, replicas)
	// What one verification of one digest asks the registry: one pod
	// judged with a verifier of its own.
	before := f.reg.Requests.Load()
	vf := Verification{Verifier: f.verifier(), Keychain: verifytest.Keychain{}, Digests: f.digests[0]}
	if d := f.policy(t, 1, "", firstIdentity).Decide(context.Background(), f.pods[0], Options{Verification: vf}); !d.Allowed {
		t.Fatalf("denied: %s", d.DenyMessage)
	}
	perVerification := f.reg.Requests.Load() - before
	if perVerification == 0 || f.verified.Swap(0) != 1 {
		t.Fatal("judging one pod made no verification")
	}

	first, body, identity, tags := f.passes(t, 4)
	for _, c := range []struct {
		name                    string
		got                     fanOutPass
		verifications, requests int64
	}{
		{"policy applied", first, images, images * perVerification},
		{"body edited, authority unchanged", body, 0, 0},
		{"identity added", identity, images, images * perVerification},
		// A pod without its imageID: every judgement resolves its tag (a
		// /v2/ ping and a HEAD); the verdicts come from the cache.
		{"pods without imageIDs", tags, 0, 2 * images * replicas},
	} {
		if c.got.denied != 0 {
			t.Errorf("%s: %d of %d pods denied", c.name, c.got.denied, len(f.pods))
		}
		if c.got.verifications != c.verifications || c.got.requests != c.requests {
			t.Errorf("%s: %d verifications and %d registry requests for %d pods of %d images, want %d and %d (%d per verification)",
				c.name, c.got.verifications, c.got.requests, len(f.pods), images, c.verifications, c.requests, perVerification)
		}
	}
}

// TestRefreshFanOut: the verify path judges a running pod again at its
// pass's refresh time, before the pass expires, and the first pod of each
// digest judged then verifies it again; the other pods of the digest find
// the renewed pass. So a refresh round over 1,000 pods of 10 images costs 10
// verifications, and the webhook never meets an expired pass of an image
// that runs.
func TestRefreshFanOut(t *testing.T) {
	const images, replicas = 10, 100
	f := newFanOut(t, images, replicas)
	f.refresh = true
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	v := verify.New(verify.Options{GlobalQPS: 1e9, GlobalBurst: 1 << 30, RegistryQPS: 1e9, RegistryBurst: 1 << 30,
		Observer: f, Now: clock, PassTTL: time.Hour})
	set := f.policy(t, 1, "", firstIdentity)
	recheckAt := func() time.Time {
		t.Helper()
		vf := Verification{Verifier: v, Keychain: verifytest.Keychain{}, Lane: verify.LaneBackground, Refresh: true, Digests: f.digests[0]}
		d := set.Decide(context.Background(), f.pods[0], Options{Verification: vf, Now: clock})
		if !d.Allowed {
			t.Fatalf("denied: %s", d.DenyMessage)
		}
		return d.RecheckAt
	}
	for _, step := range []struct {
		name          string
		advance       time.Duration
		refresh       bool
		verifications int64
		recheckIn     time.Duration // RecheckAt, from the clock after the step
	}{
		{"first judgement", 0, true, images, 54 * time.Minute},
		{"before the refresh window", 53 * time.Minute, true, 0, time.Minute},
		{"the webhook inside the window", 2 * time.Minute, false, 0, 0},
		{"the verify path inside the window", 0, true, images, 54 * time.Minute},
		{"again at once", 0, true, 0, 54 * time.Minute},
	} {
		now = now.Add(step.advance)
		f.refresh = step.refresh
		got := f.judge(set, v, 4, true)
		if got.denied != 0 || got.verifications != step.verifications {
			t.Errorf("%s: %d verifications, %d of %d pods denied; want %d verifications, none denied",
				step.name, got.verifications, got.denied, len(f.pods), step.verifications)
		}
		if step.recheckIn > 0 {
			if at := recheckAt(); !at.Equal(now.Add(step.recheckIn)) {
				t.Errorf("%s: RecheckAt %s after the clock, want %s", step.name, at.Sub(now), step.recheckIn)
			}
		}
	}
}

// BenchmarkPolicyChangeFanOut judges 10,000 pods of 100 images (100
// replicas each) through Set.Decide with the real verifier against an
// in-memory registry, with 4 workers as the pod reconciler: the policy
// applied, its body edited, an identity added (every digest verified
// again), and the pods without imageIDs. It reports the registry requests,
// the verifications and the decisions per second of each pass.
func BenchmarkPolicyChangeFanOut(b *testing.B) {
	const images, replicas, workers = 100, 100, 4
	f := newFanOut(b, images, replicas)
	var first, body, identity, tags fanOutPass
	for range b.N {
		first, body, identity, tags = f.passes(b, workers)
	}
	for _, p := range []struct {
		name string
		fanOutPass
	}{{"applied", first}, {"body", body}, {"identity", identity}, {"tags", tags}} {
		if p.denied != 0 {
			b.Errorf("%s: %d pods denied", p.name, p.denied)
		}
		b.ReportMetric(float64(p.requests), p.name+"-requests")
		b.ReportMetric(float64(p.verifications), p.name+"-verifications")
		b.ReportMetric(float64(len(f.pods))/p.took.Seconds(), p.name+"-decisions/s")
	}
	b.Logf("%d pods of %d images: %+v", len(f.pods), images, []fanOutPass{first, body, identity, tags})
}
