//go:build !linux

package policy

import "os"

// selfExecutable is this process's executable by path: elsewhere than Linux
// there is no /proc/self/exe (see exe_linux.go).
func selfExecutable() (string, error) { return os.Executable() }
