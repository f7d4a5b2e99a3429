package policy

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TimeDependent reports whether the policy reads the clock (Rego's
// time.now_ns), in its CIP-level body or in an attestation policy: its
// result may change as time passes with nothing else changed, so the body
// is never taken from the result cache and a caller judges it again on a
// schedule.
func (p *CompiledPolicy) TimeDependent() bool {
	return p.attestationClock || (p.body != nil && p.body.timeDependent())
}

// attestationsReadClock reports whether an attestation policy of a key or
// keyless authority reads the clock.
func attestationsReadClock(authorities []authority) bool {
	for _, a := range authorities {
		if a.sig == nil {
			continue
		}
		for _, ap := range a.sig.attestations {
			if ap.eval != nil && ap.eval.timeDependent() {
				return true
			}
		}
	}
	return false
}

// When a result that reads the clock turns. An attestation policy's
// verdict on one statement (a scan's age against its limit) changes at a
// moment the decision can find by evaluating the policy at future times,
// as OPA allows (rego.EvalTime): the verify path then queues the pod for
// that moment (Decision.RecheckAt) instead of finding out at the next
// periodic recheck. The search is bounded in time ahead and in
// evaluations, and done once per statement and verdict, not per pod.
const (
	// turnHorizon is how far ahead a turn is looked for: the catalog's
	// ages count in days (15 for a scan, 30 for an image), and a year
	// covers a yearly rule. Past it the periodic recheck stands alone.
	turnHorizon = 366 * 24 * time.Hour
	// maxTurnProbes bounds the evaluations of one search: doubling steps
	// from a second reach the horizon in 26, halving the last step back
	// to a second takes 25 more.
	maxTurnProbes = 64
)

// verdictOf classifies a body result: pass, fail or error.
func verdictOf(r bodyResult) verdict {
	switch {
	case r.err == nil:
		return verdictPass
	case r.errored:
		return verdictError
	}
	return verdictFail
}

// nextTurn is the first whole second after from, within turnHorizon, at
// which verdictAt gives another verdict than was, or zero when there is
// none or ctx ends first. It doubles its step from a second until the
// verdict differs, then halves the last step down to a second: exact for
// a verdict that changes once, such as an age crossing its limit. A
// verdict that changes and changes back between two probes goes unseen;
// the periodic clock recheck (Options.ClockRecheck) catches it.
func nextTurn(ctx context.Context, from time.Time, was verdict, verdictAt func(time.Time) verdict) time.Time {
	base := from.Truncate(time.Second)
	probes := 0
	// differs probes base+off; ok is false once ctx has ended, when the
	// verdict says nothing about the time.
	differs := func(off time.Duration) (changed, ok bool) {
		probes++
		v := verdictAt(base.Add(off))
		return v != was, ctx.Err() == nil
	}
	var lo, hi time.Duration // the verdict is was at base+lo, not at base+hi
	for step := time.Second; ; step *= 2 {
		off := min(step, turnHorizon)
		changed, ok := differs(off)
		if !ok {
			return time.Time{}
		}
		if changed {
			hi = off
			break
		}
		if off == turnHorizon {
			return time.Time{}
		}
		lo = off
	}
	// Out of probes, hi is still a moment by which the verdict changed.
	for hi-lo > time.Second && probes < maxTurnProbes {
		mid := lo + ((hi - lo) / 2).Truncate(time.Second)
		changed, ok := differs(mid)
		if !ok {
			return time.Time{}
		}
		if changed {
			hi = mid
		} else {
			lo = mid
		}
	}
	return base.Add(hi)
}

// turn is when a verdict of a policy that reads the clock, on one input,
// next changes, as looked for at found.
type turn struct {
	verdict verdict
	found   time.Time
	at      time.Time // zero: no change within turnHorizon of found
}

// holds reports whether the turn looked for earlier still answers at now,
// when the verdict is v: the verdict has not changed since found, and now
// is before the turn (or the horizon).
func (t turn) holds(now time.Time, v verdict) bool {
	end := t.at
	if end.IsZero() {
		end = t.found.Add(turnHorizon)
	}
	return t.verdict == v && !now.Before(t.found) && now.Before(end)
}

// judgeOnClock evaluates an attestation policy that reads the clock on one
// statement at the time its clock reads, and says when that verdict next
// changes (zero: not within turnHorizon, or unknown). The turn is looked
// for once per statement and verdict (ap.turns), so that the pods running
// one image share the search.
func (ap *attestationPolicy) judgeOnClock(ctx context.Context, key [sha256.Size]byte, statement []byte) (bodyResult, time.Time) {
	e, ok := ap.eval.(*regoEvaluator)
	if !ok { // only Rego reads the clock
		return ap.named(ap.eval.evaluate(ctx, evalInput{json: statement})), time.Time{}
	}
	input, err := regoInput(statement)
	if err != nil {
		return ap.named(regoInputError(err)), time.Time{}
	}
	now := e.clock()
	r := ap.named(e.evaluateAt(ctx, input, now))
	return r, e.turnOf(ctx, ap.turns, key, now, verdictOf(r), func() (ast.Value, error) { return input, nil })
}

// turnOf is when e's verdict v on the input key, found at now, next
// changes: the turn held in turns while it still answers, else what a search
// (nextTurn) finds, which turns then holds. parse gives the input, read
// only for a search. Zero when nothing changes within turnHorizon, or when
// the input cannot be read or ctx ends first.
func (e *regoEvaluator) turnOf(ctx context.Context, turns *boundedCache[turn], key [sha256.Size]byte, now time.Time, v verdict, parse func() (ast.Value, error)) time.Time {
	if t, ok := turns.get(key); ok && t.holds(now, v) {
		return t.at
	}
	if ctx.Err() != nil {
		return time.Time{}
	}
	input, err := parse()
	if err != nil {
		return time.Time{}
	}
	at := nextTurn(ctx, now, v, func(t time.Time) verdict { return verdictOf(e.evaluateAt(ctx, input, t)) })
	if ctx.Err() == nil {
		turns.put(key, turn{verdict: v, found: now, at: at})
	}
	return at
}

// bodyTurn is when the verdict of a CIP-level Rego body that reads the
// clock (the catalog's maximum image age) on input next changes, zero when
// the body does not read the clock, could not be evaluated, or does not
// turn within turnHorizon. As for attestations, the turn is looked for once
// per input and verdict (p.turns), so the replicas of a workload share the
// search; the probes run in this process, within the decision's budget.
func (p *CompiledPolicy) bodyTurn(ctx context.Context, in evalInput, r bodyResult) time.Time {
	e, ok := p.body.(*regoEvaluator)
	if !ok || !e.timeDependent() || r.errored {
		return time.Time{}
	}
	return e.turnOf(ctx, p.turns, in.key, e.clock(), verdictOf(r), func() (ast.Value, error) { return regoInput(in.json) })
}
