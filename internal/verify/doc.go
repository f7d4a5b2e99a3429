// Package verify fetches signatures from OCI registries and verifies them
// against compiled key and keyless authorities, with the semantics of the
// Sigstore policy-controller.
//
// It resolves tags to digests (HEAD, then GET), reads legacy cosign `.sig`
// tags and sigstore bundles attached as OCI 1.1 referrers, verifies key
// signatures offline and keyless signatures with sigstore-go against a
// trust root, and caches verdicts by image digest and a fingerprint of the
// compiled authority. Registry traffic goes through a global and a
// per-registry rate limit in which admission requests go before background
// re-verification.
//
// The package imports neither controller-runtime nor the policy, admission
// or controller packages: callers hand it compiled authorities and
// keychains, and read metrics through the Observer they supply.
package verify
