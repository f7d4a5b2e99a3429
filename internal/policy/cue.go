package policy

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
)

// evalInput is the document a CIP-level policy judges, as JSON (what CUE and
// Rego read) and as Go values (what explanations quote).
type evalInput struct {
	json []byte
	doc  map[string]any
	// podSpec is the path of the pod spec in the input, e.g. spec.template.spec.
	podSpec []string
}

// bodyResult is the outcome of a CUE or Rego policy for one input.
type bodyResult struct {
	// err is policy-controller's error text; nil when the policy passed.
	err error
	// errored: the policy could not be evaluated (an `error` result), as
	// opposed to evaluated and failed.
	errored bool
	// findings explain a failure in words.
	findings []finding
}

type evaluator interface {
	evaluate(ctx context.Context, in evalInput) bodyResult
}

// cueEvaluator evaluates a CUE policy. cue.Context is not safe for
// concurrent use, so each concurrent evaluation takes its own instance (a
// context with the policy compiled into it) from a small free list.
type cueEvaluator struct {
	src  string
	free chan *cueInstance
}

type cueInstance struct {
	ctx    *cue.Context
	policy cue.Value
	uses   int
}

// cueInstanceUses bounds how long one context lives: a context interns
// every label it sees, so it is replaced now and then to keep memory flat.
const cueInstanceUses = 10000

func compileCUE(src string) (*cueEvaluator, error) {
	e := &cueEvaluator{src: src, free: make(chan *cueInstance, runtime.GOMAXPROCS(0))}
	inst, err := e.newInstance()
	if err != nil {
		return nil, err
	}
	// Plain Validate, as at evaluation: a policy that conflicts with itself
	// fails every object, so it is rejected now.
	if err := inst.policy.Validate(); err != nil {
		return nil, formatCUEError(err)
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
	return &cueInstance{ctx: ctx, policy: v}, nil
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
	const prefix = "failed evaluating cue policy for ClusterImagePolicy: "
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
	data := inst.ctx.CompileBytes(in.json)
	if err := data.Err(); err != nil {
		return bodyResult{err: fmt.Errorf(prefix+"failed to compile the attestation data with error: %w", err), errored: true}
	}
	if err := inst.policy.Unify(data).Validate(); err != nil {
		return bodyResult{
			err:      fmt.Errorf(prefix+"failed to evaluate the policy with error: %w", err),
			findings: cueFindings(err, in),
		}
	}
	return bodyResult{}
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
