package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// Environment of the test binary run as vigil itself (asVigil), and of the
// crash it then injects into the judging child process of `vigil test`.
const (
	asVigilEnv = "VIGIL_CMD_TEST_AS_VIGIL"
	crashEnv   = "VIGIL_CMD_TEST_CRASH"
)

func TestMain(m *testing.M) {
	if os.Getenv(asVigilEnv) == "1" {
		if os.Getenv(judgeEnv) == "1" {
			injectCrash(os.Getenv(crashEnv))
		}
		main()
		os.Exit(exitOK)
	}
	os.Exit(m.Run())
}

// injectCrash crashes the judging child the ways a bug or a hostile input
// could: a panic in a goroutine other than main's, which nothing can
// recover, and a fatal error of the Go runtime.
func injectCrash(how string) {
	switch how {
	case "panic":
		go func() { panic("injected by the test") }()
		time.Sleep(time.Minute)
	case "fatal":
		debug.SetMaxStack(1 << 20)
		var recurse func(int) int
		recurse = func(n int) int { return recurse(n+1) + 1 }
		recurse(0)
	}
}

// asVigil runs the test binary as the vigil executable, with args, and
// returns its exit status and standard error.
func asVigil(t *testing.T, crash string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...) // #nosec G204 -- the test binary itself
	cmd.Env = append(os.Environ(), asVigilEnv+"=1", crashEnv+"="+crash)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestVigilTestExitStatusOfTheProcess: the exit statuses of the vigil
// process itself, through the child that judges: a crash is 3, never 2.
func TestVigilTestExitStatusOfTheProcess(t *testing.T) {
	dir := t.TempDir()
	policy := writeFile(t, dir, "policy.yaml", capsPolicy)
	good := writeFile(t, dir, "good.yaml", goodPod)
	bad := writeFile(t, dir, "bad.yaml", netAdminPod)
	for _, c := range []struct {
		name, crash string
		args        []string
		code        int
		stderr      []string
	}{
		{"admitted", "", []string{"test", "-p", policy, "-r", good}, exitOK, nil},
		{"denied", "", []string{"test", "-p", policy, "-r", bad}, exitDenied, []string{"admission would deny 1 of 1 resources"}},
		{"bad input", "", []string{"test", "-p", filepath.Join(dir, "missing.yaml"), "-r", good}, exitBadInput, []string{"missing.yaml"}},
		{"usage", "", []string{"test", "--bogus"}, exitBadInput, []string{"unknown flag: --bogus"}},
		{"panic in a goroutine", "panic", []string{"test", "-p", policy, "-r", good}, exitCrash,
			[]string{"panic: injected by the test", "vigil: vigil test crashed (exit status 2): this is a bug in vigil, not a verdict on the input"}},
		{"fatal error", "fatal", []string{"test", "-p", policy, "-r", good}, exitCrash,
			[]string{"fatal error: stack overflow", "vigil: vigil test crashed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stderr := asVigil(t, c.crash, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr:\n%.2000s", code, c.code, stderr)
			}
			for _, w := range c.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not contain %q:\n%.2000s", w, stderr)
				}
			}
		})
	}
}
