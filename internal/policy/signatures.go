package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify"
)

// ReasonReferenceUnavailable: a Secret (key.secretRef) or TrustRoot
// (trustRootRef) a policy names cannot be read or used. The policy is not
// ready and its results are error until the object is fixed.
const ReasonReferenceUnavailable = "ReferenceUnavailable"

// signatureAuthority is a key or keyless authority, compiled for the
// verifier, or the reason it cannot be evaluated.
type signatureAuthority struct {
	name, kind string
	// unsupported, when set, is why the authority gives an error result
	// (KMS keys).
	unsupported string
	pullSecrets []string
	compiled    *verify.Authority
	// publicGood builds the authority once the public-good root has loaded
	// (a trust root no trustRootRef names); a failure is retried at the
	// next evaluation and is an error result meanwhile.
	publicGood func() (*verify.TrustRoot, error)
	// publicGoodFields are the fields whose trust root is the public-good
	// one, for lack of a trustRootRef (keyless, ctlog, rfc3161timestamp).
	publicGoodFields []string
	spec             verify.AuthoritySpec
	mu               sync.Mutex
	// attestations, when there are any, are verified and judged instead of
	// the signatures, as in policy-controller (attestations.go).
	attestations   []*attestationPolicy
	predicateTypes []string
}

// compileSignatureAuthority reads the references of a key or keyless
// authority and compiles it. Errors are *InvalidPolicyError naming the field.
func (c Compiler) compileSignatureAuthority(cipName string, i int, a *v1beta1.Authority) (*signatureAuthority, error) {
	p := index("spec.authorities", i)
	s := &signatureAuthority{name: a.Name}
	atts, err := c.compileAttestations(cipName, i, a)
	if err != nil {
		return nil, err
	}
	s.attestations, s.predicateTypes = atts, predicateTypes(atts)
	spec := verify.AuthoritySpec{Name: a.Name, SignatureFormat: verify.SignatureFormat(a.SignatureFormat)}
	unavailable := func(field string, err error) (*signatureAuthority, error) {
		return nil, unavailableReference(cipName, field, err)
	}
	switch {
	case a.Key != nil:
		s.kind = "key"
		k := a.Key
		spec.Key = &verify.KeySpec{PEM: []byte(k.Data), HashAlgorithm: k.HashAlgorithm}
		switch {
		case k.KMS != "":
			s.unsupported = fmt.Sprintf("authority %s: key.kms %s: KMS keys are not supported yet", a.Name, k.KMS)
			return s, nil
		case k.SecretRef != nil:
			field := child(child(p, "key"), "secretRef")
			data, err := c.secretKey(k.SecretRef.Name)
			if err != nil {
				return unavailable(field, err)
			}
			spec.Key.PEM = data
		}
	case a.Keyless != nil:
		s.kind = "keyless"
		k := a.Keyless
		spec.Keyless = &verify.KeylessSpec{InsecureIgnoreSCT: isTrue(k.InsecureIgnoreSCT)}
		for _, id := range k.Identities {
			spec.Keyless.Identities = append(spec.Keyless.Identities, verify.Identity{
				Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp, Subject: id.Subject, SubjectRegExp: id.SubjectRegExp})
		}
		if k.TrustRootRef != "" {
			tr, err := c.trustRoot(k.TrustRootRef)
			if err != nil {
				return unavailable(child(child(p, "keyless"), "trustRootRef"), err)
			}
			spec.Keyless.TrustRoot = tr
		} else {
			s.publicGoodFields = append(s.publicGoodFields, "keyless.trustRootRef")
		}
	}
	if a.CTLog != nil {
		if spec.CTLog, err = c.rootRef(cipName, p, "ctlog", a.CTLog.TrustRootRef, s, spec.Keyless); err != nil {
			return nil, err
		}
	}
	if a.RFC3161Timestamp != nil {
		if spec.RFC3161Timestamp, err = c.rootRef(cipName, p, "rfc3161timestamp", a.RFC3161Timestamp.TrustRootRef, s, spec.Keyless); err != nil {
			return nil, err
		}
	}
	if len(a.Sources) > 0 {
		src := a.Sources[0]
		spec.Source = &verify.SourceSpec{OCI: src.OCI}
		if src.TagPrefix != nil {
			spec.Source.TagPrefix = *src.TagPrefix
		}
		for _, ps := range src.SignaturePullSecrets {
			spec.Source.SignaturePullSecrets = append(spec.Source.SignaturePullSecrets, ps.Name)
		}
		s.pullSecrets = spec.Source.SignaturePullSecrets
	}
	s.spec = spec
	if len(s.publicGoodFields) > 0 {
		s.publicGood = c.PublicGoodTrustRoot
		return s, nil
	}
	va, err := verify.Compile(spec)
	if re := (*verify.RootError)(nil); errors.As(err, &re) {
		return nil, unavailableReference(cipName, child(p, re.Field), re.Err)
	}
	if err != nil {
		return nil, &InvalidPolicyError{Policy: cipName, Reason: v1beta1.ReasonInvalid, Field: p,
			Message: fmt.Sprintf("%s: %v", p, err)}
	}
	s.compiled = va
	return s, nil
}

// trustRoot reads the TrustRoot a trustRootRef names.
func (c Compiler) trustRoot(name string) (*verify.TrustRoot, error) {
	if c.TrustRoot == nil {
		return nil, fmt.Errorf("trustroot %q cannot be read: no TrustRoots are available here", name)
	}
	return c.TrustRoot(name)
}

// rootRef reads the trust root of an authority's ctlog or rfc3161timestamp
// (field, below the authority at path p): the TrustRoot its trustRootRef
// names; without one, the keyless authority's trust root, or else the
// public-good root, loaded at first use.
func (c Compiler) rootRef(cipName, p, field, ref string, s *signatureAuthority, keyless *verify.KeylessSpec) (*verify.RootRef, error) {
	switch {
	case ref != "":
		tr, err := c.trustRoot(ref)
		if err != nil {
			return nil, unavailableReference(cipName, child(child(p, field), "trustRootRef"), err)
		}
		return &verify.RootRef{TrustRoot: tr}, nil
	case keyless != nil && keyless.TrustRoot != nil:
		return &verify.RootRef{TrustRoot: keyless.TrustRoot}, nil
	}
	s.publicGoodFields = append(s.publicGoodFields, field+".trustRootRef")
	return &verify.RootRef{}, nil
}

// unavailableReference: the Secret or TrustRoot that field names cannot be
// read or used.
func unavailableReference(cipName, field string, err error) error {
	return &InvalidPolicyError{Policy: cipName, Reason: ReasonReferenceUnavailable, Field: field,
		Message: fmt.Sprintf("%s: %v", field, err)}
}

// secretKey is the one data entry of a Secret in Vigil's namespace, as
// policy-controller inlines key.secretRef.
func (c Compiler) secretKey(name string) ([]byte, error) {
	if c.Secret == nil {
		return nil, fmt.Errorf("secret %q cannot be read: no Secrets are available here", name)
	}
	sec, err := c.Secret(name)
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	switch len(sec.Data) {
	case 0:
		return nil, fmt.Errorf("secret %q contains no data", name)
	case 1:
	default:
		return nil, fmt.Errorf("secret %q contains multiple data entries, only one is supported", name)
	}
	for _, v := range sec.Data {
		if !isPEMPublicKey(string(v)) {
			return nil, fmt.Errorf("secret %q does not hold a PEM public key", name)
		}
		return v, nil
	}
	return nil, nil
}

// authority returns the compiled authority, loading the public-good root
// first when the authority needs it.
func (s *signatureAuthority) authority() (*verify.Authority, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.compiled != nil {
		return s.compiled, nil
	}
	if s.publicGood == nil {
		return nil, fmt.Errorf("the public-good Sigstore trust root is not available here; name a TrustRoot in %s",
			strings.Join(s.publicGoodFields, " and "))
	}
	tr, err := s.publicGood()
	if err != nil {
		return nil, err
	}
	spec := s.spec
	if spec.Keyless != nil && spec.Keyless.TrustRoot == nil {
		kl := *spec.Keyless
		kl.TrustRoot = tr
		spec.Keyless = &kl
	}
	for _, ref := range []**verify.RootRef{&spec.CTLog, &spec.RFC3161Timestamp} {
		if *ref != nil && (*ref).TrustRoot == nil {
			*ref = &verify.RootRef{TrustRoot: tr}
		}
	}
	va, err := verify.Compile(spec)
	if err != nil {
		return nil, err
	}
	s.compiled = va
	return va, nil
}

// signatureOutcome is what one key or keyless authority says of one image.
type signatureOutcome struct {
	match   map[string]any // authorityMatches entry on a pass
	err     string         // the message otherwise
	errored bool           // no verdict could be reached
	// expires: the pass stands until then, or the failure or error may
	// change then, or an attestation policy that reads the clock turns then.
	expires time.Time
	// timeDependent: an attestation policy that reads the clock was evaluated.
	timeDependent bool
}

// verificationFailure is the outcome of a verifier's error: a verdict
// (fail) or not (error), and when it may change.
func verificationFailure(err error) signatureOutcome {
	o := signatureOutcome{err: err.Error(), errored: !verify.ReasonOf(err).Verdict()}
	if ve := (*verify.Error)(nil); errors.As(err, &ve) {
		o.expires = ve.RetryAt
	}
	return o
}

// check verifies ref against the authority with the decision's verifier.
func (s *signatureAuthority) check(b *budget, vf *Verification, ref string) signatureOutcome {
	ctx := b.ctx
	errorf := func(format string, args ...any) signatureOutcome {
		return signatureOutcome{err: fmt.Sprintf("signature %s validation failed for authority %s for %s: ", s.kind, s.name, ref) + fmt.Sprintf(format, args...), errored: true}
	}
	if s.unsupported != "" {
		return signatureOutcome{err: s.unsupported, errored: true}
	}
	if vf.Verifier == nil {
		return errorf("no signature verifier is configured")
	}
	a, err := s.authority()
	if err != nil {
		return errorf("%v", err)
	}
	req := verify.Request{Image: ref, Keychain: vf.Keychain, Lane: vf.Lane, Refresh: vf.Refresh}
	if len(s.pullSecrets) > 0 && vf.SignatureKeychain != nil {
		req.SignatureKeychain = vf.SignatureKeychain(s.pullSecrets)
	}
	if len(s.attestations) > 0 {
		return s.checkAttestations(b, vf, a, req)
	}
	ev, err := vf.Verifier.Verify(ctx, a, req)
	if err != nil {
		return verificationFailure(err)
	}
	sigs := make([]any, 0, len(ev.Signatures))
	for _, sg := range ev.Signatures {
		m := map[string]any{"id": sg.ID}
		if sg.Subject != "" {
			m["subject"] = sg.Subject
		}
		if sg.Issuer != "" {
			m["issuer"] = sg.Issuer
		}
		sigs = append(sigs, m)
	}
	sort.Slice(sigs, func(i, j int) bool {
		return sigs[i].(map[string]any)["id"].(string) < sigs[j].(map[string]any)["id"].(string)
	})
	return signatureOutcome{match: map[string]any{"signatures": sigs}, expires: passRecheck(ev.RefreshAt, ev.ExpiresAt)}
}

// passRecheck is when a pass may answer otherwise: its refresh time, from
// which the verify path (Verification.Refresh) verifies it again before it
// expires, else its expiry.
func passRecheck(refresh, expires time.Time) time.Time {
	if !refresh.IsZero() && refresh.Before(expires) {
		return refresh
	}
	return expires
}

// authorityOutcome is what the authorities of a policy say of one image:
// whether any passed, the input's authorityMatches, and the errors of the
// others, one per authority ("" for those that passed).
type authorityOutcome struct {
	passed      bool
	matches     map[string]any
	matchesJSON []byte
	errs        []string
	reason      string // errs joined, as messages give them
	errored     bool   // some authority that did not pass reached no verdict
	// config is the image's config files by platform (fetchConfigFile),
	// as JSON values and as JSON; configErr says why they could not be read.
	config     map[string]any
	configJSON []byte
	configErr  string
	// timeDependent: an attestation policy that reads the clock was evaluated.
	timeDependent bool
}

// verifyImage evaluates every authority of p for img, verifying key and
// keyless ones, so that authorityMatches holds all that passed, as in
// policy-controller. expires is the earliest time a verification's answer
// may change: a pass or a failure expiring, an error's back-off ending, an
// attestation policy that reads the clock turning.
func (p *CompiledPolicy) verifyImage(b *budget, vf *Verification, img *parsedImage) (out authorityOutcome, expires time.Time) {
	ctx := b.ctx
	ref := img.Image
	if d, ok := vf.Digests[img.Path]; ok && d != "" {
		ref = d
	}
	out.matches = make(map[string]any, len(p.authorities))
	out.errs = make([]string, len(p.authorities))
	for i, a := range p.authorities {
		if a.sig == nil {
			if a.static.Action == v1beta1.StaticActionPass {
				out.matches[a.name] = map[string]any{"static": true}
			} else {
				out.errs[i] = p.authErrs[i]
			}
			continue
		}
		o := a.sig.check(b, vf, ref)
		expires = earliest(expires, o.expires)
		out.timeDependent = out.timeDependent || o.timeDependent
		switch {
		case o.match != nil:
			out.matches[a.name] = o.match
		default:
			out.errs[i] = o.err
			out.errored = out.errored || o.errored
		}
	}
	out.passed = len(out.matches) > 0
	out.reason = joinReasons(out.errs)
	out.matchesJSON = appendJSON(nil, out.matches)
	if p.fetchConfig && out.passed {
		expires = earliest(expires, p.configFiles(ctx, vf, ref, &out))
	}
	return out, expires
}

// configFiles puts the image's config files in out, as policy-controller's
// fetchConfigFile gives them to the CIP-level policy under "config", or the
// reason they cannot be read in out.configErr.
func (p *CompiledPolicy) configFiles(ctx context.Context, vf *Verification, ref string, out *authorityOutcome) (expires time.Time) {
	if vf.Verifier == nil {
		out.configErr = fmt.Sprintf("fetchConfigFile: the config file of %s cannot be read: no verifier is configured", ref)
		return time.Time{}
	}
	cf, err := vf.Verifier.ConfigFiles(ctx, ref, vf.Keychain, vf.Lane)
	if err != nil {
		out.configErr = err.Error()
		if ve := (*verify.Error)(nil); errors.As(err, &ve) {
			expires = ve.RetryAt
		}
		return expires
	}
	raw, err := json.Marshal(cf.ByPlatform)
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		err = dec.Decode(&out.config)
	}
	if err != nil { // config files decoded from JSON; cannot happen
		out.configErr = fmt.Sprintf("the config files of %s: %v", ref, err)
		return cf.ExpiresAt
	}
	out.configJSON = appendJSON(nil, out.config)
	return cf.ExpiresAt
}

// earliest is the earlier of two times, zero standing for none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// joinReasons joins the non-empty errors with spaces.
func joinReasons(errs []string) string {
	var b strings.Builder
	for _, e := range errs {
		if e == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e)
	}
	return b.String()
}
