package devenv

import (
	"os"
	"syscall"
)

// childProcAttr: Windows has no process groups in this sense; `vigil dev`
// is meant for Linux and macOS, this only keeps the package building.
func childProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// signalGroup kills the process: Windows cannot deliver SIGTERM.
func signalGroup(pid int, _ syscall.Signal) error {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill() // fails once it has exited, which is what we want
	}
	return nil
}
