//go:build !linux

package devenv

// shimmed starts bins as they are: only Linux has a parent-death signal.
func shimmed(_ string, bins map[string]string) (map[string]string, func(), error) {
	return bins, func() {}, nil
}
