// Package verify fetches signatures from OCI registries and verifies them
// against compiled key and keyless authorities, with the semantics of the
// Sigstore policy-controller.
//
// It resolves tags to digests (HEAD, then GET), reads legacy cosign `.sig`
// tags and sigstore bundles attached as OCI 1.1 referrers, verifies key
// signatures offline and keyless signatures with sigstore-go against a
// trust root (with ctlog, a Rekor entry that each signature carries,
// checked offline against a trust root's log keys; with rfc3161timestamp,
// a timestamp of a trust root's TSA), and caches verdicts by image digest
// and a fingerprint of the compiled authority. Registry traffic goes through a global and a
// per-registry rate limit in which admission requests go before background
// re-verification.
//
// It also loads trust roots (TrustRoot objects: keys inline, an offline TUF
// repository or a TUF mirror; or the public-good Sigstore root) and builds
// registry keychains from a pod and from signaturePullSecrets with
// go-containerregistry's authn/kubernetes.
//
// The package imports neither controller-runtime's client nor the policy,
// admission or controller packages (only the API types of
// apis/policy/v1alpha1, and client-go's kubernetes.Interface for keychains):
// callers hand it compiled authorities, TrustRoot objects and a clientset,
// and read metrics through the Observer they supply.
package verify
