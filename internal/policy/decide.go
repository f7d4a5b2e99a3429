package policy

import (
	"cmp"
	"context"
	"fmt"
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
	// PolicyTimeout bounds the evaluation of one policy's CUE or Rego for
	// one object; past it the policy's result is error (a denial in enforce
	// mode). Zero means no bound.
	PolicyTimeout time.Duration
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

// CompileSet compiles every policy; those that fail become broken policies.
func (c Compiler) CompileSet(cips []*v1beta1.ClusterImagePolicy) *Set {
	var compiled []*CompiledPolicy
	var broken []*BrokenPolicy
	for _, cip := range cips {
		p, err := c.Compile(cip)
		if err != nil {
			broken = append(broken, NewBrokenPolicy(cip, err))
			continue
		}
		compiled = append(compiled, p)
	}
	return NewSet(compiled, broken)
}

// Len is the number of policies, compiled and broken.
func (s *Set) Len() int { return len(s.entries) }

// parsedImage is an image of the object with its parsed reference.
type parsedImage struct {
	containerImage
	// qualified is the name globs match: fully qualified, tag dropped.
	qualified string
	parseErr  error
}

func parseImages(imgs []containerImage) []*parsedImage {
	out := make([]*parsedImage, len(imgs))
	for i, img := range imgs {
		ref := parseImageRef(img.Image)
		out[i] = &parsedImage{containerImage: img, qualified: ref.qualified, parseErr: ref.err}
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
	in.timeout = opts.PolicyTimeout
	var all fieldErrors
	var results []Result
	// When the errors come from one result, the denial is its message.
	contributors, lastMessage := 0, ""
	var matchedBuf [16]*parsedImage
	for _, e := range s.entries {
		m := e.matcherFor()
		if !m.appliesTo(obj) {
			continue
		}
		matched := matchedBuf[:0]
		for i, img := range images {
			if m.matchesImage(img) {
				matched = append(matched, img)
				covered[i] = true
			}
		}
		if len(matched) == 0 {
			continue
		}
		var r Result
		var errs fieldErrors
		if e.compiled != nil {
			start := time.Now()
			r, errs = e.compiled.judge(ctx, obj, matched, in)
			if o := e.compiled.observer; o != nil {
				o.Observe(time.Since(start).Seconds())
			}
		} else {
			r, errs = e.broken.judge(obj, matched)
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
	}
}

func (e setEntry) matcherFor() *matcher {
	if e.compiled != nil {
		return &e.compiled.matcher
	}
	return &e.broken.matcher
}

// judge evaluates a compiled policy for the images it matched.
func (p *CompiledPolicy) judge(ctx context.Context, obj *Object, images []*parsedImage, in *inputBuilder) (Result, fieldErrors) {
	lvl := modeLevel(p.Mode)
	worst := verdictPass
	var errs fieldErrors
	var findings []finding
	passed, authErrs, authErrored := p.passed, p.authErrs, p.authErrored
	var body bodyResult // the same input for every image: evaluate once
	evaluated := false
	for _, img := range images {
		v, msgs, fs := verdictPass, []string(nil), []finding(nil)
		switch {
		case img.parseErr != nil:
			v, msgs = verdictError, []string{"could not parse reference: " + img.Image}
			fs = []finding{{where: img.where(), phrase: "the image reference cannot be parsed: " + img.parseErr.Error(), custom: true}}
		case len(p.authorities) == 0:
			v, msgs = verdictFail, []string{"policy has no authorities, so no image can satisfy it"}
			fs = []finding{{where: img.where(), phrase: "the policy has no authorities, so no image can satisfy it", custom: true}}
		case len(passed) == 0:
			v, msgs = verdictFail, authErrs
			if authErrored {
				v = verdictError
			}
			fs = p.authorityFindings(img)
		case p.body != nil:
			if !evaluated {
				input := in.build(p)
				var read bool
				body, read = p.evalBody(ctx, input, in.timeout)
				if len(body.cueErrs) > 0 {
					body.findings = cueFindings(body.cueErrs, input)
				}
				if !read {
					input.release()
				}
				evaluated = true
			}
			if body.err != nil {
				v, msgs, fs = verdictFail, []string{body.err.Error()}, body.findings
				if body.errored {
					v = verdictError
				}
				if len(fs) == 0 {
					fs = []finding{{phrase: fmt.Sprintf("its %s policy is not satisfied", p.bodyType()), custom: true}}
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
			Details: strings.Join(append([]string{img.Image}, msgs...), " "),
			Level:   lvl,
		})
	}
	r := Result{Policy: p.Name, Mode: p.Mode, Generation: p.Generation, Result: resultWord(worst, p.Mode)}
	p.report.stamp(&r)
	if worst == verdictPass {
		r.Explanation = in.satisfies(p.Name)
		return r, nil
	}
	r.Message = errs.Error()
	r.Explanation = explainFindings(findings, in.subject(), p.Name)
	return r, errs
}

// metricType is the type label of vigil_evaluation_duration_seconds.
func (p *CompiledPolicy) metricType() string {
	switch p.body.(type) {
	case nil:
		return "static"
	case *regoEvaluator:
		return "rego"
	default:
		return "cue"
	}
}

func (p *CompiledPolicy) bodyType() string {
	if _, ok := p.body.(*regoEvaluator); ok {
		return "Rego"
	}
	return "CUE"
}

// authorityOutcome evaluates the authorities, which for static ones does not
// depend on the image: the names that passed, the errors of the others and
// whether any could not be evaluated.
func (p *CompiledPolicy) authorityOutcome() (passed, errs []string, errored bool) {
	for _, a := range p.authorities {
		switch {
		case a.static == nil:
			errs = append(errs, fmt.Sprintf("authority %s: key/keyless authorities are not supported yet", a.name))
			errored = true
		case a.static.Action == v1beta1.StaticActionPass:
			passed = append(passed, a.name)
		default:
			errs = append(errs, "disallowed by static policy: "+a.static.Message)
		}
	}
	return passed, errs, errored
}

func (p *CompiledPolicy) authorityFindings(img *parsedImage) []finding {
	var fs []finding
	for _, a := range p.authorities {
		f := finding{where: img.where(), custom: true}
		switch {
		case a.static == nil:
			f.phrase = fmt.Sprintf("authority %s needs signature verification (key or keyless), which Vigil does not support yet", a.name)
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
	var errs fieldErrors
	for _, img := range images {
		errs = append(errs, fieldError{
			Message: "failed policy: " + b.Name,
			Paths:   []string{img.Path},
			Details: img.Image + " policy is not ready: " + reason,
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
	var errs fieldErrors
	var wheres []string
	for _, img := range images {
		errs = append(errs, fieldError{Message: "no matching policies", Paths: []string{img.Path}, Details: img.Image})
		wheres = append(wheres, img.where())
	}
	verb := " is"
	if len(wheres) > 1 {
		wheres = []string{strings.Join(wheres[:len(wheres)-1], ", ") + " and " + wheres[len(wheres)-1]}
		verb = " are"
	}
	r := Result{
		Policy:      NoMatchingPolicies,
		Result:      ResultFail,
		Message:     errs.Error(),
		Explanation: wheres[0] + verb + " not covered by any ClusterImagePolicy",
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
