package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

const (
	sigIssuer  = "https://token.actions.example.com"
	sigSubject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
)

// signedImages: images in an in-memory registry, signed by the real cosign
// CLI with a key (legacy and bundle layouts, beside the image or in another
// repository) and by a VirtualSigstore certificate (keyless).
type signedImages struct {
	reg                                 *verifytest.Registry
	pub, otherPub                       []byte
	legacy, bundled, unsigned, tampered name.Digest
	elsewhere, private, keyless         name.Digest
	sigs, privateSigs                   string
	vs                                  verify.TrustRoot
}

func newSignedImages(t *testing.T) *signedImages {
	t.Helper()
	cosign := verifytest.RegistryCosign(t)
	f := &signedImages{reg: verifytest.NewRegistry(t)}
	key, pub := cosign.GenerateKey(t)
	_, f.otherPub = cosign.GenerateKey(t)
	f.pub = pub
	f.sigs, f.privateSigs = f.reg.Host+"/sigs", f.reg.Host+"/private/sigs"
	f.legacy = f.reg.PushImage(t, "app/legacy")
	cosign.Sign(t, key, f.legacy, false)
	f.bundled = f.reg.PushImage(t, "app/bundle")
	cosign.Sign(t, key, f.bundled, true)
	f.unsigned = f.reg.PushImage(t, "app/unsigned")
	f.tampered = f.reg.PushImage(t, "app/tampered")
	verifytest.CopySignatures(t, f.legacy, f.tampered, f.tampered.Context(), "")
	f.elsewhere = f.reg.PushImage(t, "app/elsewhere")
	cosign.Sign(t, key, f.elsewhere, false, "COSIGN_REPOSITORY="+f.sigs)
	f.private = f.reg.PushImage(t, "app/private")
	cosign.Sign(t, key, f.private, false, "COSIGN_REPOSITORY="+f.privateSigs)
	vs := verifytest.NewVirtualSigstore(t)
	f.vs = verify.TrustRoot{Name: "ci-root", Material: vs}
	f.keyless = f.reg.PushImage(t, "app/keyless")
	verifytest.SignKeylessLegacy(t, vs, f.keyless, sigSubject, sigIssuer)
	return f
}

func keyAuth(pub []byte) v1beta1.Authority {
	return v1beta1.Authority{Name: "release-key", Key: &v1beta1.KeyRef{Data: string(pub)}}
}

func keylessAuth(trustRoot string, ids ...v1beta1.Identity) v1beta1.Authority {
	yes := true
	return v1beta1.Authority{Name: "ci", Keyless: &v1beta1.KeylessRef{URL: "https://fulcio.example",
		Identities: ids, TrustRootRef: trustRoot, InsecureIgnoreSCT: &yes}}
}

func withSource(a v1beta1.Authority, oci string, pullSecrets ...string) v1beta1.Authority {
	src := v1beta1.Source{OCI: oci}
	for _, s := range pullSecrets {
		src.SignaturePullSecrets = append(src.SignaturePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	a.Sources = []v1beta1.Source{src}
	return a
}

// compiler resolves the TrustRoot ci-root to the VirtualSigstore and the
// Secret release-key to the public key.
func (f *signedImages) compiler() Compiler {
	return Compiler{
		TrustRoot: func(name string) (*verify.TrustRoot, error) {
			if name == f.vs.Name {
				return &f.vs, nil
			}
			return nil, fmt.Errorf("trustroot %q not found", name)
		},
		Secret: func(name string) (*corev1.Secret, error) {
			switch name {
			case "release-key":
				return &corev1.Secret{Data: map[string][]byte{"cosign.pub": f.pub}}, nil
			case "two-keys":
				return &corev1.Secret{Data: map[string][]byte{"a": f.pub, "b": f.otherPub}}, nil
			}
			return nil, fmt.Errorf("secret %q not found", name)
		},
	}
}

// decideSigned compiles the policies with c (a broken one is kept as
// such) and decides obj with the verifier.
func decideSigned(t *testing.T, c Compiler, obj *Object, vf Verification, cips ...*v1beta1.ClusterImagePolicy) Decision {
	t.Helper()
	var compiled []*CompiledPolicy
	var broken []*BrokenPolicy
	for _, cip := range cips {
		p, err := c.Compile(cip)
		if err != nil {
			broken = append(broken, NewBrokenPolicy(cip, err))
			continue
		}
		compiled = append(compiled, p)
	}
	return NewSet(compiled, broken).Decide(context.Background(), obj, Options{Verification: vf})
}

// expectResult checks a decision's first result: its word, that its message
// contains message, and that admission follows it.
func expectResult(t *testing.T, d Decision, want, message string) {
	t.Helper()
	r := d.Results[0]
	if r.Result != want {
		t.Fatalf("result %s, want %s: %s", r.Result, want, r.Message)
	}
	if !strings.Contains(r.Message, message) {
		t.Errorf("message %q does not contain %q", r.Message, message)
	}
	if d.Allowed != (want == ResultPass || want == ResultWarn) {
		t.Errorf("Allowed = %v", d.Allowed)
	}
}

// Key and keyless authorities judged by Set.Decide with the real verifier
// against signatures written by cosign and by a VirtualSigstore.
func TestDecideSignatures(t *testing.T) {
	f := newSignedImages(t)
	v := verify.New(verify.Options{})
	vf := Verification{Verifier: v}
	signatureKC := func(names []string) authn.Keychain {
		if len(names) == 1 && names[0] == "regcred" {
			return verifytest.Keychain{}
		}
		return authn.DefaultKeychain
	}
	good := v1beta1.Identity{Issuer: sigIssuer, Subject: sigSubject}
	bundle := keyAuth(f.pub)
	bundle.SignatureFormat = "bundle"
	secretKey := v1beta1.Authority{Name: "release-key", Key: &v1beta1.KeyRef{SecretRef: &corev1.SecretReference{Name: "release-key"}}}
	for _, tc := range []struct {
		name    string
		image   name.Digest
		mode    string
		auths   []v1beta1.Authority
		vf      Verification
		want    string
		message string // the result's message contains it
	}{
		{"key legacy pass", f.legacy, "", []v1beta1.Authority{keyAuth(f.pub)}, vf, ResultPass, ""},
		{"key bundle pass", f.bundled, "", []v1beta1.Authority{bundle}, vf, ResultPass, ""},
		{"key from secretRef", f.legacy, "", []v1beta1.Authority{secretKey}, vf, ResultPass, ""},
		{"unsigned", f.unsigned, "", []v1beta1.Authority{keyAuth(f.pub)}, vf, ResultFail,
			"signature key validation failed for authority release-key for " + f.unsigned.String() + ": no signatures found"},
		{"unsigned in warn mode", f.unsigned, v1beta1.ModeWarn, []v1beta1.Authority{keyAuth(f.pub)}, vf, ResultWarn, "no signatures found"},
		{"wrong key", f.legacy, "", []v1beta1.Authority{keyAuth(f.otherPub)}, vf, ResultFail,
			"signature key validation failed for authority release-key for " + f.legacy.String() + ": no matching signatures"},
		{"any authority suffices", f.legacy, "", []v1beta1.Authority{keyAuth(f.otherPub), keyAuth(f.pub)}, vf, ResultPass, ""},
		{"tampered digest", f.tampered, "", []v1beta1.Authority{keyAuth(f.pub)}, vf, ResultFail, "signature payload is for digest"},
		{"signature elsewhere without source", f.elsewhere, "", []v1beta1.Authority{keyAuth(f.pub)}, vf, ResultFail, "no signatures found"},
		{"source.oci", f.elsewhere, "", []v1beta1.Authority{withSource(keyAuth(f.pub), f.sigs)}, vf, ResultPass, ""},
		{"signaturePullSecrets", f.private, "", []v1beta1.Authority{withSource(keyAuth(f.pub), f.privateSigs, "regcred")},
			Verification{Verifier: v, SignatureKeychain: signatureKC}, ResultPass, ""},
		{"signature registry denies access: an error, not a failure", f.private, "", []v1beta1.Authority{withSource(keyAuth(f.pub), f.privateSigs)},
			vf, ResultError, "access denied"},
		{"keyless pass", f.keyless, "", []v1beta1.Authority{keylessAuth("ci-root", good)}, vf, ResultPass, ""},
		{"keyless wrong identity", f.keyless, "", []v1beta1.Authority{keylessAuth("ci-root", v1beta1.Identity{Issuer: sigIssuer, Subject: "https://github.com/evil/x"})}, vf, ResultFail,
			"signature keyless validation failed for authority ci for " + f.keyless.String() + ": no matching signatures"},
		{"keyless trust root missing", f.keyless, "", []v1beta1.Authority{keylessAuth("gone", good)}, vf, ResultError,
			`spec.authorities[0].keyless.trustRootRef: trustroot "gone" not found`},
		{"keyless without trustRootRef, no public-good root here", f.keyless, "", []v1beta1.Authority{keylessAuth("", good)}, vf, ResultError,
			"the public-good Sigstore trust root is not available here"},
		{"secret with two entries", f.legacy, "", []v1beta1.Authority{{Key: &v1beta1.KeyRef{SecretRef: &corev1.SecretReference{Name: "two-keys"}}}}, vf, ResultError,
			`secret "two-keys" contains multiple data entries, only one is supported`},
		{"secret missing", f.legacy, "", []v1beta1.Authority{{Key: &v1beta1.KeyRef{SecretRef: &corev1.SecretReference{Name: "nope"}}}}, vf, ResultError,
			`spec.authorities[0].key.secretRef: secret "nope"`},
		{"KMS", f.legacy, "", []v1beta1.Authority{{Key: &v1beta1.KeyRef{KMS: "awskms:///alias/release"}}}, vf, ResultError,
			"key.kms awskms:///alias/release: KMS keys are not supported yet"},
		{"no verifier", f.legacy, "", []v1beta1.Authority{keyAuth(f.pub)}, Verification{}, ResultError, "no signature verifier is configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cip := newCIP("signed", withAuthorities(tc.auths...), withMode(tc.mode))
			d := decideSigned(t, f.compiler(), obj(t, podYAML(tc.image.String())), tc.vf, cip)
			expectResult(t, d, tc.want, tc.message)
			switch {
			case tc.want != ResultError && !d.RecheckAt.After(time.Now()):
				t.Errorf("RecheckAt %v: a %s rests on a verdict that expires", d.RecheckAt, tc.want)
			case tc.want == ResultFail && d.RecheckAt.After(time.Now().Add(10*time.Minute)):
				t.Errorf("RecheckAt %v: later than the failure's expiry (the verifier's FailTTL, 10m)", d.RecheckAt)
			}
		})
	}
}

// The body sees authorityMatches of each image: one pod with a signed and
// an unsigned image, a static authority that always passes, and a body
// that refuses images the key signed (plain CUE unification passes missing
// fields, so a closed struct is what can tell). Only the signed image
// fails, although the body's input is otherwise the same for both (the
// result cache must not answer for one with the other's result).
func TestDecideSignaturesAuthorityMatches(t *testing.T) {
	f := newSignedImages(t)
	vf := Verification{Verifier: verify.New(verify.Options{})}
	for _, tc := range []struct{ typ, src string }{
		{v1beta1.PolicyTypeCUE, `authorityMatches: close({"authority-0": _})`},
		{v1beta1.PolicyTypeRego, "package sigstore\nisCompliant { not input.authorityMatches[\"release-key\"] }"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			cip := newCIP("unsigned-only", withAuthorities(staticAuth("pass", ""), keyAuth(f.pub)), withBody(tc.typ, tc.src))
			for _, images := range [][]string{{f.legacy.String(), f.unsigned.String()}, {f.unsigned.String(), f.legacy.String()}} {
				d := decideSigned(t, Compiler{}, obj(t, podYAML(images...)), vf, cip)
				r := d.Results[0]
				if r.Result != ResultFail {
					t.Fatalf("result %s, want fail: %s", r.Result, r.Message)
				}
				signedAt := 0
				if images[1] == f.legacy.String() {
					signedAt = 1
				}
				want, unwanted := fmt.Sprintf("spec.containers[%d].image", signedAt), fmt.Sprintf("spec.containers[%d].image", 1-signedAt)
				if !strings.Contains(r.Message, want) || strings.Contains(r.Message, unwanted) {
					t.Errorf("message %q should name the signed image (%s) only", r.Message, want)
				}
			}
		})
	}
}

// Verification.Digests: the image judged is the digest that runs, not the
// reference in the spec.
func TestDecideSignaturesDigests(t *testing.T) {
	f := newSignedImages(t)
	vf := Verification{Verifier: verify.New(verify.Options{}),
		Digests: map[string]string{"spec.containers[0].image": f.unsigned.String()}}
	cip := newCIP("signed", withAuthorities(keyAuth(f.pub)))
	d := decideSigned(t, Compiler{}, obj(t, podYAML(f.legacy.String())), vf, cip)
	if r := d.Results[0]; r.Result != ResultFail || !strings.Contains(r.Message, f.unsigned.String()) {
		t.Fatalf("result %s %q: want a failure naming the running digest %s", r.Result, r.Message, f.unsigned)
	}
}

// A registry that answers 429 or is down gives an error result, never a
// pass nor a verdict.
func TestDecideSignaturesRegistryErrors(t *testing.T) {
	f := newSignedImages(t)
	cip := newCIP("signed", withAuthorities(keyAuth(f.pub)))
	f.reg.Mode.Store(verifytest.ModeRateLimited)
	d := decideSigned(t, Compiler{}, obj(t, podYAML(f.legacy.String())), Verification{Verifier: verify.New(verify.Options{})}, cip)
	if r := d.Results[0]; r.Result != ResultError || !strings.Contains(r.Message, "rate limited (429)") || d.Allowed {
		t.Fatalf("429: result %s %q allowed %v", r.Result, r.Message, d.Allowed)
	}
	// The verifier asks again after its first back-off (1s by default).
	if now := time.Now(); !d.RecheckAt.After(now) || d.RecheckAt.After(now.Add(2*time.Second)) {
		t.Errorf("429: RecheckAt %v, want the end of the first back-off, about a second from now", d.RecheckAt)
	}
	f.reg.Server.Close()
	d = decideSigned(t, Compiler{}, obj(t, podYAML(f.legacy.String())), Verification{Verifier: verify.New(verify.Options{})}, cip)
	if r := d.Results[0]; r.Result != ResultError || !strings.Contains(r.Message, "unreachable") || d.Allowed {
		t.Fatalf("registry down: result %s %q allowed %v", r.Result, r.Message, d.Allowed)
	}
}

// The public-good root is loaded at the first keyless evaluation; its
// failure is an error result naming the reason.
func TestDecidePublicGoodRootFailure(t *testing.T) {
	calls := 0
	c := Compiler{PublicGoodTrustRoot: func() (*verify.TrustRoot, error) {
		calls++
		return nil, errors.New("the public-good Sigstore trust root (TUF mirror https://tuf.example): unreachable")
	}}
	cip := newCIP("keyless", withAuthorities(keylessAuth("", v1beta1.Identity{Issuer: sigIssuer, Subject: sigSubject})))
	p, err := c.Compile(cip)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 0 {
		t.Fatalf("the root was loaded %d times at compile time, want at first use", calls)
	}
	d := NewSet([]*CompiledPolicy{p}, nil).Decide(context.Background(), obj(t, podYAML("registry.example/app@sha256:"+strings.Repeat("a", 64))),
		Options{Verification: Verification{Verifier: verify.New(verify.Options{})}})
	if r := d.Results[0]; r.Result != ResultError || !strings.Contains(r.Message, "TUF mirror https://tuf.example): unreachable") {
		t.Fatalf("result %s %q", r.Result, r.Message)
	}
}

// BenchmarkDecideSignatures is the cost of a decision whose key authority
// the verifier answers from its cache (the steady state of the verify path
// and of admission for known digests), beside the same pod under a static
// authority.
func BenchmarkDecideSignatures(b *testing.B) {
	cosign := verifytest.RegistryCosign(b)
	reg := verifytest.NewRegistry(b)
	key, pub := cosign.GenerateKey(b)
	img := reg.PushImage(b, "app/signed")
	cosign.Sign(b, key, img, false)
	vf := Verification{Verifier: verify.New(verify.Options{})}
	pod := obj(b, podYAML(img.String()))
	for _, tc := range []struct {
		name string
		cip  *v1beta1.ClusterImagePolicy
	}{
		{"static", newCIP("static")},
		{"key-cached", newCIP("signed", withAuthorities(keyAuth(pub)))},
		{"key-cached-with-cue-body", newCIP("signed", withAuthorities(keyAuth(pub)), withCUE(`authorityMatches: "release-key": signatures: [...{id: string}]`))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := Compile(tc.cip)
			if err != nil {
				b.Fatal(err)
			}
			set := NewSet([]*CompiledPolicy{p}, nil)
			opts := Options{Verification: vf}
			if d := set.Decide(context.Background(), pod, opts); !d.Allowed {
				b.Fatalf("denied: %s", d.DenyMessage)
			}
			b.ReportAllocs()
			for b.Loop() {
				set.Decide(context.Background(), pod, opts)
			}
		})
	}
}
