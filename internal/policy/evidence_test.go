package policy

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// ctlog and rfc3161timestamp judged by Set.Decide with the real verifier:
// signatures by a key and by a VirtualSigstore certificate, with a log
// entry or a timestamp of the TrustRoot ci-root (a VirtualSigstore) or of
// other-log (another one); TrustRoots the policy names but that do not
// exist make the policy not ready and its results error.
func TestDecideSignaturesEvidence(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	vs, other := verifytest.NewVirtualSigstore(t), verifytest.NewVirtualSigstore(t)
	key, pub := verifytest.KeyPair(t)
	push := func(repo string, sign func(name.Digest)) name.Digest {
		d := reg.PushImage(t, repo)
		sign(d)
		return d
	}
	keyLegacy := func(ev verifytest.Evidence) func(name.Digest) {
		return func(d name.Digest) { verifytest.SignKeyLegacy(t, key, d, ev) }
	}
	keyless := func(ev verifytest.Evidence) func(name.Digest) {
		return func(d name.Digest) { verifytest.SignKeylessLegacyWith(t, vs, d, sigSubject, sigIssuer, ev) }
	}
	var (
		keyPlain           = push("key/plain", keyLegacy(verifytest.Evidence{}))
		keyLogged          = push("key/logged", keyLegacy(verifytest.Evidence{Log: vs}))
		keyTimestamped     = push("key/timestamped", keyLegacy(verifytest.Evidence{TSA: vs}))
		keyBundleLogged    = push("key/bundle-logged", func(d name.Digest) { verifytest.SignKeyBundle(t, key, d, verifytest.Evidence{Log: vs}) })
		keylessOtherLog    = push("keyless/other-log", keyless(verifytest.Evidence{Log: other}))
		keylessTimestamped = push("keyless/timestamped", keyless(verifytest.Evidence{Log: vs, TSA: vs}))
	)
	roots := map[string]*verify.TrustRoot{"ci-root": {Name: "ci-root", Material: vs}, "other-log": {Name: "other-log", Material: other},
		"empty": {Name: "empty", Material: &root.BaseTrustedMaterial{}}}
	c := Compiler{TrustRoot: func(name string) (*verify.TrustRoot, error) {
		if tr, ok := roots[name]; ok {
			return tr, nil
		}
		return nil, fmt.Errorf("trustroot %q not found", name)
	}}
	withCTLog := func(a v1beta1.Authority, ref string) v1beta1.Authority {
		a.CTLog = &v1beta1.TLog{URL: "https://rekor.example", TrustRootRef: ref}
		return a
	}
	withTSA := func(a v1beta1.Authority, ref string) v1beta1.Authority {
		a.RFC3161Timestamp = &v1beta1.RFC3161Timestamp{TrustRootRef: ref}
		return a
	}
	bundle := keyAuth(pub)
	bundle.SignatureFormat = "bundle"
	ci := keylessAuth("ci-root", v1beta1.Identity{Issuer: sigIssuer, Subject: sigSubject})
	keyFailed := func(d name.Digest) string {
		return "signature key validation failed for authority release-key for " + d.String() + ": no matching signatures: "
	}
	vf := Verification{Verifier: verify.New(verify.Options{})}
	for _, tc := range []struct {
		name    string
		image   name.Digest
		auth    v1beta1.Authority
		want    string
		message string // the result's message contains it
	}{
		{"key, ctlog: an entry of its log", keyLogged, withCTLog(keyAuth(pub), "ci-root"), ResultPass, ""},
		{"key, ctlog: no entry", keyPlain, withCTLog(keyAuth(pub), "ci-root"), ResultFail,
			keyFailed(keyPlain) + "offline verification failed: the signature carries no transparency log entry"},
		{"key, ctlog of another log", keyLogged, withCTLog(keyAuth(pub), "other-log"), ResultFail,
			keyFailed(keyLogged) + "transparency log entry of an unknown log"},
		{"key bundle, ctlog: an entry of its log", keyBundleLogged, withCTLog(bundle, "ci-root"), ResultPass, ""},
		{"key, rfc3161timestamp: a timestamp of its TSA", keyTimestamped, withTSA(keyAuth(pub), "ci-root"), ResultPass, ""},
		{"key, rfc3161timestamp: no timestamp", keyLogged, withTSA(keyAuth(pub), "ci-root"), ResultFail,
			keyFailed(keyLogged) + "the signature carries no RFC 3161 timestamp"},
		{"key, rfc3161timestamp of another TSA", keyTimestamped, withTSA(keyAuth(pub), "other-log"), ResultFail,
			"threshold not met for verified signed timestamps"},
		{"keyless, ctlog names the log's TrustRoot", keylessOtherLog, withCTLog(ci, "other-log"), ResultPass, ""},
		{"keyless, an entry of a log the keyless TrustRoot does not hold", keylessOtherLog, ci, ResultFail,
			`signature keyless validation failed for authority ci for ` + keylessOtherLog.String() + `: no matching signatures: transparency log entry of an unknown log`},
		{"keyless, rfc3161timestamp", keylessTimestamped, withTSA(ci, "ci-root"), ResultPass, ""},
		{"keyless, rfc3161timestamp without trustRootRef: the keyless TrustRoot's TSAs", keylessTimestamped, withTSA(ci, ""), ResultPass, ""},
		{"keyless, rfc3161timestamp of another TSA", keylessTimestamped, withTSA(ci, "other-log"), ResultFail, "threshold not met for verified signed timestamps"},
		{"ctlog TrustRoot missing", keyLogged, withCTLog(keyAuth(pub), "gone"), ResultError,
			`spec.authorities[0].ctlog.trustRootRef: trustroot "gone" not found`},
		{"rfc3161timestamp TrustRoot missing", keyTimestamped, withTSA(keyAuth(pub), "gone"), ResultError,
			`spec.authorities[0].rfc3161timestamp.trustRootRef: trustroot "gone" not found`},
		{"ctlog TrustRoot without log keys", keyLogged, withCTLog(keyAuth(pub), "empty"), ResultError,
			`spec.authorities[0].ctlog.trustRootRef: trustroot "empty" holds no transparency log keys (tLogs)`},
		{"key, ctlog without trustRootRef, no public-good root here", keyLogged, withCTLog(keyAuth(pub), ""), ResultError,
			"the public-good Sigstore trust root is not available here; name a TrustRoot in ctlog.trustRootRef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cip := newCIP("signed", withAuthorities(tc.auth))
			expectResult(t, decideSigned(t, c, obj(t, podYAML(tc.image.String())), vf, cip), tc.want, tc.message)
		})
	}

	// A TrustRoot missing or of no use makes the policy not ready, naming the field.
	for _, tc := range []struct {
		field string
		auth  v1beta1.Authority
	}{
		{"spec.authorities[0].ctlog.trustRootRef", withCTLog(keyAuth(pub), "gone")},
		{"spec.authorities[0].rfc3161timestamp.trustRootRef", withTSA(ci, "gone")},
		{"spec.authorities[0].ctlog.trustRootRef", withCTLog(keyAuth(pub), "empty")},
		{"spec.authorities[0].rfc3161timestamp.trustRootRef", withTSA(keyAuth(pub), "empty")},
	} {
		_, err := c.Compile(newCIP("signed", withAuthorities(tc.auth)))
		var ipe *InvalidPolicyError
		if !errors.As(err, &ipe) || ipe.Reason != ReasonReferenceUnavailable || ipe.Field != tc.field {
			t.Errorf("%s: compile error %v, want %s on %s", tc.field, err, ReasonReferenceUnavailable, tc.field)
		}
	}
}
