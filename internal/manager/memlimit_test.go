package manager

import (
	"strings"
	"testing"
)

func TestGoMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		value   string
		percent int
		want    int64
		err     string
	}{
		{"805306368", 65, 523449139, ""}, // 768Mi as the downward API writes it
		{"768Mi", 65, 523449139, ""},
		{"1Ti", 65, 714682558054, ""},
		{"1Gi", 100, 1 << 30, ""},
		{"", 65, 0, ""},         // not in a container with a limit: Go's default
		{"805306368", 0, 0, ""}, // turned off
		{"0", 65, 0, "is not a memory limit in bytes"},
		{"lots", 65, 0, `VIGIL_MEMORY_LIMIT="lots" is not a memory limit in bytes`},
		{"805306368", 101, 0, "--memory-limit-percent must be between 0 and 100, not 101"},
		{"805306368", -1, 0, "not -1"},
	} {
		got, err := GoMemoryLimit(c.value, c.percent)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("GoMemoryLimit(%q, %d) = %d, %v; want an error with %q", c.value, c.percent, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("GoMemoryLimit(%q, %d) = %d, %v; want %d", c.value, c.percent, got, err, c.want)
		}
	}
}
