package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TrustRoot holds the Sigstore roots of trust that keyless authorities and
// transparency logs verify against, with the schema of the Sigstore
// policy-controller. A ClusterImagePolicy names one in
// `keyless.trustRootRef`, `ctlog.trustRootRef` or
// `rfc3161timestamp.trustRootRef`; without a reference the public-good
// Sigstore root applies.
//
// Exactly one of `sigstoreKeys` (keys and certificates inline, "bring your own
// keys"), `repository` (an offline TUF repository, for air-gapped clusters)
// and `remote` (TUF over the network) is set.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Mirror",type=string,JSONPath=`.spec.remote.mirror`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrustRoot struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is where the trusted material comes from.
	// +required
	Spec TrustRootSpec `json:"spec"`
	// Status is what Vigil observed when it loaded the trust root.
	// +optional
	Status TrustRootStatus `json:"status,omitempty"`
}

// TrustRootSpec names the source of the trusted material: exactly one of
// remote, repository and sigstoreKeys.
//
// +kubebuilder:validation:XValidation:rule="[has(self.remote), has(self.repository), has(self.sigstoreKeys)].filter(x, x).size() == 1",message="exactly one of remote, repository and sigstoreKeys must be set"
type TrustRootSpec struct {
	// Remote is a TUF repository reached over the network: its initial root
	// and its mirror. Vigil refreshes the metadata and caches it on disk.
	// +optional
	Remote *Remote `json:"remote,omitempty"`

	// Repository is a complete TUF repository, serialized, for clusters
	// without network access to a mirror. Vigil makes no outbound connection
	// for it; keep it up to date by updating this object.
	// +optional
	Repository *Repository `json:"repository,omitempty"`

	// SigstoreKeys are the certificate authorities, transparency logs and
	// timestamp authorities of a Sigstore instance, inline.
	// +optional
	SigstoreKeys *SigstoreKeys `json:"sigstoreKeys,omitempty"`
}

// Remote is a TUF repository reached over the network.
type Remote struct {
	// Root is the initial trusted TUF root (the JSON of root.json),
	// base64-encoded.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=262144
	Root []byte `json:"root"`

	// Mirror is the repository's base URL, for example
	// https://tuf-repo-cdn.sigstore.dev.
	// +required
	// +kubebuilder:validation:Format=uri
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	Mirror string `json:"mirror"`

	// Targets is the directory of the targets below the mirror's root.
	// Default: targets.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Targets string `json:"targets,omitempty"`

	// TrustedRootTarget is the name of the target that holds the Sigstore
	// trusted root. Default: trusted_root.json.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	TrustedRootTarget string `json:"trustedRootTarget,omitempty"`
}

// Repository is a serialized TUF repository, for air-gapped clusters.
type Repository struct {
	// Root is the initial trusted TUF root (the JSON of root.json),
	// base64-encoded.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=262144
	Root []byte `json:"root"`

	// MirrorFS is the repository as a gzipped tar archive, base64-encoded:
	// a directory `repository/` holding the metadata (root.json,
	// timestamp.json, snapshot.json, targets.json and their versioned copies)
	// and the targets directory.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1048576
	MirrorFS []byte `json:"mirrorFS"`

	// Targets is the directory of the targets inside the repository.
	// Default: targets.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Targets string `json:"targets,omitempty"`

	// TrustedRootTarget is the name of the target that holds the Sigstore
	// trusted root. Default: trusted_root.json.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	TrustedRootTarget string `json:"trustedRootTarget,omitempty"`
}

// SigstoreKeys are the keys and certificates of one Sigstore instance.
//
// +kubebuilder:validation:XValidation:rule="has(self.certificateAuthorities) || has(self.timestampAuthorities)",message="at least one of certificateAuthorities and timestampAuthorities must be set"
type SigstoreKeys struct {
	// CertificateAuthorities are the trusted certificate authorities (for
	// example Fulcio) that issue signing certificates.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	CertificateAuthorities []CertificateAuthority `json:"certificateAuthorities,omitempty"`

	// TLogs are the transparency logs (Rekor) whose entries count.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	TLogs []TransparencyLogInstance `json:"tLogs,omitempty"`

	// CTLogs are the certificate transparency logs whose signed certificate
	// timestamps count.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	CTLogs []TransparencyLogInstance `json:"ctLogs,omitempty"`

	// TimeStampAuthorities are the trusted RFC 3161 timestamp authorities.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	TimeStampAuthorities []CertificateAuthority `json:"timestampAuthorities,omitempty"`
}

// CertificateAuthority is a certificate authority or a timestamp authority.
type CertificateAuthority struct {
	// Subject names the authority.
	// +required
	Subject DistinguishedName `json:"subject"`

	// URI is where the authority is reached.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	URI string `json:"uri"`

	// CertChain is the authority's certificate chain in PEM, base64-encoded:
	// the leaf (for a timestamp authority) or intermediate certificates
	// first, the self-signed root last.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=262144
	CertChain []byte `json:"certChain"`
}

// DistinguishedName names a certificate authority.
type DistinguishedName struct {
	// Organization is the organization (O) of the authority.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Organization string `json:"organization"`

	// CommonName is the common name (CN) of the authority.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	CommonName string `json:"commonName"`
}

// TransparencyLogInstance is a transparency log: where it is and the key
// that signs its entries.
type TransparencyLogInstance struct {
	// BaseURL is where the log is reached.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	BaseURL string `json:"baseURL"`

	// HashAlgorithm is the hash of the log's Merkle tree.
	// +required
	// +kubebuilder:validation:Enum=sha256;sha384;sha512
	HashAlgorithm string `json:"hashAlgorithm"`

	// PublicKey is the log's public key in PEM, base64-encoded.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	PublicKey []byte `json:"publicKey"`
}

// TrustRootStatus is what Vigil observed when it loaded the trust root.
type TrustRootStatus struct {
	// Conditions: Ready says whether the trusted material loaded, and why
	// not.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TrustRootList is a list of TrustRoot.
//
// +kubebuilder:object:root=true
type TrustRootList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrustRoot `json:"items"`
}
