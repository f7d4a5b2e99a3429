package manager

// The signature verifier reads the trust roots that keyless authorities
// name (TrustRoot, cluster-scoped).
// +kubebuilder:rbac:groups=policy.sigstore.dev,resources=trustroots,verbs=get;list;watch
