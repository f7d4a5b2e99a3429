package policy

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
