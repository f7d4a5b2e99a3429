package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"sync"
)

// inputBuilder assembles the JSON document CIP-level policies judge:
// {"authorityMatches", "metadata", "spec", "typemeta"}, each part marshalled
// at most once per decision however many policies read it.
type inputBuilder struct {
	obj                      *Object
	spec, metadata, typeMeta []byte
	doc                      map[string]any
}

func newInputBuilder(obj *Object) *inputBuilder {
	return &inputBuilder{obj: obj, doc: obj.inputDocument(true, true, true)}
}

func (b *inputBuilder) part(cache *[]byte, key string) []byte {
	if *cache == nil {
		v, ok := b.doc[key]
		if !ok {
			*cache = []byte{}
			return nil
		}
		raw, err := json.Marshal(v)
		if err != nil { // values come from JSON; cannot happen
			raw = []byte("null")
		}
		*cache = raw
	}
	return *cache
}

// build returns the input for the authorities that passed and the include flags.
func (b *inputBuilder) build(passed []string, spec, objectMeta, typeMeta bool) evalInput {
	matches := make(map[string]any, len(passed))
	for _, n := range passed {
		matches[n] = map[string]any{"static": true}
	}
	doc := map[string]any{"authorityMatches": matches}
	var buf bytes.Buffer
	am, _ := json.Marshal(matches)
	buf.WriteString(`{"authorityMatches":`)
	buf.Write(am)
	add := func(include bool, key string, cache *[]byte) {
		if !include {
			return
		}
		if raw := b.part(cache, key); len(raw) > 0 {
			buf.WriteString(`,"` + key + `":`)
			buf.Write(raw)
			doc[key] = b.doc[key]
		}
	}
	add(objectMeta, "metadata", &b.metadata)
	add(spec, "spec", &b.spec)
	add(typeMeta, "typemeta", &b.typeMeta)
	buf.WriteString("}")
	return evalInput{json: buf.Bytes(), doc: doc, podSpec: b.obj.workload.podSpec}
}

// evalBody evaluates the policy body, reusing the result for an input seen
// before: a decision is a pure function of the compiled policy and its input,
// and the replicas of a workload share theirs.
func (p *CompiledPolicy) evalBody(ctx context.Context, in evalInput) bodyResult {
	h := sha256.New()
	for _, s := range in.podSpec {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(in.json)
	var key [sha256.Size]byte
	h.Sum(key[:0])
	if r, ok := p.cache.get(key); ok {
		return r
	}
	r := p.body.evaluate(ctx, in)
	if !r.errored { // errors may be transient (a cancelled context)
		p.cache.put(key, r)
	}
	return r
}

// resultCache is a bounded map from input hash to result. When the current
// generation is full it becomes the previous one, so recently used entries
// survive and memory stays bounded by two generations.
type resultCache struct {
	mu        sync.Mutex
	cur, prev map[[sha256.Size]byte]bodyResult
	size      int
}

const resultCacheSize = 1024

func newResultCache(size int) *resultCache {
	return &resultCache{cur: map[[sha256.Size]byte]bodyResult{}, size: size}
}

func (c *resultCache) get(k [sha256.Size]byte) (bodyResult, bool) {
	if c == nil {
		return bodyResult{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.cur[k]; ok {
		return r, true
	}
	r, ok := c.prev[k]
	if ok {
		c.putLocked(k, r)
	}
	return r, ok
}

func (c *resultCache) put(k [sha256.Size]byte, r bodyResult) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, r)
}

func (c *resultCache) putLocked(k [sha256.Size]byte, r bodyResult) {
	if len(c.cur) >= c.size {
		c.prev, c.cur = c.cur, make(map[[sha256.Size]byte]bodyResult, c.size)
	}
	c.cur[k] = r
}
