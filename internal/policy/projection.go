package policy

import (
	"cmp"
	"slices"
	"strings"

	cueast "cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
	"github.com/open-policy-agent/opa/v1/ast"
)

// A projection is the part of a policy's input document the policy can
// read, derived from the policy when it is compiled. The input a policy
// evaluates is cut down to its projection, and decisions are cached by a hash
// of exactly that, so that replicas which differ only in what the policy
// never reads (node name, service-account token volume, pod name) share one
// evaluation.
//
// A projection must never drop data the policy could see: the result and the
// messages of a projected evaluation are those of the whole input. Policies
// whose reads cannot be bounded statically get no projection (nil) and see
// the whole input.
type projection struct {
	kind projKind
	// fields of a projStruct, sorted by name.
	fields []projField
	// elem applies to every element of a projList or projIndex.
	elem *projection
}

type projKind uint8

const (
	// projWhole keeps the value as it is.
	projWhole projKind = iota
	// projStruct keeps only the given fields of an object; a value that is
	// not an object is kept whole.
	projStruct
	// projList projects every element of a list with elem (CUE's [...T]);
	// a value that is not a list is kept whole.
	projList
	// projIndex projects every element of a list, or every value of an
	// object, with elem (Rego's x[_]); other values are kept whole.
	projIndex
)

type projField struct {
	name string
	proj *projection
}

var wholeProjection = &projection{kind: projWhole}

// field returns the projection of field name, nil when it is not read.
func (p *projection) field(name string) *projection {
	i, ok := slices.BinarySearchFunc(p.fields, name, func(f projField, n string) int { return cmp.Compare(f.name, n) })
	if !ok {
		return nil
	}
	return p.fields[i].proj
}

// withField returns p with q merged into field name; p is a projStruct,
// or whole, which stays whole.
func (p *projection) withField(name string, q *projection) *projection {
	if p.kind != projStruct {
		return wholeProjection
	}
	i, ok := slices.BinarySearchFunc(p.fields, name, func(f projField, n string) int { return cmp.Compare(f.name, n) })
	out := &projection{kind: projStruct, fields: slices.Clone(p.fields)}
	if ok {
		out.fields[i].proj = mergeProjections(out.fields[i].proj, q)
	} else {
		out.fields = slices.Insert(out.fields, i, projField{name, q})
	}
	return out
}

// mergeProjections is the union of what a and b read.
func mergeProjections(a, b *projection) *projection {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.kind == projWhole || b.kind == projWhole || a.kind != b.kind:
		return wholeProjection
	case a.kind == projStruct:
		out := a
		for _, f := range b.fields {
			out = out.withField(f.name, f.proj)
		}
		return out
	default:
		return &projection{kind: a.kind, elem: mergeProjections(a.elem, b.elem)}
	}
}

// leaves counts the values p keeps whole, stopping at limit.
func (p *projection) leaves(limit int) int {
	switch p.kind {
	case projStruct:
		n := 0
		for _, f := range p.fields {
			if n += f.proj.leaves(limit - n); n >= limit {
				break
			}
		}
		return n
	case projList, projIndex:
		return p.elem.leaves(limit)
	}
	return 1
}

// String renders a projection for tests and debugging, e.g.
// {spec:{containers:[{securityContext:*}]}}; * is a whole value.
func (p *projection) String() string {
	var b strings.Builder
	p.write(&b)
	return b.String()
}

func (p *projection) write(b *strings.Builder) {
	switch p.kind {
	case projWhole:
		b.WriteString("*")
	case projStruct:
		b.WriteString("{")
		for i, f := range p.fields {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(f.name + ":")
			f.proj.write(b)
		}
		b.WriteString("}")
	case projList, projIndex:
		b.WriteString("[")
		p.elem.write(b)
		b.WriteString("]")
	}
}

// cueProjection derives the projection of a CUE policy from its syntax, and
// the input's top-level fields it constrains, in the order of declaration.
// ok is false when the reads cannot be bounded: the policy then sees the
// whole input.
//
// A CUE policy is unified with the input, and only conflicts fail (plain
// Validate). Input data that the policy does not constrain is unified with
// nothing and can never conflict, so it can be dropped, as long as:
//   - the policy's open struct literals are followed field by field: a field
//     of the input that the literal does not declare is unconstrained;
//   - a list whose elements are all constrained by T ([...T]) projects every
//     element with T, keeping every element so that error paths (.0, .1)
//     and list lengths stay the same;
//   - anything else (a definition, which is closed; a disjunction; a bound; a
//     basic type; a concrete value; a call; a fixed-length list) keeps the
//     data below it whole;
//   - no expression reads the input other than by being unified with it:
//     every reference must be to a definition or a predeclared identifier,
//     and there may be no comprehensions (for, if), let clauses, aliases,
//     pattern or dynamic fields, or imports.
func cueProjection(src string) (proj *projection, topFields []string, ok bool) {
	f, err := parser.ParseFile("policy.cue", src)
	if err != nil {
		return nil, nil, false
	}
	if !cueReadsOnlyByUnification(f) {
		return nil, nil, false
	}
	var root structProjection
	seen := map[string]bool{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *cueast.Package, *cueast.CommentGroup, *cueast.Attribute:
		case *cueast.Field:
			name, isData, ok := cueFieldName(d)
			if !ok {
				return nil, nil, false
			}
			if !isData {
				continue
			}
			if d.Constraint != token.ILLEGAL {
				// Optional and required top-level fields are not
				// evaluated field by field; see cueEvaluator.
				return nil, nil, false
			}
			q := cueExprProjection(d.Value)
			if q == nil {
				return nil, nil, false
			}
			root.add(name, q)
			if !seen[name] {
				seen[name] = true
				topFields = append(topFields, name)
			}
		default: // embeddings, imports, let clauses, comprehensions
			return nil, nil, false
		}
	}
	return root.build(), topFields, true
}

// cueFieldName is the label of a field; isData is false for definitions and
// hidden fields, which the input cannot have. ok is false for labels that
// are expressions (patterns, dynamic fields) or aliased.
func cueFieldName(f *cueast.Field) (name string, isData, ok bool) {
	if f.Alias != nil {
		return "", false, false
	}
	name, isIdent, err := cueast.LabelName(f.Label)
	if err != nil {
		return "", false, false
	}
	if _, aliased := f.Label.(*cueast.Alias); aliased {
		return "", false, false
	}
	if isIdent && (strings.HasPrefix(name, "#") || strings.HasPrefix(name, "_")) {
		return name, false, name != "_"
	}
	return name, true, true
}

// cueExprProjection is what an expression, unified with a value of the
// input, reads of it; nil when it cannot be bounded.
func cueExprProjection(e cueast.Expr) *projection {
	switch e := e.(type) {
	case *cueast.ParenExpr:
		return cueExprProjection(e.X)
	case *cueast.StructLit:
		return cueStructProjection(e.Elts)
	case *cueast.ListLit:
		if len(e.Elts) == 1 {
			if el, ok := e.Elts[0].(*cueast.Ellipsis); ok && el.Type != nil {
				elem := cueExprProjection(el.Type)
				if elem == nil {
					return nil
				}
				return &projection{kind: projList, elem: elem}
			}
		}
		return wholeProjection
	case *cueast.BinaryExpr:
		if e.Op == token.AND {
			x, y := cueExprProjection(e.X), cueExprProjection(e.Y)
			if x == nil || y == nil {
				return nil
			}
			return mergeProjections(x, y)
		}
		return wholeProjection
	default:
		return wholeProjection
	}
}

func cueStructProjection(elts []cueast.Decl) *projection {
	var p structProjection
	for _, d := range elts {
		switch d := d.(type) {
		case *cueast.CommentGroup, *cueast.Attribute:
		case *cueast.Field:
			name, isData, ok := cueFieldName(d)
			if !ok {
				return nil
			}
			if !isData {
				continue
			}
			q := cueExprProjection(d.Value)
			if q == nil {
				return nil
			}
			p.add(name, q)
		case *cueast.Ellipsis:
			if d.Type != nil {
				return nil
			}
		case *cueast.EmbedDecl:
			q := cueExprProjection(d.Expr)
			if q == nil {
				return nil
			}
			p.merge(q)
		default: // let clauses, comprehensions, bad declarations
			return nil
		}
	}
	return p.build()
}

// structProjection builds a projStruct from fields in any order, as
// withField and mergeProjections would, in time n log n rather than n^2
// (a policy may declare tens of thousands of fields).
type structProjection struct {
	fields []projField
	// whole: an embedding that is not a struct made the value whole.
	whole bool
}

func (b *structProjection) add(name string, q *projection) {
	b.fields = append(b.fields, projField{name, q})
}

// merge is mergeProjections(b, q).
func (b *structProjection) merge(q *projection) {
	if q.kind != projStruct {
		b.whole = true
		return
	}
	b.fields = append(b.fields, q.fields...)
}

func (b *structProjection) build() *projection {
	if b.whole {
		return wholeProjection
	}
	slices.SortStableFunc(b.fields, func(x, y projField) int { return cmp.Compare(x.name, y.name) })
	var out []projField
	for _, f := range b.fields {
		if n := len(out); n > 0 && out[n-1].name == f.name {
			out[n-1].proj = mergeProjections(out[n-1].proj, f.proj)
			continue
		}
		out = append(out, f)
	}
	return &projection{kind: projStruct, fields: out}
}

// cuePredeclared are the predeclared identifiers a projected policy may
// use: types, ranges and functions of their arguments. `self` is not among
// them: it reads the enclosing struct.
var cuePredeclared = map[string]bool{
	"_": true, "string": true, "bytes": true, "bool": true, "int": true, "float": true, "number": true,
	"rune": true, "int8": true, "int16": true, "int32": true, "int64": true, "int128": true,
	"uint": true, "uint8": true, "uint16": true, "uint32": true, "uint64": true, "uint128": true,
	"float32": true, "float64": true,
	"len": true, "close": true, "and": true, "or": true, "div": true, "mod": true, "quo": true, "rem": true,
}

// cueReadsOnlyByUnification reports whether the file reads the input only by
// being unified with it: no comprehensions, let clauses, aliases, imports,
// pattern or dynamic labels, and every identifier that is referenced names
// a definition or a predeclared identifier. Required fields (x!:) are
// refused too.
func cueReadsOnlyByUnification(f *cueast.File) bool {
	ok := true
	var walk func(n cueast.Node)
	walk = func(n cueast.Node) {
		cueast.Walk(n, func(n cueast.Node) bool {
			if !ok {
				return false
			}
			switch n := n.(type) {
			case *cueast.Comprehension, *cueast.ForClause, *cueast.IfClause, *cueast.LetClause,
				*cueast.Alias, *cueast.ImportDecl, *cueast.ImportSpec, *cueast.Func,
				*cueast.BadExpr, *cueast.BadDecl, *cueast.FallbackClause, *cueast.TryClause:
				ok = false
			case *cueast.Field:
				if n.Alias != nil || n.Constraint == token.NOT {
					// Required fields: not worth reasoning about.
					ok = false
					return false
				}
				switch l := n.Label.(type) {
				case *cueast.Ident, *cueast.BasicLit:
				default:
					// Pattern and dynamic labels: rejected by the
					// projection, but scanned here too.
					walk(l)
				}
				walk(n.Value)
				return false
			case *cueast.SelectorExpr:
				walk(n.X) // n.Sel is a label, not a reference
				return false
			case *cueast.Ident:
				switch {
				case strings.HasPrefix(n.Name, "#"), strings.HasPrefix(n.Name, "_#"):
				case n.Node == nil && cuePredeclared[n.Name]:
				default:
					ok = false
				}
			}
			return ok
		}, nil)
	}
	for _, d := range f.Decls {
		if _, isPkg := d.(*cueast.Package); isPkg {
			continue
		}
		walk(d)
	}
	return ok
}

// regoProjection derives the projection of a compiled Rego module from its
// references to input: every ref input.a.b[x].c reads input.a.b, every
// element or value of it, and the whole of .c in each. Variables and
// numbers as keys read every element (or value); any other key reads the
// whole value it indexes. ok is false when the module uses input other than
// through such refs (`with input as`, or input itself as a value).
func regoProjection(mod *ast.Module) (proj *projection, ok bool) {
	proj = &projection{kind: projStruct}
	ok = true
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		if !ok {
			return true
		}
		switch x := x.(type) {
		case *ast.Expr:
			if len(x.With) > 0 {
				ok = false
				return true
			}
		case ast.Ref:
			if !x[0].Equal(ast.InputRootDocument) {
				return false
			}
			if len(x) == 1 {
				ok = false
				return true
			}
			proj = mergeProjections(proj, regoRefProjection(x[1:]))
			for _, t := range x[1:] { // dynamic keys may read input too
				vis.Walk(t)
			}
			return true
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) { // input as a value
				ok = false
				return true
			}
		}
		return false
	})
	vis.Walk(mod)
	if !ok || proj.kind != projStruct {
		return nil, false
	}
	return proj, true
}

// regoRefProjection is the projection of the input that a ref's path below
// input reads.
func regoRefProjection(path ast.Ref) *projection {
	if len(path) == 0 {
		return wholeProjection
	}
	rest := regoRefProjection(path[1:])
	switch k := path[0].Value.(type) {
	case ast.String:
		return (&projection{kind: projStruct}).withField(string(k), rest)
	case ast.Var, ast.Number:
		return &projection{kind: projIndex, elem: rest}
	default:
		return wholeProjection
	}
}
