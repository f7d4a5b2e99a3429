package policy

// TimeDependent reports whether the policy's CIP-level body reads the clock
// (Rego's time.now_ns): its result may change as time passes with nothing
// else changed, so it is never taken from the body result cache and a
// caller judges it again on a schedule.
func (p *CompiledPolicy) TimeDependent() bool {
	return p.body != nil && p.body.timeDependent()
}
