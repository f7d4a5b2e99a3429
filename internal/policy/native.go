package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"cuelang.org/go/cue"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"
)

// A nativeCheck decides a projected CUE policy without CUE when every value
// the policy constrains is a disjunction of strings ("A" | "B" | ...) or a
// concrete bool, string or integer, and the input holds values of the
// expected types: which is what pod-security policies are made of, and
// what makes a decision take microseconds instead of the hundreds CUE needs
// to build a failing disjunction's errors.
//
// It answers pass, fail with the errors CUE gives when exactly one value
// fails, or "don't know", and CUE decides. The messages it writes are
// checked against CUE's when the policy is compiled (probeNative): if any
// differs, the policy has no native check.
type nativeCheck struct {
	// fields of a struct node; elem of a list node; leaf otherwise.
	fields []nativeField
	elem   *nativeCheck
	leaf   *nativeLeaf
}

type nativeField struct {
	name string
	// label is the field's label in CUE's error paths.
	label string
	check *nativeCheck
}

type nativeLeaf struct {
	// oneOf are the members of a disjunction of strings; otherwise the
	// value is the concrete lit (bool, string or int64).
	oneOf []string
	lit   any
	// quoted are the members quoted, in the order of CUE's messages.
	quoted []string
	// inputFirst: the conflict with lit names the input's value first.
	// CUE's order depends on where the value is (a field, a list
	// element); probeNative learns it from CUE.
	inputFirst bool
}

// nativeFailure is the one value that fails.
type nativeFailure struct {
	path  []string
	leaf  *nativeLeaf
	value any
}

// buildNative derives the native check of a projected policy from its
// compiled value; ok is false when some constrained value has another shape.
func buildNative(v cue.Value, q *projection) (*nativeCheck, bool) {
	switch q.kind {
	case projStruct:
		n := &nativeCheck{}
		for _, f := range q.fields {
			sel := cue.Str(f.name)
			fv := v.LookupPath(cue.MakePath(sel))
			if !fv.Exists() {
				fv = v.LookupPath(cue.MakePath(sel.Optional()))
			}
			if !fv.Exists() {
				return nil, false
			}
			c, ok := buildNative(fv, f.proj)
			if !ok {
				return nil, false
			}
			n.fields = append(n.fields, nativeField{name: f.name, label: sel.String(), check: c})
		}
		return n, true
	case projList:
		if v.IncompleteKind() != cue.ListKind {
			return nil, false
		}
		ev := v.LookupPath(cue.MakePath(cue.AnyIndex))
		if !ev.Exists() {
			return nil, false
		}
		c, ok := buildNative(ev, q.elem)
		if !ok {
			return nil, false
		}
		return &nativeCheck{elem: c}, true
	case projWhole:
		leaf, ok := nativeLeafOf(v.Eval())
		if !ok {
			return nil, false
		}
		return &nativeCheck{leaf: leaf}, true
	}
	return nil, false
}

func nativeLeafOf(v cue.Value) (*nativeLeaf, bool) {
	if _, hasDefault := v.Default(); hasDefault || v.Err() != nil {
		return nil, false
	}
	op, args := v.Expr()
	switch {
	case op == cue.OrOp && len(args) >= 2:
		leaf := &nativeLeaf{}
		for _, a := range args {
			if !a.IsConcrete() || a.Kind() != cue.StringKind {
				return nil, false
			}
			s, err := a.String()
			if err != nil || !simpleString(s) || slices.Contains(leaf.oneOf, s) {
				return nil, false
			}
			leaf.oneOf = append(leaf.oneOf, s)
			leaf.quoted = append(leaf.quoted, strconv.Quote(s))
		}
		// "conflicting values "A" and ..." sorts as its quoted member.
		slices.Sort(leaf.quoted)
		return leaf, true
	case op == cue.NoOp && v.IsConcrete():
		switch v.Kind() {
		case cue.BoolKind:
			b, err := v.Bool()
			return &nativeLeaf{lit: b}, err == nil
		case cue.StringKind:
			s, err := v.String()
			return &nativeLeaf{lit: s}, err == nil && simpleString(s)
		case cue.IntKind:
			i, err := v.Int64()
			return &nativeLeaf{lit: i}, err == nil
		}
	}
	return nil, false
}

// simpleString: CUE quotes s as "s" in messages.
func simpleString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// evaluate decides the input; ok is false when CUE must.
func (n *nativeCheck) evaluate(in evalInput) (err error, ok bool) {
	var fails []nativeFailure
	for _, f := range n.fields {
		v, present := in.builder.part(in.policy, f.name)
		if !present {
			continue
		}
		if !f.check.walk(v, []string{f.label}, &fails) {
			return nil, false
		}
	}
	switch len(fails) {
	case 0:
		return nil, true
	case 1:
		return fails[0].errors()
	}
	return nil, false
}

// walk checks v, appending failures; false means "don't know", which
// includes a second failure, since the order of CUE's errors is its own.
func (n *nativeCheck) walk(v any, path []string, fails *[]nativeFailure) bool {
	switch {
	case n.leaf != nil:
		pass, known := n.leaf.check(v)
		if !known {
			return false
		}
		if !pass {
			if len(*fails) > 0 {
				return false
			}
			*fails = append(*fails, nativeFailure{path: slices.Clone(path), leaf: n.leaf, value: v})
		}
		return true
	case n.elem != nil:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for i, e := range list {
			if !n.elem.walk(e, append(path, strconv.Itoa(i)), fails) {
				return false
			}
		}
		return true
	default:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for _, f := range n.fields {
			x, present := m[f.name]
			if !present {
				continue
			}
			if !f.check.walk(x, append(path, f.label), fails) {
				return false
			}
		}
		return true
	}
}

// check says whether v satisfies the leaf, and known is false when v is not
// of the leaf's type (CUE reports a type mismatch).
func (l *nativeLeaf) check(v any) (pass, known bool) {
	if l.oneOf != nil {
		s, ok := v.(string)
		if !ok {
			return false, false
		}
		return slices.Contains(l.oneOf, s), true
	}
	switch lit := l.lit.(type) {
	case bool:
		b, ok := v.(bool)
		return b == lit, ok
	case string:
		s, ok := v.(string)
		return s == lit, ok
	case int64:
		n, ok := v.(json.Number)
		if !ok {
			return false, false
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || strconv.FormatInt(i, 10) != string(n) {
			return false, false
		}
		return i == lit, true
	}
	return false, false
}

// errors are CUE's errors for the failure: for a disjunction of N strings,
// "N errors in empty disjunction:" and a conflict with each member, sorted
// by message; for a concrete value, a conflict with it. ok is false for
// values CUE would quote differently.
func (f nativeFailure) errors() (error, bool) {
	got, ok := nativeText(f.value)
	if !ok {
		return nil, false
	}
	const conflict = "conflicting values %s and %s"
	if f.leaf.oneOf == nil {
		want, ok := nativeText(f.leaf.lit)
		if !ok {
			return nil, false
		}
		if !f.leaf.inputFirst {
			got, want = want, got
		}
		return &nativeError{path: f.path, format: conflict, args: []any{got, want}}, true
	}
	var errs cueerrors.Error = &nativeError{path: f.path, format: "%d errors in empty disjunction:", args: []any{len(f.leaf.quoted)}}
	for _, m := range f.leaf.quoted {
		errs = cueerrors.Append(errs, &nativeError{path: f.path, format: conflict, args: []any{m, got}})
	}
	return errs, true
}

// nativeText is a value as CUE writes it in messages.
func nativeText(v any) (string, bool) {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x), true
	case string:
		return strconv.Quote(x), simpleString(x)
	case int64:
		return strconv.FormatInt(x, 10), true
	case json.Number:
		i, err := strconv.ParseInt(string(x), 10, 64)
		return strconv.FormatInt(i, 10), err == nil && strconv.FormatInt(i, 10) == string(x)
	}
	return "", false
}

// nativeError is a CUE error written by a native check.
type nativeError struct {
	path   []string
	format string
	args   []any
}

func (e *nativeError) Position() token.Pos         { return token.NoPos }
func (e *nativeError) InputPositions() []token.Pos { return nil }
func (e *nativeError) Error() string               { return cueerrors.String(e) }
func (e *nativeError) Path() []string              { return e.path }
func (e *nativeError) Msg() (string, []any)        { return e.format, e.args }

// probeNative checks the native check against CUE itself, evaluated as
// cosign does: for every constrained value, with a value that passes and
// one that fails, placed in documents of two shapes (lists of two elements
// and bare structs; lists of three with the value in the middle and
// unconstrained fields around it), the outcomes and the errors must be
// the same. evaluate is the reference evaluation of a document.
func (n *nativeCheck) probeNative(evaluate func(doc []byte) error) bool {
	var leaves [][]nativeStep
	n.collectLeaves(nil, &leaves)
	// Each probe evaluates the whole policy, so probing costs leaves squared:
	// a policy that large is left to CUE rather than stall its compilation.
	if len(leaves) > maxNativeLeaves {
		return false
	}
	for _, steps := range leaves {
		leaf := steps[len(steps)-1].check.leaf
		for i, shape := range []bool{false, true} {
			for _, pass := range []bool{true, false} {
				raw, err := json.Marshal(probeDocument(steps, leaf.probeValue(pass), shape))
				if err != nil {
					return false
				}
				want := evaluate(raw)
				got, ok := n.evaluateJSON(raw)
				if ok && !pass && leaf.oneOf == nil && i == 0 && !sameCUEErrors(got, want) {
					leaf.inputFirst = !leaf.inputFirst // learn CUE's order
					got, ok = n.evaluateJSON(raw)
				}
				if !ok || !sameCUEErrors(got, want) {
					return false
				}
			}
		}
	}
	return len(leaves) > 0
}

// maxNativeLeaves bounds the constrained values a policy may have and still
// be decided natively; real policies have a handful.
const maxNativeLeaves = 64

// evaluateJSON evaluates a document given as JSON.
func (n *nativeCheck) evaluateJSON(raw []byte) (error, bool) {
	content, err := decodeJSONMap(raw)
	if err != nil {
		return nil, false
	}
	obj := &Object{content: content}
	tm, _ := content["typemeta"].(map[string]any)
	obj.Kind, _ = tm["kind"].(string)
	obj.APIVersion, _ = tm["apiVersion"].(string)
	matches, _ := content["authorityMatches"].(map[string]any)
	return n.evaluate(evalInput{builder: newInputBuilder(obj),
		policy: &CompiledPolicy{includeSpec: true, includeMeta: true, includeType: true, matches: matches}})
}

// nativeStep is a field (name) or a list element (name "") on the way to a leaf.
type nativeStep struct {
	name  string
	check *nativeCheck
}

func (n *nativeCheck) collectLeaves(steps []nativeStep, out *[][]nativeStep) {
	switch {
	case n.leaf != nil:
		*out = append(*out, slices.Clone(steps))
	case n.elem != nil:
		n.elem.collectLeaves(append(steps, nativeStep{check: n.elem}), out)
	default:
		for _, f := range n.fields {
			f.check.collectLeaves(append(steps, nativeStep{name: f.name, check: f.check}), out)
		}
	}
}

// probeDocument builds an input holding v at the end of steps. A list
// holds elements that pass before (and, if crowded, after) the one with
// v; crowded structs have unconstrained fields sorting before and after.
func probeDocument(steps []nativeStep, v any, crowded bool) any {
	return probeValueAt(steps, v, crowded, true)
}

func probeValueAt(steps []nativeStep, v any, crowded, top bool) any {
	if len(steps) == 0 {
		return v
	}
	inner := probeValueAt(steps[1:], v, crowded, false)
	if steps[0].name != "" {
		m := map[string]any{steps[0].name: inner}
		if crowded && !top { // the input's top-level keys are fixed
			m["AAA_probe"], m["zzz_probe"] = "x", []any{json.Number("1")}
		}
		return m
	}
	other := any(map[string]any{})
	if len(steps) == 1 {
		other = steps[0].check.leaf.probeValue(true)
	}
	if crowded {
		return []any{other, inner, other}
	}
	return []any{other, inner}
}

func (l *nativeLeaf) probeValue(pass bool) any {
	if l.oneOf != nil {
		if pass {
			return l.oneOf[0]
		}
		s := "VIGIL_PROBE"
		for slices.Contains(l.oneOf, s) {
			s += "_"
		}
		return s
	}
	switch lit := l.lit.(type) {
	case bool:
		return lit == pass
	case string:
		if pass {
			return lit
		}
		return lit + "_"
	case int64:
		if pass || lit == 1<<63-1 {
			return lit
		}
		return lit + 1
	}
	return nil
}

// sameCUEErrors compares two CUE evaluation results error by error.
func sameCUEErrors(a, b error) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	if a == nil {
		return true
	}
	ea, eb := cueerrors.Errors(a), cueerrors.Errors(b)
	if len(ea) != len(eb) || a.Error() != b.Error() {
		return false
	}
	for i := range ea {
		fa, aa := ea[i].Msg()
		fb, ab := eb[i].Msg()
		if ea[i].Error() != eb[i].Error() || !slices.Equal(ea[i].Path(), eb[i].Path()) ||
			fa != fb || fmt.Sprintf(fa, aa...) != fmt.Sprintf(fb, ab...) {
			return false
		}
	}
	return true
}
