package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// `vigil test` is a CI gate: its exit status is its verdict. The Go runtime
// exits 2 on a panic or a fatal error (out of memory, a stack overflow),
// which is the status of bad input, so that a crash would read as "bad
// input" and a crash in any goroutine cannot be recovered. So `vigil test`
// judges in a child process running this same executable, which reports bad
// input with a status of its own; the parent exits with the child's verdict,
// or with exitCrash when the child crashed or was killed.

// judgeEnv marks the child process that judges for `vigil test`.
const judgeEnv = "VIGIL_TEST_JUDGE"

// judgeExitBadInput is how the judging child reports bad input.
const judgeExitBadInput = 10

// judgeExitCode is the status a process exits with for code: in the
// judging child, bad input gets its own status.
func judgeExitCode(code int) int {
	if code == exitBadInput && os.Getenv(judgeEnv) == "1" {
		return judgeExitBadInput
	}
	return code
}

// superviseTest runs `vigil test` (args) in a judging child process and
// returns the status to exit with; ok is false for other subcommands and in
// the child itself.
func superviseTest(args []string) (code int, ok bool) {
	if len(args) == 0 || args[0] != "test" || os.Getenv(judgeEnv) != "" {
		return 0, false
	}
	cmd := exec.Command(selfExecutable(), args...) // #nosec G204 G702 -- this executable, with the user's own arguments
	cmd.Env = append(os.Environ(), judgeEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "vigil: cannot start the process that judges:", err)
		return exitCrash, true
	}
	var stopped os.Signal
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	for waiting := true; waiting; {
		select {
		case s := <-signals:
			stopped = s
			_ = cmd.Process.Signal(s)
		case err = <-done:
			waiting = false
		}
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "vigil: waiting for the process that judges:", err)
		return exitCrash, true
	}
	switch status := cmd.ProcessState.ExitCode(); {
	case status == exitOK || status == exitDenied:
		return status, true
	case status == judgeExitBadInput:
		return exitBadInput, true
	case stopped != nil:
		fmt.Fprintf(os.Stderr, "vigil: stopped by %v\n", stopped)
		if s, isSignal := stopped.(syscall.Signal); isSignal {
			return 128 + int(s), true
		}
		return exitCrash, true
	}
	fmt.Fprintf(os.Stderr, "vigil: vigil test crashed (%v): this is a bug in vigil, not a verdict on the input; please report it with the output above\n", cmd.ProcessState)
	return exitCrash, true
}

// selfExecutable is this process's executable: /proc/self/exe where there is
// one, which stays the file this process runs even if its path is replaced.
func selfExecutable() string {
	const proc = "/proc/self/exe"
	if _, err := os.Stat(proc); err == nil {
		return proc
	}
	if exe, err := os.Executable(); err == nil {
		return exe
	}
	return os.Args[0]
}
