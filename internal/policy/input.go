package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// inputBuilder assembles the documents CIP-level policies judge,
// {"authorityMatches", "config", "metadata", "spec", "typemeta"}, for one decision.
// Each policy gets its own document: the part of the object its projection
// reads, written directly from the object's map, or for policies without a
// projection the whole document, whose parts are written at most once per
// decision however many policies read them.
type inputBuilder struct {
	obj  *Object
	subj string

	metadata    map[string]any // without managedFields, built on first use
	hasMetadata bool
	metaDone    bool
	typeMeta    map[string]any

	// cur, when set, is the outcome of the authorities for the image whose
	// body is being evaluated; otherwise the policy's static outcome.
	cur *authorityOutcome

	// whole JSON of the metadata, spec and typemeta parts, on first use.
	wholeJSON [len(inputKeys)][]byte
}

func newInputBuilder(obj *Object) *inputBuilder {
	return &inputBuilder{obj: obj}
}

// subject is obj.subject(), once per decision.
func (b *inputBuilder) subject() string {
	if b.subj == "" {
		b.subj = b.obj.subject()
	}
	return b.subj
}

// satisfies is the explanation of a pass, `Pod "name" satisfies policy`,
// in one allocation.
func (b *inputBuilder) satisfies(policy string) string {
	const verb = " satisfies "
	o := b.obj
	if o.Name == "" || !simpleString(o.Name) {
		return b.subject() + verb + policy
	}
	var sb strings.Builder
	sb.Grow(len(o.Kind) + len(o.Name) + len(verb) + len(policy) + 3)
	sb.WriteString(o.Kind)
	sb.WriteString(` "`)
	sb.WriteString(o.Name) // strconv.Quote leaves it as it is
	sb.WriteString(`"`)
	sb.WriteString(verb)
	sb.WriteString(policy)
	return sb.String()
}

// The input's top-level keys, in the (sorted) order documents are written.
var inputKeys = [...]string{"authorityMatches", "config", "metadata", "spec", "typemeta"}

// part is the value of a top-level key of p's input and whether the input has it.
func (b *inputBuilder) part(p *CompiledPolicy, key string) (any, bool) {
	switch key {
	case "authorityMatches":
		if b.cur != nil {
			return b.cur.matches, true
		}
		return p.matches, true
	case "config": // fetchConfigFile: the image's config files, per image
		if b.cur == nil || b.cur.config == nil {
			return nil, false
		}
		return b.cur.config, true
	case "metadata":
		if !p.includeMeta {
			return nil, false
		}
		if !b.metaDone {
			b.metaDone = true
			// managedFields is dropped: it says who wrote which field, not
			// what the object is, and it changes with every writer.
			if md, ok := b.obj.content["metadata"].(map[string]any); ok {
				if _, has := md["managedFields"]; has {
					md = maps.Clone(md)
					delete(md, "managedFields")
				}
				b.metadata, b.hasMetadata = md, true
			}
		}
		return b.metadata, b.hasMetadata
	case "spec":
		if !p.includeSpec {
			return nil, false
		}
		s, ok := b.obj.content["spec"]
		return s, ok
	case "typemeta":
		if !p.includeType {
			return nil, false
		}
		if b.typeMeta == nil {
			b.typeMeta = map[string]any{"kind": b.obj.Kind, "apiVersion": b.obj.APIVersion}
		}
		return b.typeMeta, true
	}
	return nil, false
}

// build returns p's input: its projection of the document, or the whole
// document when p has none.
func (b *inputBuilder) build(p *CompiledPolicy) evalInput {
	in := evalInput{builder: b, policy: p, podSpec: b.obj.workload.podSpec, projected: p.proj != nil}
	// The document follows the policy's generation, the cache key's prefix.
	in.buf = inputBuffers.Get().(*[]byte)
	buf := append((*in.buf)[:0], 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint64(buf, uint64(p.Generation)) // #nosec G115 -- bit reinterpretation for a cache key
	buf = append(buf, '{')
	const doc = 8
	for i, key := range inputKeys {
		v, ok := b.part(p, key)
		if !ok {
			continue
		}
		var q *projection
		if p.proj != nil {
			if q = p.proj.field(key); q == nil {
				continue // the policy does not read it
			}
		}
		if len(buf) > doc+1 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, key)
		buf = append(buf, ':')
		start := len(buf)
		switch {
		case i == 0 && (q == nil || q.kind == projWhole):
			if b.cur != nil {
				buf = append(buf, b.cur.matchesJSON...)
			} else {
				buf = append(buf, p.matchesJSON...)
			}
		case key == "config" && (q == nil || q.kind == projWhole):
			buf = append(buf, b.cur.configJSON...)
		case q != nil && q.kind != projWhole:
			buf = appendProjected(buf, v, q)
		default: // the whole part, written once per decision
			if b.wholeJSON[i] == nil {
				b.wholeJSON[i] = appendJSON(nil, v)
			}
			buf = append(buf, b.wholeJSON[i]...)
		}
		in.parts[in.nparts] = inputPart{key: key, start: start - doc, end: len(buf) - doc}
		in.nparts++
	}
	buf = append(buf, '}')
	*in.buf = buf
	in.key = sha256.Sum256(buf)
	in.json = buf[doc:]
	return in
}

// inputBuffers recycle the buffers of inputs that no policy body read
// (decided from the cache or natively); a body's results may keep
// references to the JSON it compiled.
var inputBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// release returns the input's buffer; the input must not be used after.
func (in *evalInput) release() {
	if in.buf != nil && cap(*in.buf) <= 64<<10 {
		inputBuffers.Put(in.buf)
	}
	in.buf, in.json = nil, nil
}

// document is the whole input document of p as Go values, which
// explanations quote. It is built only when a policy fails.
func (b *inputBuilder) document(p *CompiledPolicy) map[string]any {
	doc := map[string]any{}
	for _, key := range inputKeys {
		if v, ok := b.part(p, key); ok {
			doc[key] = v
		}
	}
	return doc
}

// appendProjected writes the JSON of the part of v that q reads, keys sorted.
func appendProjected(buf []byte, v any, q *projection) []byte {
	switch q.kind {
	case projStruct:
		m, ok := v.(map[string]any)
		if !ok {
			break
		}
		buf = append(buf, '{')
		first := true
		for _, f := range q.fields {
			x, ok := m[f.name]
			if !ok {
				continue
			}
			if !first {
				buf = append(buf, ',')
			}
			first = false
			buf = appendJSONString(buf, f.name)
			buf = append(buf, ':')
			buf = appendProjected(buf, x, f.proj)
		}
		return append(buf, '}')
	case projList, projIndex:
		switch x := v.(type) {
		case []any:
			buf = append(buf, '[')
			for i, e := range x {
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = appendProjected(buf, e, q.elem)
			}
			return append(buf, ']')
		case map[string]any:
			if q.kind != projIndex {
				break
			}
			return appendMap(buf, x, func(buf []byte, v any) []byte { return appendProjected(buf, v, q.elem) })
		}
	}
	return appendJSON(buf, v)
}

// appendJSON writes v as encoding/json would (keys sorted, HTML-safe
// escaping), fast for the types JSON decodes to.
func appendJSON(buf []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...)
	case bool:
		if x {
			return append(buf, "true"...)
		}
		return append(buf, "false"...)
	case string:
		return appendJSONString(buf, x)
	case json.Number:
		if x == "" {
			return append(buf, '0')
		}
		if json.Valid([]byte(x)) {
			return append(buf, x...)
		}
	case map[string]any:
		return appendMap(buf, x, appendJSON)
	case []any:
		buf = append(buf, '[')
		for i, e := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSON(buf, e)
		}
		return append(buf, ']')
	}
	raw, err := json.Marshal(v)
	if err != nil { // values come from JSON; cannot happen
		raw = []byte("null")
	}
	return append(buf, raw...)
}

func appendMap(buf []byte, m map[string]any, value func([]byte, any) []byte) []byte {
	var arr [32]string
	keys := arr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	buf = append(buf, '{')
	for i, k := range keys {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, k)
		buf = append(buf, ':')
		buf = value(buf, m[k])
	}
	return append(buf, '}')
}

// appendJSONString writes s quoted as encoding/json does.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			raw, _ := json.Marshal(s)
			return append(buf, raw...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// evalBody evaluates the policy body, reusing the result for an input seen
// before: a body result is a pure function of the compiled policy and the
// input it evaluates, so the key is the policy's generation and a hash of
// exactly that input (its projection), which the replicas of a workload share.
// read reports whether the input's JSON may still be referenced (by an
// in-process evaluation's results, or a worker request being abandoned).
func (p *CompiledPolicy) evalBody(b *budget, in evalInput) (r bodyResult, read bool) {
	// A body that reads the clock is not a pure function of its input.
	pure := !p.body.timeDependent()
	if r, ok := p.cache.get(in.key); ok && pure {
		return r, false
	}
	if e, ok := p.body.(*cueEvaluator); ok {
		if r, ok := e.evaluateNative(in); ok {
			p.cache.put(in.key, r) // CUE has no clock
			return r, false
		}
	}
	if p.workers != nil {
		var inputDone bool
		r, inputDone = p.workers.evaluate(b, p, in)
		read = !inputDone
	} else {
		r, read = p.evaluateInProcess(b, in), true
	}
	if !r.errored && pure { // errors may be transient (a deadline)
		p.cache.put(in.key, r)
	}
	return r, read
}

// evaluateInProcess evaluates the body in this process within b. Rego stops
// at the deadline; CUE cannot be interrupted, so an evaluation that overruns
// is abandoned: it finishes in the background and its result is dropped.
// Nothing else waits for it, so it delays no other object; but its CPU and
// memory are not bounded, which is why the webhook and the reconcilers
// evaluate in workers (Compiler.Workers).
func (p *CompiledPolicy) evaluateInProcess(b *budget, in evalInput) bodyResult {
	if b.deadline.IsZero() && b.ctx.Done() == nil {
		return p.body.evaluateFully(b.ctx, in)
	}
	ctx, cancel := b.evalContext()
	defer cancel()
	done := make(chan bodyResult, 1)
	go func() { done <- p.body.evaluateFully(ctx, in) }()
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		select {
		case r := <-done: // it finished just now
			return r
		default:
		}
		return p.overran(b)
	}
}

// overran is the result of an evaluation stopped at the end of b.
func (p *CompiledPolicy) overran(b *budget) bodyResult {
	return bodyResult{
		err:     fmt.Errorf("failed evaluating %s policy for ClusterImagePolicy: the evaluation took longer than %s", p.typ, b.limit()),
		errored: true,
	}
}

// boundedCache is a bounded map from a hash to a value. When the current
// generation is full it becomes the previous one, so recently used entries
// survive and memory stays bounded by two generations. A nil cache holds
// nothing.
type boundedCache[V any] struct {
	mu        sync.Mutex
	cur, prev map[[sha256.Size]byte]V
	size      int
}

// resultCache holds body results by the hash of their input.
type resultCache = boundedCache[bodyResult]

const resultCacheSize = 1024

func newResultCache(size int) *resultCache { return newBoundedCache[bodyResult](size) }

func newBoundedCache[V any](size int) *boundedCache[V] {
	return &boundedCache[V]{cur: map[[sha256.Size]byte]V{}, size: size}
}

func (c *boundedCache[V]) get(k [sha256.Size]byte) (V, bool) {
	if c == nil {
		var none V
		return none, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.cur[k]; ok {
		return v, true
	}
	v, ok := c.prev[k]
	if ok {
		c.putLocked(k, v)
	}
	return v, ok
}

func (c *boundedCache[V]) put(k [sha256.Size]byte, v V) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, v)
}

func (c *boundedCache[V]) putLocked(k [sha256.Size]byte, v V) {
	if len(c.cur) >= c.size {
		c.prev, c.cur = c.cur, make(map[[sha256.Size]byte]V, c.size)
	}
	c.cur[k] = v
}
