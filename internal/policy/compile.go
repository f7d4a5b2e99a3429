package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify"
)

// ReasonBodyUnavailable: the policy body (configMapRef or remote) could not be
// obtained. The other reasons are v1beta1.ReasonInvalid and v1beta1.ReasonCompileError.
const ReasonBodyUnavailable = "BodyUnavailable"

// InvalidPolicyError says why a ClusterImagePolicy cannot be used. A webhook
// rejects the policy with Error(); a reconciler sets Ready=False with Reason
// and Error().
type InvalidPolicyError struct {
	// Policy is the ClusterImagePolicy's name.
	Policy string
	// Reason is v1beta1.ReasonInvalid, v1beta1.ReasonCompileError or ReasonBodyUnavailable.
	Reason string
	// Field is the first offending field, e.g. spec.mode or spec.policy.data.
	Field string
	// Message is the full message; for validation errors it is formatted like
	// policy-controller's (knative FieldError) messages.
	Message string
	// Transient: compiling the same policy again may succeed. The body
	// broke the compile time limit (perhaps only because the machine was
	// loaded), or another compilation held the compiler, or the compile
	// sandbox could not be started. The policy store compiles such
	// policies again, with a backoff.
	Transient bool
}

func (e *InvalidPolicyError) Error() string { return e.Message }

// BodyResolver supplies the body of a policy given by configMapRef or
// remote; Compile verifies remote bodies against their sha256sum itself.
// Nothing implements it yet: without one, such bodies are unavailable
// (Ready=False, reason BodyUnavailable).
type BodyResolver interface {
	ResolvePolicyBody(cipName string, p *v1beta1.Policy) (string, error)
}

// Compiler compiles ClusterImagePolicies. The zero value is what `vigil test`
// and the validating webhook need.
type Compiler struct {
	// Resolver supplies configMapRef and remote bodies; without one such
	// policies fail to compile with ReasonBodyUnavailable.
	Resolver BodyResolver
	// AllowEmptyAuthorities is policy-controller's fail-on-empty-authorities=false.
	// A matching policy without authorities still fails closed at evaluation.
	AllowEmptyAuthorities bool
	// SystemNamespace, when set, is the only namespace key.secretRef may name.
	SystemNamespace string
	// CompileTimeout bounds the compilation of each CUE or Rego body, which
	// runs first in a sandbox process (see sandbox.go); past it the policy
	// fails to compile. Zero means DefaultCompileTimeout; a negative value
	// turns the sandbox off: bodies are compiled in-process without bounds.
	CompileTimeout time.Duration
	// CompileMemoryLimit bounds the memory of the sandbox, in bytes. Zero
	// means DefaultCompileMemoryLimit; a negative value means no bound.
	CompileMemoryLimit int64
	// Workers, when set, evaluates the CUE and Rego bodies of the policies
	// compiled by this Compiler in its worker processes, each bounded in
	// memory and killed at the evaluation's deadline, whenever neither the
	// result cache nor a native check decides (see worker.go). Nil
	// evaluates in this process: bounded in time only, a CUE evaluation
	// past its deadline is abandoned and runs on, and a policy that
	// explodes for one object's shape can crash the process.
	Workers *WorkerPool
	// Secret reads a Secret of Vigil's namespace, for key.secretRef; nil
	// means none can be read and such policies are not ready.
	Secret func(name string) (*corev1.Secret, error)
	// TrustRoot reads a TrustRoot, for keyless.trustRootRef; nil means none
	// can be read and such policies are not ready.
	TrustRoot func(name string) (*verify.TrustRoot, error)
	// PublicGoodTrustRoot gives the public-good Sigstore root for keyless
	// authorities without a trustRootRef. It is called at evaluation, until
	// it succeeds; the caller memoizes it (one TUF client per process).
	// Nil: such authorities give an error result.
	PublicGoodTrustRoot func() (*verify.TrustRoot, error)
}

// Compile validates and compiles a policy with the zero Compiler.
func Compile(cip *v1beta1.ClusterImagePolicy) (*CompiledPolicy, error) {
	return Compiler{}.Compile(cip)
}

// CompiledPolicy is a validated ClusterImagePolicy with its globs, match
// rules and CUE or Rego body compiled, ready for Decide. Compile it once per
// generation; it is safe for concurrent use.
type CompiledPolicy struct {
	Name       string
	Generation int64
	// Mode is enforce or warn (defaulted).
	Mode string
	// Warnings from validation, formatted like policy-controller's, e.g. a
	// deprecated predicate type. They do not stop the policy from working.
	Warnings []string

	matcher     matcher
	authorities []authority
	// body is nil when the policy has no CIP-level policy.
	body                                  evaluator
	includeSpec, includeMeta, includeType bool
	// proj is what the body reads of its input; nil means all of it.
	proj *projection
	// The outcome of the authorities, which (static ones only) does not
	// depend on the image: those that passed, the input's authorityMatches
	// for them, and the errors of the others; see authorityOutcome.
	passed      []string
	matches     map[string]any
	matchesJSON []byte
	authErrs    []string
	authReason  string // authErrs joined, as messages give them
	authErrored bool
	// signatures: some authority is key or keyless, so the outcome of the
	// authorities depends on the image and is found at each decision.
	signatures bool
	// cache holds body results by input hash.
	cache *resultCache
	// turns holds, for a body that reads the clock, when its verdict on an
	// input next changes, by input hash (bodyTurn).
	turns *boundedCache[turn]
	// typ is the body's type for Observer: cue, rego or static.
	typ string
	// workers evaluate the body when set; see Compiler.Workers.
	workers *WorkerPool
	// source identifies the body to the workers.
	source workerSource
	// report: the rule, category and severity of its results.
	report reportFields
	// attestationClock: an attestation policy reads the clock (clock.go).
	attestationClock bool
	// fetchConfig: the body reads the images' config files (fetchConfigFile).
	fetchConfig bool
}

// authority is a defaulted authority reduced to what evaluation needs.
type authority struct {
	name string
	// static is nil for key and keyless authorities.
	static *v1beta1.StaticRef
	// sig is the key or keyless authority, nil for static ones.
	sig *signatureAuthority
}

// matcher decides whether a policy applies to an object and an image.
type matcher struct {
	globs imageGlobs
	match []resourceMatch
	// all is set for broken policies whose globs could not be compiled: they
	// apply everywhere so that their error is seen.
	all bool
}

type resourceMatch struct {
	group, version, resource string
	selector                 labels.Selector
}

func (m *matcher) appliesTo(o *Object) bool {
	if m.all || len(m.match) == 0 {
		return true
	}
	gvr := o.gvr()
	for _, rm := range m.match {
		if rm.group != gvr.Group || rm.resource != gvr.Resource {
			continue
		}
		if rm.version != gvr.Version && rm.version != "*" {
			continue
		}
		if rm.selector == nil || rm.selector.Matches(labels.Set(o.Labels)) {
			return true
		}
	}
	return false
}

// matchImages appends to matched the images the policy covers; ok is false
// when the budget ran out first (50,000 globs and 5,000 images are 2.5e8
// matches).
func (m *matcher) matchImages(images []*parsedImage, b *budget, matched []*parsedImage) (_ []*parsedImage, ok bool) {
	for _, img := range images {
		hit := m.all
		if !hit {
			if hit, ok = m.globs.matches(img.qualified, img.Image, b); !ok {
				return matched, false
			}
		}
		if hit {
			matched = append(matched, img)
		}
	}
	return matched, true
}

// Compile validates cip with policy-controller's rules, applies its defaults
// and compiles the policy body. The error is an *InvalidPolicyError.
func (c Compiler) Compile(cip *v1beta1.ClusterImagePolicy) (*CompiledPolicy, error) {
	spec := cip.Spec.DeepCopy()
	setDefaults(spec)
	v := validator{allowEmptyAuthorities: c.AllowEmptyAuthorities, systemNamespace: c.SystemNamespace}
	v.spec(spec)
	if len(v.errs) > 0 {
		return nil, &InvalidPolicyError{Policy: cip.Name, Reason: v1beta1.ReasonInvalid,
			Field: v.errs.merged()[0].Paths[0], Message: v.errs.Error()}
	}
	fields, err := reportFieldsOf(cip, spec)
	if err != nil {
		return nil, err
	}
	m, err := buildMatcher(spec)
	if err != nil { // validation has checked globs and selectors
		return nil, &InvalidPolicyError{Policy: cip.Name, Reason: v1beta1.ReasonInvalid, Field: "spec", Message: err.Error()}
	}
	p := &CompiledPolicy{
		Name:       cip.Name,
		Generation: cip.Generation,
		Mode:       spec.Mode,
		Warnings:   v.warnings.lines(),
		matcher:    m,
		cache:      newResultCache(resultCacheSize),
		turns:      newBoundedCache[turn](resultCacheSize),
		report:     fields,
	}
	for i := range spec.Authorities {
		a := &spec.Authorities[i]
		au := authority{name: a.Name, static: a.Static}
		if a.Static == nil {
			if au.sig, err = c.compileSignatureAuthority(cip.Name, i, a); err != nil {
				return nil, err
			}
			p.signatures = true
		}
		p.authorities = append(p.authorities, au)
	}
	p.passed, p.authErrs, p.authErrored = p.authorityOutcome()
	p.authReason = joinReasons(p.authErrs)
	p.matches = make(map[string]any, len(p.passed))
	for _, n := range p.passed {
		p.matches[n] = map[string]any{"static": true}
	}
	p.matchesJSON = appendJSON(nil, p.matches)
	p.attestationClock = attestationsReadClock(p.authorities)
	if pol := spec.Policy; pol != nil {
		p.includeSpec = isTrue(pol.IncludeSpec)
		p.includeMeta = isTrue(pol.IncludeObjectMeta)
		p.includeType = isTrue(pol.IncludeTypeMeta)
		p.fetchConfig = isTrue(pol.FetchConfigFile)
		var data string
		if p.body, data, err = c.compileBody(cip.Name, "spec.policy", pol); err != nil {
			return nil, err
		}
		p.proj = p.body.projection()
		p.workers, p.source = c.Workers, newWorkerSource(pol.Type, data)
	}
	p.typ = p.bodyTypeLabel()
	return p, nil
}

// compileBody compiles the CIP-level body; data is its source.
func (c Compiler) compileBody(cipName, field string, pol *v1beta1.Policy) (ev evaluator, data string, err error) {
	if data, err = c.policyData(cipName, field, pol); err != nil {
		return nil, "", err
	}
	probe := &sandboxProbe{IncludeSpec: isTrue(pol.IncludeSpec), IncludeObjectMeta: isTrue(pol.IncludeObjectMeta), IncludeTypeMeta: isTrue(pol.IncludeTypeMeta)}
	ev, err = c.compileInline(cipName, field, pol.Type, data, probe)
	return ev, data, err
}

// policyData is the source of a policy: data, or the body configMapRef or
// remote names, through the Resolver.
func (c Compiler) policyData(cipName, field string, pol *v1beta1.Policy) (string, error) {
	data := pol.Data
	if data == "" {
		source, sourceField := "configMapRef", child(field, "configMapRef")
		if pol.Remote != nil {
			source, sourceField = "remote", child(field, "remote")
		}
		if c.Resolver == nil {
			return "", &InvalidPolicyError{Policy: cipName, Reason: ReasonBodyUnavailable, Field: sourceField,
				Message: fmt.Sprintf("%s: policy body from %s is not available offline", sourceField, source)}
		}
		body, err := c.Resolver.ResolvePolicyBody(cipName, pol)
		if err == nil && pol.Remote != nil {
			err = checkSHA256(body, pol.Remote.Sha256sum)
		}
		if err != nil {
			return "", &InvalidPolicyError{Policy: cipName, Reason: ReasonBodyUnavailable, Field: sourceField,
				Message: fmt.Sprintf("%s: %v", sourceField, err)}
		}
		data = body
	}
	return data, nil
}

func checkSHA256(body, want string) error {
	sum := sha256.Sum256([]byte(body))
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, want) {
		return fmt.Errorf("failed to check sha256sum from policy remote: %s got %s", want, got)
	}
	return nil
}

// compileInline compiles a CUE or Rego body, first in the sandbox within
// c's limits (where a CIP-level body, given probe, is also evaluated once
// for a sample pod), then in-process; errors name field+".data" and carry
// the compiler's positions.
func (c Compiler) compileInline(cipName, field, typ, data string, probe *sandboxProbe) (evaluator, error) {
	known := typ == v1beta1.PolicyTypeCUE || typ == v1beta1.PolicyTypeRego
	if timeout, _ := c.limits(); timeout > 0 && known {
		release, err := acquireCompileSlot(typ, timeout)
		if err == nil {
			defer release()
			err = c.sandboxCompile(typ, data, probe)
		}
		if err != nil {
			var limit *compileLimitError
			return nil, compileError(cipName, field, typ, err, errors.As(err, &limit) && limit.transient)
		}
	}
	ev, err := compileSource(typ, data, true)
	if err != nil {
		return nil, compileError(cipName, field, typ, err, false)
	}
	return ev, nil
}

// compileSource compiles a CUE or Rego body in-process, without bounds;
// withNative: see compileCUE.
func compileSource(typ, data string, withNative bool) (evaluator, error) {
	switch typ {
	case v1beta1.PolicyTypeCUE:
		e, err := compileCUE(data, withNative)
		if err != nil {
			return nil, err
		}
		return e, nil
	case v1beta1.PolicyTypeRego:
		e, err := compileRego(data)
		if err != nil {
			return nil, err
		}
		return e, nil
	default: // validation rejects other types
		return nil, fmt.Errorf("unsupported policy type %q", typ)
	}
}

func compileError(cipName, field, typ string, err error, transient bool) *InvalidPolicyError {
	dataField := child(field, "data")
	return &InvalidPolicyError{Policy: cipName, Reason: v1beta1.ReasonCompileError, Field: dataField, Transient: transient,
		Message: fmt.Sprintf("%s: failed to compile the %s policy: %v", dataField, typ, err)}
}

func setDefaults(spec *v1beta1.ClusterImagePolicySpec) {
	if spec.Mode == "" {
		spec.Mode = v1beta1.ModeEnforce
	}
	for i := range spec.Authorities {
		a := &spec.Authorities[i]
		if a.Name == "" {
			a.Name = fmt.Sprintf("authority-%d", i)
		}
		if a.Keyless != nil && a.Keyless.URL == "" && a.Keyless.CACert == nil {
			a.Keyless.URL = "https://fulcio.sigstore.dev"
		}
	}
}

func buildMatcher(spec *v1beta1.ClusterImagePolicySpec) (matcher, error) {
	var m matcher
	var errs []error
	for _, img := range spec.Images {
		re, err := compileGlob(img.Glob)
		if err != nil {
			errs = append(errs, fmt.Errorf("glob %q: %w", img.Glob, err))
			continue
		}
		m.globs = append(m.globs, re)
	}
	for _, mr := range spec.Match {
		rm := resourceMatch{group: mr.Group, version: mr.Version, resource: mr.Resource}
		if mr.ResourceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(mr.ResourceSelector)
			if err != nil {
				errs = append(errs, fmt.Errorf("selector: %w", err))
				continue
			}
			rm.selector = sel
		}
		m.match = append(m.match, rm)
	}
	return m, errors.Join(errs...)
}

func isTrue(b *bool) bool { return b != nil && *b }

// BrokenPolicy is a ClusterImagePolicy that failed to compile. A Set keeps it
// so that objects it would match get an `error` result rather than a silent pass.
type BrokenPolicy struct {
	Name       string
	Generation int64
	Mode       string
	Err        error

	matcher matcher
	report  reportFields
}

// NewBrokenPolicy records cip as unusable because of err. It keeps whatever
// can be salvaged of the policy's globs and match rules; if the globs cannot
// be compiled it applies to every image.
func NewBrokenPolicy(cip *v1beta1.ClusterImagePolicy, err error) *BrokenPolicy {
	mode := cip.Spec.Mode
	if mode != v1beta1.ModeWarn {
		mode = v1beta1.ModeEnforce
	}
	b := &BrokenPolicy{Name: cip.Name, Generation: cip.Generation, Mode: mode, Err: err}
	m, mErr := buildMatcher(&cip.Spec)
	if mErr != nil || len(m.globs) == 0 {
		m.all = true
	}
	b.matcher = m
	spec := cip.Spec.DeepCopy()
	setDefaults(spec)
	b.report, _ = reportFieldsOf(cip, spec) // what is valid of them
	return b
}
