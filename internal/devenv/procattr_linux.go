package devenv

import "syscall"

// childProcAttr puts a child in a process group of its own (so that stopping
// it stops its descendants, and a Ctrl-C in the terminal reaches only vigil,
// which then stops the children in order) and has the kernel kill it if vigil
// itself dies without stopping it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
