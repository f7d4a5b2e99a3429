//go:build linux && !race

package policy

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// limitAddressSpace caps the sandbox's address space at what it has mapped
// now plus limit and some slack, so that an allocation far beyond the
// memory limit (one string of 1 TB, or the doubling of one of 200 MiB)
// fails at once, a fatal "out of memory" of the sandbox, instead of
// touching memory until the watchdog sees it.
func limitAddressSpace(limit int64) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmSize:"))
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
		if err != nil {
			return
		}
		lim := kb<<10 + uint64(limit) + 128<<20 // #nosec G115 -- limit > 0, checked by the caller
		_ = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: lim, Max: lim})
		return
	}
}
