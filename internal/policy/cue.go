package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"runtime"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/parser"
)

// evalInput is the document a CIP-level policy judges, as JSON with its
// keys sorted, which CUE and Rego read.
type evalInput struct {
	json []byte
	// key is the cache key: the sha256 of the policy's generation and json.
	key [sha256.Size]byte
	// parts[:nparts] locate the top-level values in json.
	parts  [len(inputKeys)]inputPart
	nparts int
	// buf holds the cache key's prefix and json.
	buf *[]byte
	// projected: json holds only the policy's projection of the document.
	projected bool
	// podSpec is the path of the pod spec in the input, e.g. spec.template.spec.
	podSpec []string

	builder *inputBuilder
	policy  *CompiledPolicy
}

// inputPart is the value of a top-level key, json[start:end].
type inputPart struct {
	key        string
	start, end int
}

// part returns the JSON of a top-level value.
func (in evalInput) part(key string) ([]byte, bool) {
	for _, p := range in.parts[:in.nparts] {
		if p.key == key {
			return in.json[p.start:p.end], true
		}
	}
	return nil, false
}

// document is the whole input as Go values, for explanations.
func (in evalInput) document() map[string]any {
	if in.builder == nil {
		return nil
	}
	return in.builder.document(in.policy)
}

// bodyResult is the outcome of a CUE or Rego policy for one input. It is
// cached and shared by every object whose input is the same, so it holds
// nothing specific to one object.
type bodyResult struct {
	// err is policy-controller's error text; nil when the policy passed.
	err error
	// errored: the policy could not be evaluated (an `error` result), as
	// opposed to evaluated and failed.
	errored bool
	// findings explain a failure in words when they do not depend on the
	// object (Rego's custom messages).
	findings []finding
	// cueErrs are CUE's errors, one per path, which are explained against
	// each object's own document (container names and images); omitted
	// counts those left out past maxBodyFindings.
	cueErrs []cueErrorAt
	omitted int
	// native: decided by a native check, which keeps nothing of the input.
	native bool
}

type evaluator interface {
	evaluate(ctx context.Context, in evalInput) bodyResult
	// evaluateFully is evaluate without a native check.
	evaluateFully(ctx context.Context, in evalInput) bodyResult
	// projection is what the policy reads of its input; nil: all of it.
	projection() *projection
	// timeDependent: the result depends on when the body is evaluated (it
	// reads the clock), so it is not cached as a function of the input.
	timeDependent() bool
}

func (e *cueEvaluator) projection() *projection  { return e.proj }
func (e *regoEvaluator) projection() *projection { return e.proj }

// CUE has no clock: its time package parses and formats, but has no "now".
func (e *cueEvaluator) timeDependent() bool { return false }

// cueEvaluator evaluates a CUE policy. cue.Context is not safe for
// concurrent use, so each concurrent evaluation takes its own instance (a
// context with the policy compiled into it) from a small free list.
type cueEvaluator struct {
	src  string
	free chan *cueInstance
	// proj is what the policy reads of its input (nil: all of it) and
	// topFields the top-level fields of the input it constrains, in the
	// order of declaration; see cueProjection.
	proj      *projection
	topFields []string
	// native decides common inputs without CUE; nil when the policy's
	// shape does not allow it. See nativeCheck.
	native *nativeCheck
	// reference evaluates exactly as cosign does, the JSON document
	// compiled with CompileBytes and unified at the root, for tests to
	// compare with. A context keeps about 5 KB of every document
	// CompileBytes compiles, and it is slower than parsing the JSON as an
	// expression and encoding that, which gives the same values at the
	// same positions.
	reference bool
}

type cueInstance struct {
	ctx    *cue.Context
	policy cue.Value
	// fields are the policy's values of topFields.
	fields []cue.Value
	uses   int
}

// cueInstanceUses bounds how long one context lives: a context interns
// every label it sees, so it is replaced now and then to keep memory flat.
const cueInstanceUses = 10000

// compileCUE compiles a CUE policy; withNative also builds (and probes) its
// native check, which an evaluation worker does without.
func compileCUE(src string, withNative bool) (*cueEvaluator, error) {
	e := &cueEvaluator{src: src, free: make(chan *cueInstance, runtime.GOMAXPROCS(0))}
	if proj, top, ok := cueProjection(src); ok {
		e.proj, e.topFields = proj, top
	}
	inst, err := e.newInstance()
	if err != nil {
		return nil, err
	}
	// Plain Validate, as at evaluation: a policy that conflicts with itself
	// fails every object, so it is rejected now.
	if err := inst.policy.Validate(); err != nil {
		return nil, formatCUEError(err)
	}
	// A native check of more leaves than maxNativeLeaves is not probed, so
	// it is not built either: looking up each of n fields costs CUE n.
	if withNative && e.proj != nil && e.proj.leaves(maxNativeLeaves+1) <= maxNativeLeaves {
		if n, ok := buildNative(inst.policy, e.proj); ok && n.probeNative(func(doc []byte) error {
			return inst.policy.Unify(inst.ctx.CompileBytes(doc)).Validate()
		}) {
			e.native = n
		}
	}
	e.put(inst)
	return e, nil
}

func (e *cueEvaluator) newInstance() (*cueInstance, error) {
	ctx := cuecontext.New()
	v := ctx.CompileString(e.src, cue.Filename("policy.cue"))
	if err := v.Err(); err != nil {
		return nil, formatCUEError(err)
	}
	inst := &cueInstance{ctx: ctx, policy: v}
	for _, name := range e.topFields {
		inst.fields = append(inst.fields, v.LookupPath(cue.MakePath(cue.Str(name))))
	}
	return inst, nil
}

func (e *cueEvaluator) get() (*cueInstance, error) {
	select {
	case inst := <-e.free:
		return inst, nil
	default:
		return e.newInstance()
	}
}

func (e *cueEvaluator) put(inst *cueInstance) {
	if inst.uses >= cueInstanceUses {
		return
	}
	select {
	case e.free <- inst:
	default:
	}
}

// evaluate unifies the policy with the input and validates with no options,
// exactly as policy-controller (cosign's evaluateCue) does: missing fields
// and non-concrete values pass, conflicts fail.
func (e *cueEvaluator) evaluate(_ context.Context, in evalInput) (res bodyResult) {
	if r, ok := e.evaluateNative(in); ok {
		return r
	}
	return e.evaluateCUE(in)
}

const cuePrefix = "failed evaluating cue policy for ClusterImagePolicy: "

// evaluateNative decides the input with the native check, when the policy
// has one and it knows the answer (ok).
func (e *cueEvaluator) evaluateNative(in evalInput) (bodyResult, bool) {
	if e.native == nil || !in.projected || e.reference {
		return bodyResult{}, false
	}
	err, ok := e.native.evaluate(in)
	if !ok {
		return bodyResult{}, false
	}
	if err == nil {
		return bodyResult{native: true}, true
	}
	// Every error of a native failure has the path of the first.
	first := cueerrors.Errors(err)[0]
	return bodyResult{
		err:     fmt.Errorf(cuePrefix+"failed to evaluate the policy with error: %w", err),
		cueErrs: []cueErrorAt{newCUEErrorAt(first)},
		native:  true,
	}, true
}

func (e *cueEvaluator) evaluateFully(_ context.Context, in evalInput) bodyResult {
	return e.evaluateCUE(in)
}

// evaluateCUE evaluates the input with CUE.
func (e *cueEvaluator) evaluateCUE(in evalInput) (res bodyResult) {
	const prefix = cuePrefix
	inst, err := e.get()
	if err != nil {
		return bodyResult{err: fmt.Errorf(prefix+"failed to compile the cue policy with error: %w", err), errored: true}
	}
	defer func() {
		if r := recover(); r != nil { // drop the instance: its state is unknown
			res = bodyResult{err: fmt.Errorf(prefix+"cue evaluation panicked: %v", r), errored: true}
			return
		}
		inst.uses++
		e.put(inst)
	}()
	var dataErr error
	switch {
	case e.reference:
		data := inst.ctx.CompileBytes(in.json)
		if dataErr = data.Err(); dataErr == nil {
			err = inst.policy.Unify(data).Validate()
		}
	case in.projected && e.proj != nil:
		dataErr, err = inst.validateFields(e.topFields, in)
	default:
		data := inst.compileJSON(in.json)
		if dataErr = data.Err(); dataErr == nil {
			err = inst.policy.Unify(data).Validate()
		}
	}
	if dataErr != nil {
		return bodyResult{err: fmt.Errorf(prefix+"failed to compile the attestation data with error: %w", dataErr), errored: true}
	}
	if err != nil {
		r := bodyResult{err: fmt.Errorf(prefix+"failed to evaluate the policy with error: %w", err)}
		r.cueErrs, r.omitted = cueErrorsByPath(err)
		return r
	}
	return bodyResult{}
}

// validateFields unifies each top-level field of the policy that the input
// has with the input's value and validates it, in the policy's order. This
// is the unification of the whole policy with the whole (projected) input,
// field by field: the fields do not refer to each other (cueProjection
// allows references to definitions only), the policy alone is valid
// (checked at compile time) and input the policy does not constrain cannot
// fail. It saves re-evaluating the policy's other fields and definitions.
func (inst *cueInstance) validateFields(topFields []string, in evalInput) (dataErr, err error) {
	var errs cueerrors.Error
	for i, name := range topFields {
		raw, ok := in.part(name)
		if !ok {
			continue
		}
		data := inst.compileJSON(raw)
		if err := data.Err(); err != nil {
			return err, nil
		}
		if err := inst.fields[i].Unify(data).Validate(); err != nil {
			errs = cueerrors.Append(errs, cueerrors.Promote(err, ""))
		}
	}
	if errs == nil {
		return nil, nil
	}
	return nil, errs
}

// compileJSON is CompileBytes(raw) without the build instance, which the
// context would keep: the JSON is parsed with the same (empty) file name,
// so positions, which order CUE's errors and the values in its messages,
// compare the same way.
func (inst *cueInstance) compileJSON(raw []byte) cue.Value {
	x, err := parser.ParseExpr("", raw)
	if err != nil {
		return inst.ctx.CompileBytes(raw) // reports the error as CompileBytes does
	}
	return inst.ctx.Encode(x)
}

// formatCUEError lists every compiler error with its line and column.
func formatCUEError(err error) error {
	var parts []string
	for _, e := range cueerrors.Errors(err) {
		msg := strings.TrimSuffix(e.Error(), ":")
		if pos := e.Position(); pos.IsValid() {
			msg += fmt.Sprintf(" (line %d, column %d)", pos.Line(), pos.Column())
		}
		parts = append(parts, msg)
	}
	if len(parts) == 0 {
		return err
	}
	return fmt.Errorf("%s", strings.Join(parts, "; "))
}
