package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/verify"
)

// attestationPolicy is one `attestations` entry of a key or keyless
// authority: the predicate type asked of the verifier and the CUE or Rego
// policy every statement of that type is judged by (nil: none, any
// verified statement of the type will do).
type attestationPolicy struct {
	name, predicateType string
	eval                evaluator
	typ                 string // cue or rego
	// cache holds results by statement: a statement's ID is the digest of
	// the layer or referrer that carries it, so it names its content.
	cache *resultCache
	// turns holds, for a policy that reads the clock, when its verdict on
	// each statement next changes (judgeOnClock); nil otherwise.
	turns *boundedCache[turn]
}

// attestationCacheSize bounds the results kept per attestation policy.
const attestationCacheSize = 256

// compileAttestations compiles the attestations of authority i: an inline
// body, or one from configMapRef or remote through the Resolver.
func (c Compiler) compileAttestations(cipName string, i int, a *v1beta1.Authority) ([]*attestationPolicy, error) {
	var out []*attestationPolicy
	for _, att := range a.Attestations {
		ap := &attestationPolicy{name: att.Name, predicateType: att.PredicateType}
		if pol := att.Policy; pol != nil {
			// policy-controller names attestations without their index.
			field := child(child(index("spec.authorities", i), "attestations"), "policy")
			data, err := c.policyData(cipName, field, pol)
			if err != nil {
				return nil, err
			}
			if ap.eval, err = c.compileInline(cipName, field, pol.Type, data, nil); err != nil {
				return nil, err
			}
			ap.typ, ap.cache = pol.Type, newResultCache(attestationCacheSize)
			if ap.eval.timeDependent() {
				ap.turns = newBoundedCache[turn](attestationCacheSize)
			}
		}
		out = append(out, ap)
	}
	return out, nil
}

// predicateTypes are the types the authority asks the verifier for.
func predicateTypes(atts []*attestationPolicy) []string {
	types := make([]string, len(atts))
	for i, ap := range atts {
		types[i] = ap.predicateType
	}
	return types
}

// judge evaluates the attestation's policy for one verified statement, the
// in-toto statement as policy-controller gives it. Errors carry
// policy-controller's text with the attestation's name where the CIP-level
// body says ClusterImagePolicy. turnsAt is when the verdict will change as
// time passes, for a policy that reads the clock; zero otherwise.
func (ap *attestationPolicy) judge(ctx context.Context, att verify.Attestation) (r bodyResult, turnsAt time.Time) {
	if ap.eval == nil {
		return bodyResult{}, time.Time{}
	}
	key := sha256.Sum256([]byte(att.ID))
	if ap.eval.timeDependent() {
		return ap.judgeOnClock(ctx, key, att.Statement)
	}
	if cached, ok := ap.cache.get(key); ok {
		return cached, time.Time{}
	}
	r = ap.named(ap.eval.evaluate(ctx, evalInput{json: att.Statement}))
	if !r.errored {
		ap.cache.put(key, r)
	}
	return r, time.Time{}
}

// named puts the attestation's name in an evaluation error.
func (ap *attestationPolicy) named(r bodyResult) bodyResult {
	if r.err != nil {
		r.err = errors.New(ap.rename(r.err.Error()))
	}
	return r
}

// rename puts the attestation's name in an evaluation error, as
// policy-controller's EvaluatePolicyAgainstJSON(name, ...) words it.
func (ap *attestationPolicy) rename(msg string) string {
	switch {
	case strings.HasPrefix(msg, cuePrefix):
		return "failed evaluating cue policy for " + ap.name + ": " + strings.TrimPrefix(msg, cuePrefix)
	case strings.HasPrefix(msg, regoPrefix):
		return "failed evaluating rego policy for type " + ap.name + ": " + strings.TrimPrefix(msg, regoPrefix)
	}
	return msg
}

// checkAttestations verifies the authority's attestations and judges each
// with its policy, as policy-controller's ValidatePolicyAttestationsForAuthority:
// every attestation entry needs one statement of its type that verifies
// and passes its policy; statements that fail it are skipped, and when none
// passes the first failure is the authority's error. A policy's warning
// fails it, as in policy-controller. On a pass, authorityMatches holds
// {"attestations": {name: [{id, subject, issuer, predicateType, digest}]}}.
func (s *signatureAuthority) checkAttestations(b *budget, vf *Verification, a *verify.Authority, req verify.Request) signatureOutcome {
	ev, err := vf.Verifier.VerifyAttestations(b.ctx, a, req, s.predicateTypes...)
	if err != nil {
		return verificationFailure(err)
	}
	// The policies run within the policy's budget; the verification above
	// within the request's, since the verifier caches what it finds.
	ctx, cancel := b.evalContext()
	defer cancel()
	out := signatureOutcome{expires: passRecheck(ev.RefreshAt, ev.ExpiresAt)}
	matches := make(map[string]any, len(s.attestations))
	for _, ap := range s.attestations {
		out.timeDependent = out.timeDependent || (ap.eval != nil && ap.eval.timeDependent())
		var passed []any
		var first *bodyResult
		for _, att := range ev.ByType[ap.predicateType] {
			r, turnsAt := ap.judge(ctx, att)
			// The outcome may change when any verdict it rests on does.
			out.expires = earliest(out.expires, turnsAt)
			if r.err != nil {
				if first == nil {
					first = &r
				}
				continue
			}
			passed = append(passed, attestationMatch(att, ap.predicateType))
		}
		if len(passed) == 0 {
			if first == nil { // the verifier returns every type asked for
				out.err, out.errored = fmt.Sprintf("no matching attestations with type %s", ap.predicateType), true
				return out
			}
			out.err, out.errored = first.err.Error(), first.errored
			return out
		}
		matches[ap.name] = passed
	}
	out.match = map[string]any{"attestations": matches}
	return out
}

// attestationMatch is one passing statement in authorityMatches, with the
// signature's fields and the predicate type as the policy names it.
func attestationMatch(att verify.Attestation, predicateType string) map[string]any {
	m := map[string]any{"id": att.ID, "predicateType": predicateType, "digest": att.ID}
	if att.Subject != "" {
		m["subject"] = att.Subject
	}
	if att.Issuer != "" {
		m["issuer"] = att.Issuer
	}
	return m
}
