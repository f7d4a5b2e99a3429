// Package e2e tests the built binary, bin/vigil, against the local cluster of
// `vigil dev` with the real kubectl. Build first: `make tools build`.
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/testenv"
)

// Deadlines of the e2e helpers: generous, since CI machines are shared.
const (
	devReadyTimeout = 3 * time.Minute // `vigil dev` until its kubeconfig appears
	devStopTimeout  = time.Minute     // SIGTERM until `vigil dev` exits
	kubectlTimeout  = 2 * time.Minute // one kubectl command (kubectl wait --timeout=90s included)
	pollInterval    = 200 * time.Millisecond
)

// binPath returns bin/NAME in the repository, or fails the test saying which
// make target builds it.
func binPath(t testing.TB, name, makeTarget string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "bin", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: run `make %s` first (%v)", path, makeTarget, err)
	}
	return path
}

// vigilBin is bin/vigil, built by `make build`.
func vigilBin(t testing.TB) string { return binPath(t, "vigil", "build") }

// kubectlBin is bin/kubectl, built by `make tools`.
func kubectlBin(t testing.TB) string { return binPath(t, "kubectl", "tools") }

// devEnv is a running `vigil dev` subprocess.
type devEnv struct {
	// Kubeconfig is the file vigil dev wrote once everything was ready.
	Kubeconfig string
	// TmpDir is vigil dev's TMPDIR: every temporary file it makes is there,
	// and its children's command lines name it.
	TmpDir string
	// MetricsAddr is where the manager serves metrics (plain HTTP).
	MetricsAddr string
	// ReadyAfter is how long vigil dev took to write the kubeconfig.
	ReadyAfter time.Duration

	kubectl  string
	cacheDir string // kubectl's discovery cache, kept out of $HOME
	*subprocess
}

// subprocess is a started command whose stdout and stderr are kept and
// whose exit is watched.
type subprocess struct {
	cmd     *exec.Cmd
	out     *syncBuffer // stdout and stderr, interleaved
	done    chan struct{}
	waitErr error
}

// startSubprocess starts cmd, keeping its output, and watches for its exit.
func startSubprocess(cmd *exec.Cmd) (*subprocess, error) {
	p := &subprocess{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's id.
func (p *subprocess) Pid() int { return p.cmd.Process.Pid }

func (p *subprocess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startDev starts `bin/vigil dev` with the binaries of bin/, a kubeconfig
// and a TMPDIR of its own, a free metrics port and the extra args (say
// "--nodes", "5"), and waits until the kubeconfig appears. The test's cleanup
// stops it if the test did not.
//
// The ports of the metrics, the webhook, kube-controller-manager and
// kube-scheduler come from the kernel (":0"), which hands a port out again
// once its first listener has closed: another process may bind it before
// the component does. Then vigil dev exits saying "address already in use",
// and it is started again with new ports, up to three times.
func startDev(t testing.TB, args ...string) *devEnv {
	t.Helper()
	const attempts = 3
	for attempt := 1; ; attempt++ {
		d, err := tryStartDev(t, args...)
		if err == nil {
			return d
		}
		if !d.exited() || !strings.Contains(d.Output(), "address already in use") || attempt == attempts {
			t.Fatalf("%v; its output:\n%s", err, d.Output())
		}
		t.Logf("attempt %d: %v, a port was taken meanwhile; its output:\n%s", attempt, err, d.Output())
	}
}

// tryStartDev is one attempt of startDev: the error says why vigil dev did
// not write its kubeconfig.
func tryStartDev(t testing.TB, args ...string) (*devEnv, error) {
	t.Helper()
	vigil, kubectl := vigilBin(t), kubectlBin(t)
	base := t.TempDir()
	d := &devEnv{
		Kubeconfig:  filepath.Join(base, "out", "kubeconfig"),
		TmpDir:      filepath.Join(base, "tmp"),
		MetricsAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
		kubectl:     kubectl,
		cacheDir:    filepath.Join(base, "kubectl-cache"),
	}
	if err := os.MkdirAll(d.TmpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"dev",
		"--kubeconfig-out", d.Kubeconfig,
		"--metrics-bind-address", d.MetricsAddr,
		"--assets", filepath.Dir(kubectl),
	}, args...)
	cmd := exec.Command(vigil, argv...)
	cmd.Env = append(os.Environ(), "TMPDIR="+d.TmpDir)
	began := time.Now()
	var err error
	if d.subprocess, err = startSubprocess(cmd); err != nil {
		t.Fatalf("start vigil dev: %v", err)
	}
	t.Cleanup(func() {
		if !d.exited() {
			d.Stop(t)
		}
	})

	deadline := time.Now().Add(devReadyTimeout)
	for {
		if _, err := os.Stat(d.Kubeconfig); err == nil {
			d.ReadyAfter = time.Since(began)
			return d, nil
		}
		if d.exited() {
			return d, fmt.Errorf("vigil dev exited (%v) before writing %s", d.waitErr, d.Kubeconfig)
		}
		if time.Now().After(deadline) {
			return d, fmt.Errorf("vigil dev did not write %s within %s", d.Kubeconfig, devReadyTimeout)
		}
		time.Sleep(pollInterval)
	}
}

// Output is what vigil dev printed so far, stdout and stderr.
func (d *devEnv) Output() string { return d.out.String() }

// Kubectl runs bin/kubectl against the dev cluster and returns its combined
// output.
func (d *devEnv) Kubectl(args ...string) (string, error) {
	return d.KubectlStdin("", args...)
}

// KubectlStdin runs bin/kubectl with stdin (for `apply -f -`).
func (d *devEnv) KubectlStdin(stdin string, args ...string) (string, error) {
	argv := append([]string{"--kubeconfig", d.Kubeconfig, "--cache-dir", d.cacheDir, "--request-timeout", "30s"}, args...)
	cmd := exec.Command(d.kubectl, argv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	wait := make(chan error, 1)
	go func() { wait <- cmd.Wait() }()
	select {
	case err := <-wait:
		if err != nil {
			return out.String(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String(), nil
	case <-time.After(kubectlTimeout):
		_ = cmd.Process.Kill()
		<-wait
		return out.String(), fmt.Errorf("kubectl %s: no answer within %s", strings.Join(args, " "), kubectlTimeout)
	}
}

// MustKubectl is Kubectl that fails the test on error.
func (d *devEnv) MustKubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.Kubectl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Stop sends SIGTERM to vigil dev and waits for it to exit, then returns its
// exit code and how long it took; it fails the test if vigil dev does not
// exit within devStopTimeout (and then kills it).
func (d *devEnv) Stop(t testing.TB) (code int, took time.Duration) {
	t.Helper()
	began := time.Now()
	if !d.exited() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-d.done:
	case <-time.After(devStopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Fatalf("vigil dev did not exit within %s of SIGTERM; its output:\n%s", devStopTimeout, d.Output())
	}
	return d.cmd.ProcessState.ExitCode(), time.Since(began)
}

// waitFor polls cond until it returns true, failing the test after timeout
// with what cond last said.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last: %s", timeout, what, detail)
		}
		time.Sleep(pollInterval)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a process as /proc shows it.
type proc struct {
	pid, ppid int
	state     string // R, S, Z...
	cmdline   string // arguments joined by spaces
	rssKiB    int
}

// readProc reads /proc/PID; ok is false once the process is gone.
func readProc(pid int) (p proc, ok bool) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return p, false
	}
	cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	p = proc{pid: pid, cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))}
	for line := range strings.SplitSeq(string(status), "\n") {
		key, value, _ := strings.Cut(line, ":")
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		switch key {
		case "State":
			p.state = fields[0]
		case "PPid":
			p.ppid, _ = strconv.Atoi(fields[0])
		case "VmRSS":
			p.rssKiB, _ = strconv.Atoi(fields[0])
		}
	}
	return p, true
}

// processes lists every live (not zombie) process.
func processes(t testing.TB) []proc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc to inspect processes: %v", err)
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok && p.state != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// descendants returns the live descendants of pid.
func descendants(t testing.TB, pid int) []proc {
	t.Helper()
	all := processes(t)
	var out []proc
	parents := map[int]bool{pid: true}
	for changed := true; changed; {
		changed = false
		for _, p := range all {
			if parents[p.ppid] && !parents[p.pid] {
				parents[p.pid] = true
				out = append(out, p)
				changed = true
			}
		}
	}
	return out
}

// survivors returns the processes still alive that either are one of
// earlier (same pid, same command line) or name marker on their command line.
func survivors(t testing.TB, earlier []proc, marker string) []proc {
	t.Helper()
	var out []proc
	seen := map[int]bool{}
	for _, p := range earlier {
		if now, ok := readProc(p.pid); ok && now.state != "Z" && now.cmdline == p.cmdline {
			out = append(out, now)
			seen[p.pid] = true
		}
	}
	for _, p := range processes(t) {
		if !seen[p.pid] && strings.Contains(p.cmdline, marker) {
			out = append(out, p)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer that a subprocess's stdout and stderr can
// share while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// exitCode runs a command to completion and returns its exit code and output.
func exitCode(cmd *exec.Cmd) (int, string, error) {
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out), nil
	}
	if err != nil {
		return -1, string(out), err
	}
	return 0, string(out), nil
}
