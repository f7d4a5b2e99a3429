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
	// It leaves a third of the default 768 MiB (269 MiB) to the child process
	// that compiles a new policy, which is stopped past 256 MiB, and to what
	// Go does not account for.
	DefaultMemoryLimitPercent = 65
)

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
