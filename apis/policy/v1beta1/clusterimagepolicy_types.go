package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Modes of a ClusterImagePolicy.
const (
	// ModeEnforce denies admission of an object that fails the policy.
	ModeEnforce = "enforce"
	// ModeWarn admits the object with a warning.
	ModeWarn = "warn"
)

// Policy languages.
const (
	PolicyTypeCUE  = "cue"
	PolicyTypeRego = "rego"
)

// Static authority actions.
const (
	StaticActionPass = "pass"
	StaticActionFail = "fail"
)

// Condition types and reasons of a ClusterImagePolicy.
const (
	// ConditionReady is True when the policy compiled and is used for decisions.
	ConditionReady = "Ready"

	// ReasonCompiled: the policy compiled; pods are judged against it.
	ReasonCompiled = "Compiled"
	// ReasonInvalid: the spec breaks a validation rule of policy-controller.
	ReasonInvalid = "Invalid"
	// ReasonCompileError: the CUE or Rego body does not compile.
	ReasonCompileError = "CompileError"

	// ConditionEvaluated is True when the policy could be evaluated for
	// every running pod it matches, False when some pods have an error
	// result (status.pods.error): an authority or the body could not be
	// evaluated for them, or the policy is not Ready. Ready keeps saying only
	// whether the policy compiled.
	ConditionEvaluated = "Evaluated"

	// ReasonAllEvaluated: no running pod has an error result.
	ReasonAllEvaluated = "AllEvaluated"
	// ReasonEvaluationErrors: some running pods have an error result.
	ReasonEvaluationErrors = "EvaluationErrors"
)

// ClusterImagePolicySpec says which images and resources a policy covers, who
// must have signed them and what the admitted object must look like.
type ClusterImagePolicySpec struct {
	// Images are glob patterns matched against the fully qualified image
	// reference, tag dropped (for example index.docker.io/library/ubuntu@sha256:...).
	// `*` matches within one path segment, `**` across segments.
	// +required
	// +kubebuilder:validation:MinItems=1
	Images []ImagePattern `json:"images"`

	// Authorities that may vouch for a matching image; any one suffices.
	// A policy with no authority fails closed.
	// +optional
	Authorities []Authority `json:"authorities,omitempty"`

	// Policy is evaluated against the object once an authority matched.
	// +optional
	Policy *Policy `json:"policy,omitempty"`

	// Mode is enforce (a failure denies admission and is reported as fail) or
	// warn (a failure admits with a warning and is reported as warn).
	// +optional
	// +kubebuilder:default=enforce
	// +kubebuilder:validation:Enum=enforce;warn
	Mode string `json:"mode,omitempty"`

	// Match restricts the policy to these resources; empty means every
	// resource that carries a pod spec.
	// +optional
	Match []MatchResource `json:"match,omitempty"`
}

// ImagePattern is one image glob.
type ImagePattern struct {
	// Glob over the fully qualified image reference.
	// +required
	Glob string `json:"glob"`
}

// MatchResource selects resources by group, version, resource and labels.
type MatchResource struct {
	// Group of the resource; empty for the core group.
	// +optional
	Group string `json:"group,omitempty"`
	// Version of the resource, or "*" for any.
	// +optional
	Version string `json:"version,omitempty"`
	// Resource is the plural resource name, for example pods or deployments.
	// +optional
	Resource string `json:"resource,omitempty"`
	// Selector over the object's own labels (not its pod template's).
	// +optional
	ResourceSelector *metav1.LabelSelector `json:"selector,omitempty"`
}

// Authority is one way an image can be vouched for: exactly one of key,
// keyless or static.
type Authority struct {
	// Name of the authority; defaults to authority-<index>.
	// +optional
	Name string `json:"name,omitempty"`
	// Key verifies signatures with a public key.
	// +optional
	Key *KeyRef `json:"key,omitempty"`
	// Keyless verifies Fulcio-issued certificates against identities.
	// +optional
	Keyless *KeylessRef `json:"keyless,omitempty"`
	// Static passes or fails every matching image without verification.
	// +optional
	Static *StaticRef `json:"static,omitempty"`
	// Sources are other repositories where signatures are stored.
	// +optional
	Sources []Source `json:"source,omitempty"`
	// CTLog is the transparency log to verify against.
	// +optional
	CTLog *TLog `json:"ctlog,omitempty"`
	// Attestations that must be present and pass their policies.
	// +optional
	Attestations []Attestation `json:"attestations,omitempty"`
	// RFC3161Timestamp is the timestamp authority to verify against.
	// +optional
	RFC3161Timestamp *RFC3161Timestamp `json:"rfc3161timestamp,omitempty"`
	// SignatureFormat is legacy (default) or bundle.
	// +optional
	SignatureFormat string `json:"signatureFormat,omitempty"`
}

// KeyRef names a public key: exactly one of data, kms or secretRef.
type KeyRef struct {
	// SecretRef to a Secret in the controller's namespace holding one PEM public key.
	// +optional
	SecretRef *corev1.SecretReference `json:"secretRef,omitempty"`
	// Data is an inline PEM public key.
	// +optional
	Data string `json:"data,omitempty"`
	// KMS is a key URI: awskms://, azurekms://, hashivault:// or gcpkms://.
	// +optional
	KMS string `json:"kms,omitempty"`
	// HashAlgorithm of the signature: sha224, sha256 (default), sha384 or sha512.
	// +optional
	HashAlgorithm string `json:"hashAlgorithm,omitempty"`
}

// KeylessRef verifies keyless signatures.
type KeylessRef struct {
	// URL of the Fulcio instance.
	// +optional
	URL string `json:"url,omitempty"`
	// Identities of which at least one must match the certificate.
	// +optional
	Identities []Identity `json:"identities,omitempty"`
	// CACert is the root certificate of the issuer.
	// +optional
	CACert *KeyRef `json:"ca-cert,omitempty"`
	// TrustRootRef names a TrustRoot object.
	// +optional
	TrustRootRef string `json:"trustRootRef,omitempty"`
	// InsecureIgnoreSCT skips the signed certificate timestamp check.
	// +optional
	InsecureIgnoreSCT *bool `json:"insecureIgnoreSCT,omitempty"`
}

// Identity is an issuer and subject, each exact or by regular expression.
type Identity struct {
	// Issuer of the certificate, exactly.
	// +optional
	Issuer string `json:"issuer,omitempty"`
	// Subject of the certificate, exactly.
	// +optional
	Subject string `json:"subject,omitempty"`
	// IssuerRegExp matches the issuer.
	// +optional
	IssuerRegExp string `json:"issuerRegExp,omitempty"`
	// SubjectRegExp matches the subject.
	// +optional
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
}

// StaticRef passes or fails every matching image.
type StaticRef struct {
	// Action is pass or fail.
	// +required
	// +kubebuilder:validation:Enum=pass;fail
	Action string `json:"action"`
	// Message is shown when the action is fail.
	// +optional
	Message string `json:"message,omitempty"`
}

// Source is a repository where signatures are stored.
type Source struct {
	// OCI repository of the signatures.
	// +optional
	OCI string `json:"oci,omitempty"`
	// SignaturePullSecrets in the workload's namespace for that repository.
	// +optional
	SignaturePullSecrets []corev1.LocalObjectReference `json:"signaturePullSecrets,omitempty"`
	// TagPrefix of the signature tags.
	// +optional
	TagPrefix *string `json:"tagPrefix,omitempty"`
}

// TLog is a transparency log.
type TLog struct {
	// URL of the log.
	// +optional
	URL string `json:"url,omitempty"`
	// TrustRootRef names a TrustRoot object.
	// +optional
	TrustRootRef string `json:"trustRootRef,omitempty"`
}

// RFC3161Timestamp is a timestamp authority.
type RFC3161Timestamp struct {
	// TrustRootRef names a TrustRoot object.
	// +optional
	TrustRootRef string `json:"trustRootRef,omitempty"`
}

// Attestation requires an attestation of a predicate type, optionally with a policy.
type Attestation struct {
	// Name of the attestation, used in messages.
	// +required
	Name string `json:"name"`
	// PredicateType, a URI (short names are deprecated).
	// +required
	PredicateType string `json:"predicateType"`
	// Policy the attestation must pass.
	// +optional
	Policy *Policy `json:"policy,omitempty"`
}

// Policy is CUE or Rego, given inline, from a ConfigMap or from an https URL.
// The include flags and fetchConfigFile apply to the policy of the
// ClusterImagePolicy, not to attestation policies.
type Policy struct {
	// Type is cue or rego.
	// +required
	// +kubebuilder:validation:Enum=cue;rego
	Type string `json:"type"`
	// Data is the inline policy.
	// +optional
	Data string `json:"data,omitempty"`
	// Remote fetches the policy from an https URL with a known sha256.
	// +optional
	Remote *RemotePolicy `json:"remote,omitempty"`
	// ConfigMapRef reads the policy from a ConfigMap in the controller's namespace.
	// +optional
	ConfigMapRef *ConfigMapReference `json:"configMapRef,omitempty"`
	// FetchConfigFile adds the image's OCI config file to the input as `config`.
	// +optional
	FetchConfigFile *bool `json:"fetchConfigFile,omitempty"`
	// IncludeSpec adds the object's spec to the input as `spec`.
	// +optional
	IncludeSpec *bool `json:"includeSpec,omitempty"`
	// IncludeObjectMeta adds the object's metadata to the input as `metadata`.
	// +optional
	IncludeObjectMeta *bool `json:"includeObjectMeta,omitempty"`
	// IncludeTypeMeta adds kind and apiVersion to the input as `typemeta`.
	// +optional
	IncludeTypeMeta *bool `json:"includeTypeMeta,omitempty"`
}

// RemotePolicy is a policy fetched over https.
type RemotePolicy struct {
	// URL of the policy; https only.
	// +required
	URL string `json:"url"`
	// Sha256sum of the policy body, hex encoded.
	// +required
	Sha256sum string `json:"sha256sum"`
}

// ConfigMapReference names a key of a ConfigMap.
type ConfigMapReference struct {
	// Name of the ConfigMap.
	// +required
	Name string `json:"name"`
	// Namespace of the ConfigMap; policy-controller reads only its own namespace.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Key in the ConfigMap holding the policy.
	// +required
	Key string `json:"key"`
}

// ClusterImagePolicyStatus is what Vigil observed of the policy.
type ClusterImagePolicyStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready says whether the policy compiled and is in use;
	// Evaluated whether it could be evaluated for every running pod it
	// matches.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Pods counts running pods the policy matches, by their current result.
	// +optional
	Pods PodResultCounts `json:"pods,omitempty"`
}

// PodResultCounts counts pods per result.
type PodResultCounts struct {
	// Pass: pods that satisfy the policy.
	Pass int `json:"pass"`
	// Fail: pods an enforce-mode policy would deny now.
	Fail int `json:"fail"`
	// Warn: pods a warn-mode policy warns about.
	Warn int `json:"warn"`
	// Error: pods the policy could not be evaluated for.
	Error int `json:"error"`
}

// ClusterImagePolicy says which images may run and what the objects that run
// them must look like; the schema of the Sigstore policy-controller.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cip
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Pass",type=integer,JSONPath=`.status.pods.pass`
// +kubebuilder:printcolumn:name="Fail",type=integer,JSONPath=`.status.pods.fail`
// +kubebuilder:printcolumn:name="Warn",type=integer,JSONPath=`.status.pods.warn`
// +kubebuilder:printcolumn:name="Error",type=integer,JSONPath=`.status.pods.error`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterImagePolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy.
	// +required
	Spec ClusterImagePolicySpec `json:"spec"`
	// Status is what Vigil observed.
	// +optional
	Status ClusterImagePolicyStatus `json:"status,omitempty"`
}

// ClusterImagePolicyList is a list of ClusterImagePolicy.
//
// +kubebuilder:object:root=true
type ClusterImagePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterImagePolicy `json:"items"`
}
