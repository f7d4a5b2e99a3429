package manager

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Go's soft memory limit (GOMEMLIMIT) is set at start from the container's
// memory limit, which Go cannot read itself and the downward API gives in
// bytes only; GOMEMLIMIT must be a fraction of it (docs/reliability.md).
const (
	// MemoryLimitEnv holds the container's memory limit in bytes; the
	// manifests set it from the downward API (resourceFieldRef limits.memory).
	MemoryLimitEnv = "VIGIL_MEMORY_LIMIT"
	// DefaultMemoryLimitPercent of the container's limit is Go's soft limit.
	// Of the default 1 GiB it leaves 666 MiB to the child processes that
	// share the container: the one that compiles a new policy (stopped past
	// 256 MiB) and the two that evaluate CUE and Rego (each stopped past 192
	// MiB), and to what Go does not account for. Vigil itself needs about
	// 75 MiB plus 1.7 KiB per pod (BENCHMARKS.md, benchmark 6): 358 MiB covers
	// well over 100,000 pods with room for the collector.
	DefaultMemoryLimitPercent = 35
)

// DefaultGCPercent is Go's GOGC for the controller: the heap may grow by
// half what is live before a collection, not by all of it as Go's default
// lets it. Most of a replica's heap at scale is its caches, which live as
// long as the pods do, so Go's default doubles them in the peak the process
// holds: at 30,000 pods this keeps about 15 MiB out of its resident memory
// (122.5 against 136.8 MiB), for collections twice as frequent, which a
// policy change over 2,000 pods did not show in its time (BENCHMARKS.md,
// benchmark 6).
const DefaultGCPercent = 50

// GoMemoryLimit is percent of the memory limit value (bytes, or a Kubernetes
// quantity such as 768Mi); 0, for no limit, when value is empty or percent 0.
func GoMemoryLimit(value string, percent int) (int64, error) {
	if percent < 0 || percent > 100 {
		return 0, fmt.Errorf("--memory-limit-percent must be between 0 and 100, not %d", percent)
	}
	if value == "" || percent == 0 {
		return 0, nil
	}
	q, err := resource.ParseQuantity(value)
	if err != nil || q.Sign() <= 0 {
		return 0, fmt.Errorf("$%s=%q is not a memory limit in bytes", MemoryLimitEnv, value)
	}
	bytes, ok := q.AsInt64()
	if !ok {
		return 0, fmt.Errorf("$%s=%q is out of range", MemoryLimitEnv, value)
	}
	// bytes * percent / 100, exactly and without overflow.
	p := int64(percent)
	return bytes/100*p + bytes%100*p/100, nil
}
