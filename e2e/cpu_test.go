package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clockTicks is the unit of /proc/PID/stat's CPU times (USER_HZ), 100 on
// every Linux architecture Go builds for.
const clockTicks = 100

// cpuTimes is the CPU time (user and system) each part of a benchmark's
// cluster has used so far: kube-apiserver, etcd, Vigil, and this test
// process (the benchmark's own clients and watches), by name.
type cpuTimes map[string]time.Duration

// cpuNow reads the CPU times of this process and its descendants.
func cpuNow(b *testing.B) cpuTimes {
	b.Helper()
	t := cpuTimes{"bench": procCPU(os.Getpid())}
	for _, p := range descendants(b, os.Getpid()) {
		t[cpuPart(p.cmdline)] += procCPU(p.pid)
	}
	return t
}

// cpuPart names a process by its executable: kube-apiserver, etcd, vigil,
// or the executable's base name.
func cpuPart(cmdline string) string {
	exe, _, _ := strings.Cut(cmdline, " ")
	return filepath.Base(exe)
}

// procCPU is the CPU time process pid has used, 0 once it is gone.
func procCPU(pid int) time.Duration {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: the fields
	// that follow it start with the state (field 3); utime and stime
	// are fields 14 and 15.
	_, rest, ok := strings.Cut(string(stat), ") ")
	if !ok {
		return 0
	}
	fields := strings.Fields(rest)
	if len(fields) < 13 {
		return 0
	}
	user, _ := strconv.ParseInt(fields[11], 10, 64)
	system, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(user+system) * time.Second / clockTicks
}

func (t cpuTimes) minus(earlier cpuTimes) cpuTimes {
	d := cpuTimes{}
	for part, used := range t {
		d[part] = used - earlier[part]
	}
	return d
}

// per says the CPU each part used per write, in milliseconds, and in all.
func (t cpuTimes) per(writes int) string {
	parts := slices.Sorted(maps.Keys(t))
	out := make([]string, 0, len(parts)+1)
	var total time.Duration
	for _, part := range parts {
		total += t[part]
		out = append(out, fmt.Sprintf("%s %.2f", part, t.msPer(part, writes)))
	}
	return fmt.Sprintf("%s; all %.2f ms of CPU per write (%.1f s in all)",
		strings.Join(out, ", "), float64(total)/float64(time.Millisecond)/float64(writes), total.Seconds())
}

func (t cpuTimes) msPer(part string, writes int) float64 {
	return float64(t[part]) / float64(time.Millisecond) / float64(writes)
}

func TestProcCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	before := procCPU(os.Getpid())
	deadline := time.Now().Add(300 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		_ = strconv.Itoa(n) // spin: CPU, not sleep
	}
	if used := procCPU(os.Getpid()) - before; used < 100*time.Millisecond {
		t.Fatalf("300 ms of spinning counted %s of CPU", used)
	}
	if got := cpuPart("/work/bin/kube-apiserver --etcd-servers=x"); got != "kube-apiserver" {
		t.Fatalf("cpuPart named kube-apiserver %q", got)
	}
}
