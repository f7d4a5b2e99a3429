package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

const (
	regoModule = "sigstore.rego"
	regoQuery  = "isCompliant = data.sigstore.isCompliant"
	regoPrefix = "failed evaluating rego policy for type ClusterImagePolicy: "
)

// disabledBuiltins are removed from Rego on top of every non-deterministic
// built-in but the clock (http.send, net.lookup_ip_addr, opa.runtime,
// rand.intn, uuid.rfc4122, ...): a decision must be a pure function of the
// policy, the object and the time, so that the webhook and the reports agree
// and results can be cached. io.jwt.decode_verify reads the clock too, but
// hides it from the time-dependence check below.
var disabledBuiltins = []string{"io.jwt.decode_verify"}

// clockBuiltin is the one non-deterministic built-in allowed: policies such
// as a maximum scan or image age read it. A body that calls it is
// time-dependent (regoEvaluator.timeDependent).
const clockBuiltin = "time.now_ns"

// regoCapabilities is this OPA's capabilities less the disabled built-ins,
// with no network access.
var regoCapabilities = func() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion(ast.CapabilitiesRegoVersion(ast.RegoV0))
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
		return (b.Nondeterministic && b.Name != clockBuiltin) || slices.Contains(disabledBuiltins, b.Name)
	})
	c.AllowNet = []string{}
	return c
}()

// regoEvaluator evaluates a Rego v0 policy in package sigstore, as cosign's
// ValidateJSONWithModuleInput does. A prepared query is safe for concurrent use.
type regoEvaluator struct {
	query rego.PreparedEvalQuery
	// proj is what the module reads of its input; nil: all of it.
	proj *projection
	// clockDependent: the module calls time.now_ns, so its result depends on
	// when it is evaluated and must not be cached as a pure function.
	clockDependent bool
	// now is the clock time.now_ns reads; nil means time.Now. Tests set it.
	now func() time.Time
}

func (e *regoEvaluator) timeDependent() bool { return e.clockDependent }

// callsClock reports whether the module refers to time.now_ns anywhere (a
// call, a function's body, a `with` replacement): conservative, since a
// rule that is never evaluated still counts.
func callsClock(mod *ast.Module) bool {
	clock := ast.MustParseRef(clockBuiltin)
	found := false
	ast.WalkRefs(mod, func(r ast.Ref) bool {
		if r.Equal(clock) {
			found = true
		}
		return found
	})
	return found
}

func compileRego(src string) (*regoEvaluator, error) {
	mod, err := ast.ParseModuleWithOpts(regoModule, src, ast.ParserOptions{RegoVersion: ast.RegoV0})
	if err != nil {
		return nil, err
	}
	if got := mod.Package.Path.String(); got != "data.sigstore" {
		return nil, fmt.Errorf("%s:%d: the package must be sigstore, not %s",
			regoModule, mod.Package.Location.Row, strings.TrimPrefix(got, "data."))
	}
	q, err := rego.New(
		rego.Query(regoQuery),
		rego.ParsedModule(mod),
		rego.SetRegoVersion(ast.RegoV0),
		rego.Capabilities(regoCapabilities),
		rego.StrictBuiltinErrors(false),
	).PrepareForEval(context.Background())
	if err != nil {
		return nil, err
	}
	return &regoEvaluator{query: q, proj: regoModuleProjection(mod), clockDependent: callsClock(mod)}, nil
}

// regoModuleProjection compiles a copy of the module on its own to resolve
// its references (imports, rule references) and derives its projection.
func regoModuleProjection(mod *ast.Module) *projection {
	c := ast.NewCompiler().WithCapabilities(regoCapabilities).WithDefaultRegoVersion(ast.RegoV0)
	c.Compile(map[string]*ast.Module{regoModule: mod.Copy()})
	if c.Failed() {
		return nil
	}
	compiled, ok := c.Modules[regoModule]
	if !ok {
		return nil
	}
	proj, ok := regoProjection(compiled)
	if !ok {
		return nil
	}
	return proj
}

// regoOutcome is one element of the custom-message result form.
type regoOutcome struct {
	Result  bool   `json:"result"`
	Error   string `json:"error"`
	Warning string `json:"warning"`
}

func (e *regoEvaluator) evaluateFully(ctx context.Context, in evalInput) bodyResult {
	return e.evaluate(ctx, in)
}

func (e *regoEvaluator) evaluate(ctx context.Context, in evalInput) bodyResult {
	input, err := regoInput(in.json)
	if err != nil {
		return regoInputError(err)
	}
	var at time.Time
	if e.now != nil {
		at = e.now()
	}
	return e.evaluateAt(ctx, input, at)
}

// clock is the time time.now_ns reads: e.now's, else the machine's.
func (e *regoEvaluator) clock() time.Time {
	if e.now != nil {
		return e.now()
	}
	return time.Now()
}

// regoInput parses an input document once, for any number of evaluations.
func regoInput(raw []byte) (ast.Value, error) {
	return ast.ValueFromReader(bytes.NewReader(raw))
}

func regoInputError(err error) bodyResult {
	return bodyResult{err: errors.New(regoPrefix + err.Error()), errored: true}
}

// evaluateAt evaluates the policy on a parsed input with time.now_ns
// reading at; zero: the machine's clock when the evaluation starts.
func (e *regoEvaluator) evaluateAt(ctx context.Context, input ast.Value, at time.Time) bodyResult {
	opts := []rego.EvalOption{rego.EvalParsedInput(input)}
	if !at.IsZero() {
		opts = append(opts, rego.EvalTime(at))
	}
	rs, err := e.query.Eval(ctx, opts...)
	if err != nil {
		return bodyResult{err: errors.New(regoPrefix + err.Error()), errored: true}
	}
	notCompliant := fmt.Sprintf("policy is not compliant for query '%s'", regoQuery)
	if len(rs) == 0 {
		return regoFailure(notCompliant, "")
	}
	switch v := rs[0].Bindings["isCompliant"].(type) {
	case bool:
		if v {
			return bodyResult{}
		}
		return regoFailure(notCompliant, "")
	case []any: // a set or an array of {result, error, warning}
		return regoOutcomes(v, notCompliant)
	default:
		return regoFailure(notCompliant, "")
	}
}

func regoOutcomes(v []any, notCompliant string) bodyResult {
	if len(v) == 0 {
		return regoFailure(fmt.Sprintf("policy is not compliant for query %q", regoQuery), "")
	}
	var errs, warnings []string
	for _, item := range v {
		raw, err := json.Marshal(item)
		var o regoOutcome
		if err == nil {
			err = json.Unmarshal(raw, &o)
		}
		if err != nil {
			return bodyResult{err: fmt.Errorf(regoPrefix+"unexpected isCompliant element %s: %v", raw, err), errored: true}
		}
		switch {
		case !o.Result:
			errs = append(errs, o.Error)
		case o.Warning != "":
			warnings = append(warnings, o.Warning)
		}
	}
	if len(errs) > 0 {
		text := joinBounded(errs, ", ", maxRegoText)
		return regoFailure(notCompliant+" with errors: "+text, text)
	}
	if len(warnings) > 0 {
		// policy-controller fails a policy on a warning, at the policy's mode.
		text := joinBounded(warnings, ", ", maxRegoText)
		return regoFailure("warning: "+text, text)
	}
	return bodyResult{}
}

// maxRegoText bounds the custom messages a Rego result keeps: a policy may
// give one per container, and results are cached.
const maxRegoText = 4096

// joinBounded joins items until the text passes limit bytes, then says how
// many more there are.
func joinBounded(items []string, sep string, limit int) string {
	var b strings.Builder
	for i, it := range items {
		if i > 0 && b.Len()+len(sep)+len(it) > limit {
			fmt.Fprintf(&b, "%sand %d more", sep, len(items)-i)
			break
		}
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(truncateUTF8(it, limit))
	}
	return b.String()
}

func regoFailure(msg, custom string) bodyResult {
	r := bodyResult{err: errors.New(regoPrefix + msg)}
	if custom = strings.TrimSpace(custom); custom != "" {
		r.findings = []finding{{phrase: custom, custom: true}}
	}
	return r
}
