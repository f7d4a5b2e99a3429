package devenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// process is one child of the cluster (kube-controller-manager,
// kube-scheduler or kwok), in a process group of its own so that stopping it
// also stops anything it started, with its output in a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string

	stopping atomic.Bool   // set before stop signals it: its exit is expected
	done     chan struct{} // closed when it has exited
	exitErr  error         // what Wait returned, valid once done is closed
}

// startProcess starts path with args, its stdout and stderr appended to
// logPath. onUnexpectedExit is called (from another goroutine) if the process
// exits before stop is called.
func startProcess(name, path string, args, env []string, logPath string, onUnexpectedExit func(*process)) (*process, error) {
	logFile, err := createLog(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file of %s: %w", name, err)
	}
	cmd := exec.Command(path, args...) // #nosec G204 -- our own pinned binaries (bin/: etcd, kube-apiserver, kwok...) with arguments we build
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.exitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
		if !p.stopping.Load() && onUnexpectedExit != nil {
			onUnexpectedExit(p)
		}
	}()
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes an exit that nobody asked for, with the end of the log.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited unexpectedly (%v); the end of its log:\n%s", p.name, p.exitErr, logTail(p.logPath, 20))
}

// stop sends SIGTERM to the process group, then SIGKILL once grace has
// passed, and waits for the process to exit. Whatever is left in the group
// (a grandchild that ignored SIGTERM) is killed too.
func (p *process) stop(grace time.Duration) error {
	p.stopping.Store(true)
	pgid := p.cmd.Process.Pid // Setpgid: the group id is the child's pid
	if !p.exited() {
		_ = signalGroup(pgid, syscall.SIGTERM)
	}
	var err error
	select {
	case <-p.done:
	case <-time.After(grace):
		err = fmt.Errorf("%s did not stop within %s of SIGTERM: killed", p.name, grace)
		_ = signalGroup(pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("%s (pid %d) did not exit even after SIGKILL", p.name, pgid)
		}
	}
	// The leader is gone; make sure no member of its group outlives it.
	if killErr := signalGroup(pgid, syscall.SIGKILL); killErr != nil && !errors.Is(killErr, syscall.ESRCH) {
		err = errors.Join(err, fmt.Errorf("kill what is left of %s's process group: %w", p.name, killErr))
	}
	return err
}

// logTail returns the last n lines of the file at path, for error messages.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path) // #nosec G304 -- a log file devenv created in its own directory
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	data = bytes.TrimRight(data, "\n")
	lines := strings.Split(string(data), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n")
}
