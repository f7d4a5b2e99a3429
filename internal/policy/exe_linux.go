//go:build linux

package policy

// selfExecutable is what child processes (the compile sandbox, the
// evaluation workers) run: this process's own executable, through the
// kernel's link to it rather than by path, so that replacing or deleting
// the file on disk cannot make a child run something else (and, for the
// sandbox, report success for a body that was never tried).
func selfExecutable() (string, error) { return "/proc/self/exe", nil }
