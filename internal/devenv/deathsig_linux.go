package devenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// etcd and kube-apiserver are started by envtest, which sets no parent-death
// signal; were vigil killed (kill -9), they would keep running. So envtest
// starts them through a shim: a symlink, named after the binary, to vigil's
// own executable, which at init sets the parent-death signal (SIGKILL) and
// execs the real binary. The signal survives execve.
//
// The kernel sends it when the *thread* that forked the child exits, not the
// process; Go may end a thread whose goroutine exits while locked to it. So
// every child is started from one goroutine locked to its thread for the
// cluster's life (startThread), which no other goroutine runs on.

// shimEnv maps shim names to real binaries, "name=path" entries separated by
// newlines; shimParentEnv is the pid of the process that started the shim.
const (
	shimEnv       = "VIGIL_DEVENV_SHIM"
	shimParentEnv = "VIGIL_DEVENV_SHIM_PARENT"
)

func init() {
	table, ok := os.LookupEnv(shimEnv)
	if !ok {
		return
	}
	name := filepath.Base(os.Args[0])
	var real string
	for _, entry := range strings.Split(table, "\n") {
		if n, p, ok := strings.Cut(entry, "="); ok && n == name {
			real = p
		}
	}
	if real == "" {
		return // not a shim: vigil itself, started by a child of the shim's
	}
	os.Exit(runShim(real))
}

// runShim sets the parent-death signal and execs real; it returns only on
// failure.
func runShim(real string) int {
	runtime.LockOSThread() // prctl and exec on the same thread
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "vigil dev: set the parent-death signal of %s: %v\n", real, errno)
		return 1
	}
	// The parent may have died before the signal was set.
	if parent, err := strconv.Atoi(os.Getenv(shimParentEnv)); err != nil || os.Getppid() != parent {
		fmt.Fprintf(os.Stderr, "vigil dev: %s not started: its parent %d is gone (now %d)\n", real, parent, os.Getppid())
		return 1
	}
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, shimEnv+"=") && !strings.HasPrefix(e, shimParentEnv+"=") {
			env = append(env, e)
		}
	}
	args := append([]string{real}, os.Args[1:]...)
	err := syscall.Exec(real, args, env) // #nosec G204 G702 -- a binary of --assets that devenv chose
	fmt.Fprintf(os.Stderr, "vigil dev: exec %s: %v\n", real, err)
	return 1
}

// shimmed returns paths for envtest to start bins through the shim, in dir,
// and sets the environment the shims read; undo restores it once they are
// started.
func shimmed(dir string, bins map[string]string) (paths map[string]string, undo func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find vigil's executable for the parent-death shim: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	paths = map[string]string{}
	var table []string
	for name, real := range bins {
		link := filepath.Join(dir, name)
		if err := os.Symlink(self, link); err != nil {
			return nil, nil, fmt.Errorf("parent-death shim for %s: %w", name, err)
		}
		paths[name] = link
		table = append(table, name+"="+real)
	}
	undo = func() { _ = os.Unsetenv(shimEnv); _ = os.Unsetenv(shimParentEnv) }
	if err := errors.Join(os.Setenv(shimEnv, strings.Join(table, "\n")), os.Setenv(shimParentEnv, strconv.Itoa(os.Getpid()))); err != nil {
		undo()
		return nil, nil, fmt.Errorf("parent-death shim: %w", err)
	}
	return paths, undo, nil
}
