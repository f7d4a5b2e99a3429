package policy

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

// Result words, as in PolicyReports.
const (
	ResultPass  = "pass"
	ResultFail  = "fail"
	ResultWarn  = "warn"
	ResultError = "error"
	ResultSkip  = "skip"
)

// NoMatchingPolicies is the policy name of the result for images that no
// policy covers.
const NoMatchingPolicies = "no-matching-policies"

// NoMatchPolicy says what happens to an image no policy covers; it is
// policy-controller's no-match-policy.
type NoMatchPolicy string

const (
	NoMatchDeny  NoMatchPolicy = "deny"
	NoMatchWarn  NoMatchPolicy = "warn"
	NoMatchAllow NoMatchPolicy = "allow"
)

// ParseNoMatchPolicy accepts deny, warn and allow.
func ParseNoMatchPolicy(s string) (NoMatchPolicy, error) {
	switch p := NoMatchPolicy(s); p {
	case NoMatchDeny, NoMatchWarn, NoMatchAllow:
		return p, nil
	}
	return "", fmt.Errorf("invalid no-match policy %q: want deny, warn or allow", s)
}

// DefaultPolicyTimeout leaves room for several slow policies within the
// webhook's 10s timeout, while a decision usually takes microseconds.
const DefaultPolicyTimeout = 2 * time.Second

// Options of a decision.
type Options struct {
	// NoMatchPolicy for images no policy covers; empty or unknown means deny,
	// as in policy-controller.
	NoMatchPolicy NoMatchPolicy
	// PolicyTimeout bounds the judgement of one object by one policy (its
	// image globs and its CUE or Rego); past it the policy's result is
	// error (a denial in enforce mode). Zero means no bound but ctx's.
	PolicyTimeout time.Duration
	// Observer is told how long each policy took; nil: nobody is.
	Observer Observer
	// Verification judges key and keyless authorities; the zero value
	// gives them an error result.
	Verification Verification
	// ClockRecheck bounds how far away Decision.RecheckAt is when a policy
	// that reads the clock (its body or an attestation policy, see
	// CompiledPolicy.TimeDependent) was evaluated: its result may change
	// as time passes with nothing else changed. Zero means
	// DefaultClockRecheck.
	ClockRecheck time.Duration
	// SpreadClockRechecks makes that wait up to a tenth shorter, by an
	// offset fixed for each object (a hash of its namespace and name): pods
	// judged together (a policy applied, a restart) are not all judged again
	// together, and their rounds drift apart. Earlier, never later, so the
	// bound holds.
	SpreadClockRechecks bool
	// Now is the clock RecheckAt counts from; nil means time.Now.
	Now func() time.Time
}

// DefaultClockRecheck is how often a result that depends on the clock is
// judged again by default: a maximum scan or image age counts in days, so
// a few minutes late is close enough, and the verifier's caches answer the
// repeated registry questions.
const DefaultClockRecheck = 5 * time.Minute

// clockRecheckAt is when a result of obj that read the clock is judged
// again.
func (o *Options) clockRecheckAt(obj *Object) time.Time {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	d := o.ClockRecheck
	if d <= 0 {
		d = DefaultClockRecheck
	}
	if spread := d / 10; o.SpreadClockRechecks && spread > 0 {
		h := fnv.New64a()
		_, _ = h.Write([]byte(obj.Namespace + "/" + obj.Name))
		d -= time.Duration(h.Sum64() % uint64(spread)) // #nosec G115 -- spread > 0
	}
	return now().Add(d)
}

// Observer is told the time one policy took to judge one object, by the
// type of its body: "cue", "rego" or "static" (no body). It must be safe
// for concurrent use. internal/metrics has one that feeds
// vigil_evaluation_duration_seconds.
type Observer interface {
	ObserveEvaluation(policyType string, d time.Duration)
}

// Result is the outcome of one policy for one object.
type Result struct {
	// Policy is the ClusterImagePolicy's name, or NoMatchingPolicies.
	Policy     string
	Mode       string
	Generation int64
	// Result is pass, fail (enforce mode), warn (warn mode), error (the
	// policy could not be evaluated) or skip.
	Result string
	// Message is what policy-controller would say about this policy: its
	// field errors, e.g. "failed policy: NAME: spec.containers[0].image\n<image> <errors>".
	// Empty on pass.
	Message string
	// Explanation says the same for people in one line.
	Explanation string
	// Rule is the part of the policy the result is about (RuleBody, the
	// authority's name, RuleAuthorities), "" when nothing finer than the
	// policy. Category and Severity are the policy author's
	// (AnnotationCategory, AnnotationSeverity), "" when not set.
	Rule, Category, Severity string
	// TimeDependent: a policy that reads the clock (its body or an
	// attestation policy) was evaluated for this result, which may
	// therefore change as time passes with nothing else changed. A result
	// that turned between two decisions of the same object under the same
	// policy generation, with TimeDependent set, turned because time
	// passed (unless a verification it rests on changed).
	TimeDependent bool
}

// Decision is the judgement of one object against a Set.
type Decision struct {
	// Allowed is false when admission would deny the object.
	Allowed bool
	// Results, one per matching policy plus NoMatchingPolicies when some
	// image is not covered, sorted by policy name.
	Results []Result
	// DenyMessage is the denial text after "validation failed: ", empty when allowed.
	DenyMessage string
	// Warnings are the admission warnings, one per merged field error.
	Warnings []string
	// RecheckAt is when this decision may change with nothing in the
	// cluster changed: the earliest expiry of a verification it rests on
	// (a pass or a failure from the verifier's cache), a retry after a
	// verification error, the moment an attestation policy that reads the
	// clock changes its verdict on a statement (found by evaluating it at
	// future times, see nextTurn), or Options.ClockRecheck from now when a
	// policy that reads the clock was evaluated. Zero when it rests on
	// none. The verify path judges the object again then.
	RecheckAt time.Time
}

// DenialReason is the admission response message policy-controller gives:
// "validation failed: " and DenyMessage; empty when allowed.
func (d Decision) DenialReason() string {
	if d.DenyMessage == "" {
		return ""
	}
	return "validation failed: " + d.DenyMessage
}

// Set is an immutable snapshot of the current policies, compiled and broken.
// One Set serves the webhook, the reconcilers and `vigil test`.
type Set struct {
	entries []setEntry
}

// setEntry is a compiled or a broken policy.
type setEntry struct {
	compiled *CompiledPolicy
	broken   *BrokenPolicy
}

func (e setEntry) name() string {
	if e.compiled != nil {
		return e.compiled.Name
	}
	return e.broken.Name
}

// NewSet snapshots policies. Names should be unique; of duplicates the
// compiled one, then the first given, is kept.
func NewSet(compiled []*CompiledPolicy, broken []*BrokenPolicy) *Set {
	var entries []setEntry
	for _, p := range compiled {
		entries = append(entries, setEntry{compiled: p})
	}
	for _, b := range broken {
		entries = append(entries, setEntry{broken: b})
	}
	slices.SortStableFunc(entries, func(a, b setEntry) int { return cmp.Compare(a.name(), b.name()) })
	entries = slices.CompactFunc(entries, func(a, b setEntry) bool { return a.name() == b.name() })
	return &Set{entries: entries}
}

// parsedImage is an image of the object with its parsed reference.
type parsedImage struct {
	containerImage
	// qualified is the name globs match: fully qualified, tag dropped.
	qualified string
	parseErr  error
	// at is the image's index in the object's images.
	at int
}

func parseImages(imgs []containerImage) []*parsedImage {
	out := make([]*parsedImage, len(imgs))
	for i, img := range imgs {
		ref := parseImageRef(img.Image)
		out[i] = &parsedImage{containerImage: img, qualified: ref.qualified, parseErr: ref.err, at: i}
	}
	return out
}

// imageRef is a parsed image reference: the name globs match, or why the
// reference cannot be parsed.
type imageRef struct {
	qualified string
	err       error
}

// imageRefs caches parsed references: a cluster runs few distinct images,
// and parsing one costs more than the rest of a cached decision. Like
// resultCache it keeps two generations of at most imageRefsSize entries.
var imageRefs = struct {
	sync.Mutex
	cur, prev map[string]imageRef
}{cur: map[string]imageRef{}}

const imageRefsSize = 4096

func parseImageRef(image string) imageRef {
	imageRefs.Lock()
	r, ok := imageRefs.cur[image]
	if !ok {
		if r, ok = imageRefs.prev[image]; ok {
			imageRefs.cur[image] = r
		}
	}
	imageRefs.Unlock()
	if ok {
		return r
	}
	if ref, err := name.ParseReference(image, name.WeakValidation); err != nil {
		r.err = err
	} else {
		r.qualified = matchName(ref)
	}
	imageRefs.Lock()
	if len(imageRefs.cur) >= imageRefsSize {
		imageRefs.prev, imageRefs.cur = imageRefs.cur, make(map[string]imageRef, imageRefsSize)
	}
	imageRefs.cur[image] = r
	imageRefs.Unlock()
	return r
}

func (img *parsedImage) where() string {
	if noun, ok := containerNouns[img.Field]; ok {
		return fmt.Sprintf("%s %q (%s)", noun, img.Name, img.Image)
	}
	return fmt.Sprintf("volume %q (%s)", img.Name, img.Image)
}

// verdict of one policy for one image, in the order of precedence when
// images are combined: a definite failure outweighs an evaluation error.
type verdict int

const (
	verdictPass verdict = iota
	verdictError
	verdictFail
)

// Decide judges obj against every policy of the set: each matching policy
// must pass (AND); within a policy any one authority suffices (OR), then the
// policy body is evaluated. It is a pure function of the set, the object and
// the options.
func (s *Set) Decide(ctx context.Context, obj *Object, opts Options) Decision {
	images := obj.parsed
	var coveredBuf [16]bool
	covered := coveredBuf[:0]
	if len(images) > len(coveredBuf) {
		covered = make([]bool, len(images))
	}
	covered = covered[:len(images)]
	in := newInputBuilder(obj)
	var all fieldErrors
	var results []Result
	// When the errors come from one result, the denial is its message.
	contributors, lastMessage := 0, ""
	var matchedBuf [16]*parsedImage
	var recheck time.Time
	for _, e := range s.entries {
		m := e.matcherFor()
		if !m.appliesTo(obj) {
			continue
		}
		start := time.Now()
		b := budget{ctx: ctx, timeout: opts.PolicyTimeout}
		if opts.PolicyTimeout > 0 {
			b.deadline = start.Add(opts.PolicyTimeout)
		}
		matched, ok := m.matchImages(images, &b, matchedBuf[:0])
		var r Result
		var errs fieldErrors
		switch {
		case !ok:
			// Fail closed: the policy may cover any of the images.
			for i := range covered {
				covered[i] = true
			}
			r, errs = e.unmatched(obj, images, &b)
		case len(matched) == 0:
			continue
		default:
			for _, img := range matched {
				covered[img.at] = true
			}
			if e.compiled != nil {
				var at time.Time
				r, errs, at = e.compiled.judge(&b, obj, matched, in, &opts.Verification)
				recheck = earliest(recheck, at)
				if r.TimeDependent {
					recheck = earliest(recheck, opts.clockRecheckAt(obj))
				}
			} else {
				r, errs = e.broken.judge(obj, matched)
			}
		}
		if e.compiled != nil && opts.Observer != nil {
			opts.Observer.ObserveEvaluation(e.compiled.typ, time.Since(start))
		}
		results = append(results, r)
		all = append(all, errs...)
		if len(errs) > 0 {
			contributors, lastMessage = contributors+1, r.Message
		}
	}
	var uncovered []*parsedImage
	for i, img := range images {
		if !covered[i] {
			uncovered = append(uncovered, img)
		}
	}
	if len(uncovered) > 0 {
		r, errs := noMatch(uncovered, opts.NoMatchPolicy)
		results = append(results, r)
		all = append(all, errs...)
		if len(errs) > 0 {
			contributors, lastMessage = contributors+1, r.Message
		}
	}
	slices.SortStableFunc(results, func(a, b Result) int { return cmp.Compare(a.Policy, b.Policy) })
	denials := all.filter(levelError)
	deny := lastMessage // a result's Message is its errors' Error()
	if contributors != 1 || len(denials) != len(all) {
		deny = denials.Error()
	}
	return Decision{
		Allowed:     len(denials) == 0,
		Results:     results,
		DenyMessage: deny,
		Warnings:    all.filter(levelWarning).lines(),
		RecheckAt:   recheck,
	}
}

// budget is the time one policy may take to judge one object: the caller's
// context and, with Options.PolicyTimeout, a deadline of the policy's own.
// Loops over images and globs check it, so that no part of a decision
// outlives it.
type budget struct {
	ctx      context.Context
	timeout  time.Duration
	deadline time.Time // zero: none but ctx's
	steps    int
}

// spent reports whether the budget is spent, looking at the clock every
// 256th call only.
func (b *budget) spent() bool {
	b.steps++
	if b.steps&255 != 0 {
		return false
	}
	return b.expired()
}

func (b *budget) expired() bool {
	return b.ctx.Err() != nil || (!b.deadline.IsZero() && !time.Now().Before(b.deadline))
}

// evalContext is the context of the policy body's evaluation.
func (b *budget) evalContext() (context.Context, context.CancelFunc) {
	if b.deadline.IsZero() {
		return context.WithCancel(b.ctx)
	}
	return context.WithDeadline(b.ctx, b.deadline)
}

// limit names what ran out: the policy's limit, or the caller's deadline.
func (b *budget) limit() string {
	if b.timeout > 0 && (b.ctx.Err() == nil || !time.Now().Before(b.deadline)) {
		return "its limit of " + b.timeout.String()
	}
	return "the deadline of the request"
}

// unmatched is the error result of a policy whose image globs could not all
// be matched within the budget: it may cover any image, so it fails closed.
func (e setEntry) unmatched(obj *Object, images []*parsedImage, b *budget) (Result, fieldErrors) {
	name, mode, gen := e.name(), e.mode(), e.generation()
	reason := fmt.Sprintf("the policy's %d image globs could not be matched against the %d images within %s",
		len(e.matcherFor().globs), len(images), b.limit())
	errs := make(fieldErrors, 0, len(images))
	for _, img := range images {
		errs = append(errs, fieldError{Message: "failed policy: " + name, Paths: []string{img.Path},
			Details: img.Image, Reason: reason, Level: modeLevel(mode)})
	}
	return Result{
		Policy: name, Mode: mode, Generation: gen, Result: ResultError, Message: errs.Error(),
		Explanation: fmt.Sprintf("%s cannot be judged by %s: %s", obj.subject(), name, reason),
	}, errs
}

func (e setEntry) mode() string {
	if e.compiled != nil {
		return e.compiled.Mode
	}
	return e.broken.Mode
}

func (e setEntry) generation() int64 {
	if e.compiled != nil {
		return e.compiled.Generation
	}
	return e.broken.Generation
}

func (e setEntry) matcherFor() *matcher {
	if e.compiled != nil {
		return &e.compiled.matcher
	}
	return &e.broken.matcher
}

// judge evaluates a compiled policy for the images it matched. Static
// authorities and a body whose input is the same for every image are
// evaluated once; key and keyless authorities are verified per image, and
// the body is evaluated again when their authorityMatches differ. recheck
// is the earliest time a verification's answer may change (Decision.RecheckAt).
func (p *CompiledPolicy) judge(b *budget, obj *Object, images []*parsedImage, in *inputBuilder, vf *Verification) (_ Result, _ fieldErrors, recheck time.Time) {
	lvl := modeLevel(p.Mode)
	worst := verdictPass
	var errs fieldErrors
	var findings []finding
	var body bodyResult
	var bodyReason string
	var bodyFor, configFor []byte // the authorityMatches and config the body was evaluated with
	evaluated, bodyExplained, timeDependent := false, false, false
	static := authorityOutcome{passed: len(p.passed) > 0, matches: p.matches, matchesJSON: p.matchesJSON,
		errs: p.authErrs, reason: p.authReason, errored: p.authErrored}
	for _, img := range images {
		v, reason, fs := verdictPass, "", []finding(nil)
		out := &static
		if (p.signatures || p.fetchConfig) && img.parseErr == nil && len(p.authorities) > 0 {
			o, exp := p.verifyImage(b, vf, img)
			out = &o
			recheck = earliest(recheck, exp)
			timeDependent = timeDependent || o.timeDependent
		}
		switch {
		case img.parseErr != nil:
			v, reason = verdictError, "could not parse reference: "+img.Image
			fs = []finding{{where: img.where(), phrase: "the image reference cannot be parsed: " + img.parseErr.Error(), custom: true}}
		case len(p.authorities) == 0:
			v, reason = verdictFail, "policy has no authorities, so no image can satisfy it"
			fs = []finding{{where: img.where(), phrase: "the policy has no authorities, so no image can satisfy it", custom: true}}
		case !out.passed:
			v, reason = verdictFail, out.reason
			if out.errored {
				v = verdictError
			}
			fs = p.authorityFindings(img, out)
		case out.configErr != "":
			v, reason = verdictError, out.configErr
			fs = []finding{{where: img.where(), phrase: "its config file cannot be read: " + out.configErr, custom: true}}
		case p.body != nil:
			timeDependent = timeDependent || p.body.timeDependent()
			if !evaluated || !bytes.Equal(bodyFor, out.matchesJSON) || !bytes.Equal(configFor, out.configJSON) {
				in.cur = out
				var turn time.Time
				body, turn = p.evaluateBody(b, in)
				recheck = earliest(recheck, turn)
				in.cur = nil
				bodyReason = ""
				if body.err != nil {
					bodyReason = body.err.Error()
				}
				evaluated, bodyFor, configFor = true, out.matchesJSON, out.configJSON
			}
			if body.err != nil {
				v, reason = verdictFail, bodyReason
				if body.errored {
					v = verdictError
				}
				if !bodyExplained {
					bodyExplained = true
					fs = body.findings
					if len(fs) == 0 {
						fs = []finding{{phrase: p.bodyPhrase(body), custom: true}}
					}
				}
			}
		}
		if v == verdictPass {
			continue
		}
		worst = max(worst, v)
		findings = append(findings, fs...)
		errs = append(errs, fieldError{
			Message: "failed policy: " + p.Name,
			Paths:   []string{img.Path},
			Details: img.Image,
			Reason:  reason,
			Level:   lvl,
		})
	}
	r := Result{Policy: p.Name, Mode: p.Mode, Generation: p.Generation, Result: resultWord(worst, p.Mode), TimeDependent: timeDependent}
	p.report.stamp(&r)
	if worst == verdictPass {
		r.Explanation = in.satisfies(p.Name)
		return r, nil, recheck
	}
	r.Message = errs.Error()
	r.Explanation = explainFindings(findings, body.omitted, in.subject(), p.Name)
	return r, errs, recheck
}

// evaluateBody evaluates the policy's body for the object, within b; CUE's
// errors are explained against the object's own input.
func (p *CompiledPolicy) evaluateBody(b *budget, in *inputBuilder) (bodyResult, time.Time) {
	input := in.build(p)
	body, read := p.evalBody(b, input)
	if len(body.cueErrs) > 0 {
		body.findings = cueFindings(body.cueErrs, input)
	}
	turn := p.bodyTurn(b.ctx, input, body)
	if !read {
		input.release()
	}
	return body, turn
}

// bodyTypeLabel is the policy's type for Observer: cue, rego or static.
func (p *CompiledPolicy) bodyTypeLabel() string {
	switch p.body.(type) {
	case nil:
		return "static"
	case *regoEvaluator:
		return "rego"
	default:
		return "cue"
	}
}

// bodyPhrase words a body result that has no findings of its own.
func (p *CompiledPolicy) bodyPhrase(body bodyResult) string {
	if !body.errored {
		return fmt.Sprintf("its %s policy is not satisfied", p.bodyType())
	}
	_, why, _ := strings.Cut(body.err.Error(), "for ClusterImagePolicy: ")
	return fmt.Sprintf("its %s policy could not be evaluated: %s", p.bodyType(), why)
}

func (p *CompiledPolicy) bodyType() string {
	if _, ok := p.body.(*regoEvaluator); ok {
		return "Rego"
	}
	return "CUE"
}

// authorityOutcome evaluates the static authorities, which do not depend
// on the image: the names that passed and the errors of the others, one
// per authority ("" for those that passed). Key and keyless authorities are
// left to verifyImage.
func (p *CompiledPolicy) authorityOutcome() (passed, errs []string, errored bool) {
	for _, a := range p.authorities {
		switch {
		case a.static == nil:
			errs = append(errs, "")
		case a.static.Action == v1beta1.StaticActionPass:
			passed = append(passed, a.name)
			errs = append(errs, "")
		default:
			errs = append(errs, "disallowed by static policy: "+a.static.Message)
		}
	}
	return passed, errs, errored
}

func (p *CompiledPolicy) authorityFindings(img *parsedImage, out *authorityOutcome) []finding {
	var fs []finding
	for i, a := range p.authorities {
		f := finding{where: img.where(), custom: true}
		switch {
		case a.static == nil:
			if i >= len(out.errs) || out.errs[i] == "" {
				continue
			}
			f.phrase = out.errs[i]
		case a.static.Message != "":
			f.phrase = a.static.Message
		default:
			f.phrase = fmt.Sprintf("static authority %s disallows the image", a.name)
		}
		fs = append(fs, f)
	}
	return fs
}

// judge gives an error result for every image a broken policy matches.
func (b *BrokenPolicy) judge(obj *Object, images []*parsedImage) (Result, fieldErrors) {
	reason := strings.ReplaceAll(b.Err.Error(), "\n", " ")
	notReady := "policy is not ready: " + reason
	errs := make(fieldErrors, 0, len(images))
	for _, img := range images {
		errs = append(errs, fieldError{
			Message: "failed policy: " + b.Name,
			Paths:   []string{img.Path},
			Details: img.Image,
			Reason:  notReady,
			Level:   modeLevel(b.Mode),
		})
	}
	r := Result{
		Policy: b.Name, Mode: b.Mode, Generation: b.Generation, Result: ResultError,
		Message:     errs.Error(),
		Explanation: fmt.Sprintf("%s cannot be judged by %s, which is not ready: %s", obj.subject(), b.Name, reason),
	}
	b.report.stamp(&r)
	return r, errs
}

func noMatch(images []*parsedImage, policy NoMatchPolicy) (Result, fieldErrors) {
	errs := make(fieldErrors, 0, len(images))
	for _, img := range images {
		errs = append(errs, fieldError{Message: "no matching policies", Paths: []string{img.Path}, Details: img.Image})
	}
	r := Result{
		Policy:      NoMatchingPolicies,
		Result:      ResultFail,
		Message:     errs.Error(),
		Explanation: uncoveredSentence(images),
	}
	switch policy {
	case NoMatchAllow:
		r.Result = ResultSkip
		return r, nil
	case NoMatchWarn:
		r.Result = ResultWarn
		for i := range errs {
			errs[i].Level = levelWarning
		}
	}
	return r, errs
}

// uncoveredSentence says which images no policy covers: "A is", "A and B
// are", "A, B and C are", and past maxFindings "A, B, C and N more are".
func uncoveredSentence(images []*parsedImage) string {
	const tail = " not covered by any ClusterImagePolicy"
	if len(images) == 1 {
		return images[0].where() + " is" + tail
	}
	shown := images[:min(len(images), maxFindings)]
	wheres := make([]string, len(shown))
	for i, img := range shown {
		wheres[i] = img.where()
	}
	if more := len(images) - len(shown); more > 0 {
		return strings.Join(wheres, ", ") + fmt.Sprintf(" and %d more are", more) + tail
	}
	return strings.Join(wheres[:len(wheres)-1], ", ") + " and " + wheres[len(wheres)-1] + " are" + tail
}

func modeLevel(mode string) level {
	if mode == v1beta1.ModeWarn {
		return levelWarning
	}
	return levelError
}

func resultWord(v verdict, mode string) string {
	switch {
	case v == verdictPass:
		return ResultPass
	case v == verdictError:
		return ResultError
	case mode == v1beta1.ModeWarn:
		return ResultWarn
	default:
		return ResultFail
	}
}
