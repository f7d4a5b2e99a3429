//go:build !linux || race

package policy

// limitAddressSpace does nothing here (elsewhere than Linux, or with the
// race detector, whose shadow memory needs a huge address space): the
// watchdog alone bounds the sandbox's memory.
func limitAddressSpace(int64) {}
