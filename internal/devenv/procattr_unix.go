//go:build unix && !linux

package devenv

import "syscall"

// childProcAttr puts a child in a process group of its own, so that stopping
// it stops its descendants and a Ctrl-C in the terminal reaches only vigil.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
