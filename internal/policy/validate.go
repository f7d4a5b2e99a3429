package policy

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

// ValidResourceNames are the resources a match entry may name: the
// pod-carrying kinds policy-controller's webhook admits.
var ValidResourceNames = []string{"cronjobs", "daemonsets", "deployments", "jobs", "pods", "replicasets", "statefulsets"}

var (
	// globChars is the character set policy-controller accepts in a glob.
	globChars = regexp.MustCompile(`^[a-zA-Z0-9-_:\/\*\.@]+$`)
	// awsKMS is the shape of an AWS KMS key reference.
	awsKMS = regexp.MustCompile(`^awskms://([^/]*)/([^/].*)$`)

	kmsPrefixes      = []string{"awskms://", "azurekms://", "hashivault://", "gcpkms://"}
	hashAlgorithms   = []string{"sha224", "sha256", "sha384", "sha512"}
	shortPredicates  = []string{"custom", "slsaprovenance", "spdx", "spdxjson", "cyclonedx", "link", "vuln"}
	staticExclusions = []string{"attestations", "ctlog", "rfc3161timestamp", "source"}
)

// validator checks a ClusterImagePolicy spec with policy-controller's rules.
type validator struct {
	// allowEmptyAuthorities is policy-controller's fail-on-empty-authorities=false.
	allowEmptyAuthorities bool
	// systemNamespace, when set, is the only namespace key.secretRef may name.
	systemNamespace string

	errs     fieldErrors
	warnings fieldErrors
}

func (v *validator) fail(e ...fieldError) { v.errs = v.errs.also(e...) }

func (v *validator) spec(s *v1beta1.ClusterImagePolicySpec) {
	const p = "spec"
	if len(s.Images) == 0 {
		v.fail(errMissingField(child(p, "images")))
	}
	for i, img := range s.Images {
		v.glob(index(child(p, "images"), i), img.Glob)
	}
	if len(s.Authorities) == 0 && !v.allowEmptyAuthorities {
		v.fail(errMissingField(child(p, "authorities")))
	}
	for i := range s.Authorities {
		v.authority(index(child(p, "authorities"), i), &s.Authorities[i])
	}
	if s.Policy != nil {
		// policy-controller reports these errors at spec.<field> (it forgets
		// the "policy" segment); Vigil names the real field, spec.policy.
		v.policy(child(p, "policy"), s.Policy, true)
	}
	if s.Mode != "" && s.Mode != v1beta1.ModeEnforce && s.Mode != v1beta1.ModeWarn {
		v.fail(errInvalidValue(s.Mode, child(p, "mode"), "unsupported mode"))
	}
	for i, m := range s.Match {
		v.match(index(child(p, "match"), i), m)
	}
}

func (v *validator) glob(p, g string) {
	field := child(p, "glob")
	switch {
	case g == "":
		v.fail(errMissingField(field))
	case !validGlobSyntax(g):
		v.fail(errInvalidValue(g, field, "glob is invalid: "+filepath.ErrBadPattern.Error()))
	case !globChars.MatchString(g):
		v.fail(errInvalidValue(g, field, fmt.Sprintf("glob is invalid: invalid glob %q", g)))
	}
}

func validGlobSyntax(g string) bool {
	_, err := filepath.Match(g, "")
	return err == nil
}

func (v *validator) match(p string, m v1beta1.MatchResource) {
	if m.Resource != "" && !slices.Contains(ValidResourceNames, m.Resource) {
		v.fail(errInvalidValue(m.Resource, child(p, "resource"), "unsupported resource name"))
	}
	if m.ResourceSelector == nil {
		return
	}
	if m.Group == "" && m.Version == "" && m.Resource == "" {
		v.fail(errInvalidValue("", child(p, "selector"), "selector requires a resource type to match the labels"))
	}
	if _, err := metav1.LabelSelectorAsSelector(m.ResourceSelector); err != nil {
		v.fail(errInvalidValue(m.ResourceSelector.String(), child(p, "selector"), err.Error()))
	}
}

func (v *validator) authority(p string, a *v1beta1.Authority) {
	kinds := []string{child(p, "key"), child(p, "keyless"), child(p, "static")}
	switch n := countSet(a.Key != nil, a.Keyless != nil, a.Static != nil); {
	case n == 0:
		v.fail(errMissingOneOf(kinds...))
		return
	case n > 1:
		v.fail(errMultipleOneOf(kinds...))
		return
	}
	switch {
	case a.Static != nil:
		v.static(p, a)
	case a.Key != nil:
		v.key(child(p, "key"), a.Key)
	case a.Keyless != nil:
		v.keyless(child(p, "keyless"), a.Keyless)
	}
	if len(a.Sources) > 1 {
		v.fail(errInvalidValue("source", child(p, "source"), "only single source is supported"))
	}
	for i, s := range a.Sources {
		v.source(index(child(p, "source"), i), s)
	}
	for i := range a.Attestations {
		// policy-controller names attestations without their index.
		v.attestation(child(p, "attestations"), &a.Attestations[i])
	}
}

func (v *validator) static(p string, a *v1beta1.Authority) {
	set := map[string]bool{
		"attestations":     len(a.Attestations) > 0,
		"ctlog":            a.CTLog != nil,
		"rfc3161timestamp": a.RFC3161Timestamp != nil,
		"source":           len(a.Sources) > 0,
	}
	for _, f := range staticExclusions {
		if set[f] {
			v.fail(errMultipleOneOf(child(p, f), child(p, "static")))
		}
	}
	action := child(child(p, "static"), "action")
	switch a.Static.Action {
	case "":
		v.fail(errMissingField(action))
	case v1beta1.StaticActionPass, v1beta1.StaticActionFail:
	default:
		v.fail(errInvalidValue(a.Static.Action, action, "unsupported action"))
	}
}

func (v *validator) key(p string, k *v1beta1.KeyRef) {
	fields := []string{child(p, "data"), child(p, "kms"), child(p, "secretref")}
	switch n := countSet(k.Data != "", k.KMS != "", k.SecretRef != nil); {
	case n == 0:
		v.fail(errMissingOneOf(fields...))
	case n > 1:
		v.fail(errMultipleOneOf(fields...))
	}
	if k.Data != "" && !isPEMPublicKey(k.Data) {
		v.fail(errInvalidValue(k.Data, child(p, "data")))
	}
	if k.HashAlgorithm != "" && !slices.Contains(hashAlgorithms, k.HashAlgorithm) {
		v.fail(errInvalidValue(k.HashAlgorithm, child(p, "hashAlgorithm")))
	}
	if k.KMS != "" {
		v.kms(child(p, "kms"), k.KMS)
	}
	if k.SecretRef != nil && k.SecretRef.Namespace != "" && v.systemNamespace != "" && k.SecretRef.Namespace != v.systemNamespace {
		v.fail(errInvalidValue(k.SecretRef.Namespace, child(child(p, "secretref"), "namespace"),
			"secretref.namespace is invalid. If set, it should use the same namespace where the policy-controller was deployed"))
	}
}

func (v *validator) kms(p, kms string) {
	if !slices.ContainsFunc(kmsPrefixes, func(prefix string) bool { return strings.HasPrefix(kms, prefix) }) {
		v.fail(errInvalidValue(kms, p, fmt.Sprintf("malformed KMS format, should be prefixed by any of the supported providers: %v", kmsPrefixes)))
		return
	}
	if strings.HasPrefix(kms, "awskms://") && !awsKMS.MatchString(kms) {
		v.fail(errInvalidValue(kms, p, "kms key should be in the format awskms://[ENDPOINT]/[ID/ALIAS/ARN] (endpoint optional)"))
	}
}

func isPEMPublicKey(data string) bool {
	block, _ := pem.Decode([]byte(data))
	if block == nil {
		return false
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
		return true
	}
	_, err := x509.ParsePKCS1PublicKey(block.Bytes)
	return err == nil
}

func (v *validator) keyless(p string, k *v1beta1.KeylessRef) {
	fields := []string{child(p, "ca-cert"), child(p, "url")}
	switch n := countSet(k.CACert != nil, k.URL != ""); {
	case n == 0:
		v.fail(errMissingOneOf(fields...))
	case n > 1:
		v.fail(errMultipleOneOf(fields...))
	}
	if k.CACert != nil {
		v.key(child(p, "ca-cert"), k.CACert)
	}
	if len(k.Identities) == 0 {
		v.fail(errMissingField(child(p, "identities")))
	}
	for i, id := range k.Identities {
		v.identity(index(child(p, "identities"), i), id)
	}
}

func (v *validator) identity(p string, id v1beta1.Identity) {
	pair := func(exact, re, exactName, reName string) {
		switch {
		case exact != "" && re != "":
			v.fail(errMultipleOneOf(child(p, exactName), child(p, reName)))
		case exact == "" && re == "":
			v.fail(errMissingField(child(p, exactName), child(p, reName)))
		}
		if re != "" {
			if _, err := regexp.Compile(re); err != nil {
				v.fail(errInvalidValue(re, child(p, reName), "regex is invalid: "+err.Error()))
			}
		}
	}
	pair(id.Issuer, id.IssuerRegExp, "issuer", "issuerRegExp")
	pair(id.Subject, id.SubjectRegExp, "subject", "subjectRegExp")
}

func (v *validator) source(p string, s v1beta1.Source) {
	if s.OCI != "" {
		if _, err := name.NewRepository(s.OCI, name.StrictValidation); err != nil {
			if _, regErr := name.NewRegistry(s.OCI, name.StrictValidation); regErr != nil {
				v.fail(errInvalidValue(s.OCI, child(p, "oci"), err.Error()))
			}
		}
	}
	for i, sec := range s.SignaturePullSecrets {
		if sec.Name == "" {
			v.fail(errMissingField(child(index(child(p, "signaturePullSecrets"), i), "name")))
		}
	}
}

func (v *validator) attestation(p string, a *v1beta1.Attestation) {
	if a.Name == "" {
		v.fail(errMissingField(child(p, "name")))
	}
	switch {
	case a.PredicateType == "":
		v.fail(errMissingField(child(p, "predicateType")))
	case slices.Contains(shortPredicates, a.PredicateType) || !isURI(a.PredicateType):
		e := errInvalidValue(a.PredicateType, child(p, "predicateType"), "deprecated value, please use RFC 3986 conformant values")
		e.Level = levelWarning
		v.warnings = v.warnings.also(e)
	}
	if a.Policy != nil {
		v.policy(child(p, "policy"), a.Policy, false)
	}
}

func isURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != ""
}

func (v *validator) policy(p string, pol *v1beta1.Policy, cipLevel bool) {
	switch pol.Type {
	case "":
		v.fail(errMissingField(child(p, "type")))
	case v1beta1.PolicyTypeCUE, v1beta1.PolicyTypeRego:
	default:
		v.fail(errInvalidValue(pol.Type, child(p, "type"), "only [cue,rego] are supported at the moment"))
	}
	bodies := []string{child(p, "configMapRef"), child(p, "data"), child(p, "remote")}
	switch n := countSet(pol.ConfigMapRef != nil, pol.Data != "", pol.Remote != nil); {
	case n == 0:
		v.fail(errMissingField(bodies...))
	case n > 1:
		v.fail(errMultipleOneOf(bodies...))
	}
	if r := pol.Remote; r != nil {
		rp := child(p, "remote")
		if u, err := url.Parse(r.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			v.fail(errInvalidValue(r.URL, child(rp, "url"), "url valid is invalid. host and https scheme are expected"))
		}
		if r.Sha256sum == "" {
			v.fail(errMissingField(child(rp, "sha256sum")))
		}
	}
	if c := pol.ConfigMapRef; c != nil {
		cp := child(p, "configMapRef")
		if c.Name == "" {
			v.fail(errMissingField(child(cp, "name")))
		}
		if c.Key == "" {
			v.fail(errMissingField(child(cp, "key")))
		}
	}
	if !cipLevel {
		var set []string
		for f, on := range map[string]*bool{
			"fetchConfigFile": pol.FetchConfigFile, "includeSpec": pol.IncludeSpec,
			"includeObjectMeta": pol.IncludeObjectMeta, "includeTypeMeta": pol.IncludeTypeMeta,
		} {
			if on != nil {
				set = append(set, child(p, f))
			}
		}
		if len(set) > 0 {
			slices.Sort(set)
			v.fail(errDisallowedFields(set...))
		}
	}
}

func countSet(set ...bool) int {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	return n
}
