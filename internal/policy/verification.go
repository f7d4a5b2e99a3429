package policy

import (
	"context"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/vigil-dev/vigil/internal/verify"
)

// Verifier verifies one image against one key or keyless authority, its
// signatures or its attestations, and fetches images' config files.
// *verify.Verifier implements it; the webhook, the reconcilers and vigil
// test share one instance per process, so they never disagree. The decision
// does no I/O of its own: every registry request goes through it.
type Verifier interface {
	Verify(ctx context.Context, a *verify.Authority, req verify.Request) (*verify.Evidence, error)
	VerifyAttestations(ctx context.Context, a *verify.Authority, req verify.Request, predicateTypes ...string) (*verify.AttestationEvidence, error)
	ConfigFiles(ctx context.Context, image string, kc authn.Keychain, lane verify.Lane) (*verify.ConfigFiles, error)
}

var _ Verifier = (*verify.Verifier)(nil)

// Verification is what a decision needs to judge key and keyless
// authorities. The zero value has no verifier: such authorities give an
// error result that says so.
type Verification struct {
	// Verifier checks signatures; nil means none is configured.
	Verifier Verifier
	// Keychain gives credentials for the object's images: for a pod, its
	// namespace, service account and imagePullSecrets (authn/kubernetes);
	// nil means anonymous.
	Keychain authn.Keychain
	// SignatureKeychain gives credentials for an authority's
	// source.signaturePullSecrets (Secrets in the judged object's namespace,
	// as in policy-controller); nil means Keychain.
	SignatureKeychain func(secretNames []string) authn.Keychain
	// Lane is LaneAdmission for the webhook and LaneBackground for the
	// verify path.
	Lane verify.Lane
	// Refresh verifies a cached pass again once it is inside its refresh
	// window (verify.Request.Refresh): the verify path sets it, so that a
	// running pod is verified again before its pass expires.
	Refresh bool
	// Digests gives the digest that runs for an image, keyed by the image's
	// path as messages name it (spec.containers[0].image): the verify path
	// fills it from status.containerStatuses[].imageID. Images without an
	// entry are resolved by the verifier (a tag to its digest).
	Digests map[string]string
}
