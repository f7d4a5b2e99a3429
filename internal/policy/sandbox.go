package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"time"
)

// Compiling a CUE or Rego body cannot be interrupted: neither compiler
// takes a context, and CUE evaluates the policy (Validate) while compiling
// it. A hostile or careless policy of a few hundred bytes can make that run
// for hours (an exponential disjunction) or allocate without bound
// (`a: "x" * 1000000` then `b: a * 1000000` asks for 1 TB in one allocation,
// a fatal, unrecoverable "out of memory" for a Go process). A goroutine
// abandoned at a deadline would go on burning CPU and memory until it
// crashed the replica, and the webhook with it.
//
// So every body is compiled twice: first in a sandbox, a child process
// running this same executable (see init), which is killed when it overruns
// Compiler.CompileTimeout and stops itself when its memory passes
// Compiler.CompileMemoryLimit; then, only if the sandbox finished within
// both limits, in this process, which takes about the same time and memory
// since compilation is deterministic. One compilation (sandbox and
// in-process) runs at a time per process (compileSlot), so the memory that
// compilations add to a replica is bounded by one limit.

// DefaultCompileTimeout bounds the compilation of one policy body in the
// sandbox. It is the evaluation bound (DefaultPolicyTimeout): the
// ClusterImagePolicy webhook's 10s timeout leaves room for waiting for the
// compile slot, the sandbox and the compilation in-process, each at most
// this long.
const DefaultCompileTimeout = DefaultPolicyTimeout

// DefaultCompileMemoryLimit bounds the memory of the sandbox that compiles
// one body: the Go runtime's memory of the whole child process, about 40
// MiB of which is the executable's own. A 1 MiB policy needs about 150 MiB.
// The manifests' memory limit leaves room for it beside the controller and
// the evaluation workers (config/manager).
const DefaultCompileMemoryLimit = 256 << 20

// sandboxEnv marks the child process that compiles one body; init turns the
// process into the sandbox when it is set.
const sandboxEnv = "VIGIL_POLICY_COMPILE_SANDBOX"

// Exit codes of the sandbox besides 0 (finished: compiled or not) and 2 (a
// Go panic or fatal error, e.g. out of memory in one allocation).
const (
	sandboxExitMemory  = 3
	sandboxExitTimeout = 4
	sandboxExitInput   = 5
)

// What the sandbox prints once it has read its request (the time limit
// starts then), when it starts evaluating the compiled body for the sample
// pod, and when everything finished.
const (
	sandboxReady    = "ready"
	sandboxCompiled = "compiled"
	sandboxOK       = "finished"
)

// minSandboxStartup bounds the start of the sandbox process, before the
// time limit on compiling starts: about 20ms usually, more on a loaded
// machine, where it must not count against the policy.
const minSandboxStartup = 2 * time.Second

// sandboxStarts bounds how often a sandbox that did not start within
// minSandboxStartup is started again: on a loaded machine (a shared CI
// runner, go test running packages side by side) a start can take longer,
// and neither the policy nor the user is to blame.
const sandboxStarts = 3

func init() {
	switch {
	case os.Getenv(sandboxEnv) == "1":
		os.Exit(runSandbox(os.Stdin, os.Stdout, os.Stderr))
	case os.Getenv(workerEnv) != "":
		os.Exit(runWorker(os.Getenv(workerEnv), os.Stdin, os.Stdout))
	}
}

// sandboxRequest is what the parent sends the sandbox on its stdin.
type sandboxRequest struct {
	Type string `json:"type"`
	Data string `json:"data"`
	// Timeout: the sandbox stops itself a little after it, in case the
	// parent died and cannot kill it.
	Timeout time.Duration `json:"timeout"`
	// MemoryLimit in bytes; <= 0 means none.
	MemoryLimit int64 `json:"memoryLimit"`
	// Probe, for a CIP-level body, asks for one evaluation for a sample pod.
	Probe *sandboxProbe `json:"probe,omitempty"`
}

// sandboxProbe says which parts of the input a CIP-level body sees. The
// sandbox evaluates the compiled body once for a sample pod, so that a
// policy that explodes for any pod (its runaway part depends on the input,
// so compiling it alone does not run it) is refused now, within the
// sandbox's limits, rather than crashing or stalling the webhook at the
// first pod. A policy that explodes only for some pods is not caught here;
// evaluation workers (worker.go) bound its evaluation for those pods.
type sandboxProbe struct {
	IncludeSpec       bool `json:"includeSpec"`
	IncludeObjectMeta bool `json:"includeObjectMeta"`
	IncludeTypeMeta   bool `json:"includeTypeMeta"`
}

// document is the sample pod's input document, as evaluation builds it.
func (p *sandboxProbe) document() []byte {
	doc := map[string]any{"authorityMatches": map[string]any{"authority-0": map[string]any{"static": true}}}
	if p.IncludeObjectMeta {
		doc["metadata"] = map[string]any{
			"name": "sample", "namespace": "default", "uid": "00000000-0000-0000-0000-000000000000",
			"labels": map[string]any{"app": "sample"}, "annotations": map[string]any{"example.com/note": "sample"},
		}
	}
	if p.IncludeSpec {
		container := func(name string) map[string]any {
			return map[string]any{
				"name": name, "image": "registry.example.com/sample/" + name + ":1.0",
				"ports":           []any{map[string]any{"containerPort": json.Number("8080"), "protocol": "TCP"}},
				"resources":       map[string]any{"limits": map[string]any{"cpu": "1", "memory": "128Mi"}},
				"securityContext": map[string]any{"runAsNonRoot": true, "capabilities": map[string]any{"drop": []any{"ALL"}}},
			}
		}
		doc["spec"] = map[string]any{
			"containers":         []any{container("app"), container("sidecar")},
			"initContainers":     []any{container("init")},
			"serviceAccountName": "default",
			"volumes":            []any{map[string]any{"name": "data", "emptyDir": map[string]any{}}},
		}
	}
	if p.IncludeTypeMeta {
		doc["typemeta"] = map[string]any{"apiVersion": "v1", "kind": "Pod"}
	}
	return appendJSON(nil, doc)
}

// compileSlot is held by the one compilation (sandbox and in-process) that
// runs at a time in this process.
var compileSlot = make(chan struct{}, 1)

// runSandbox is the child process: it compiles the body it reads and says
// whether that finished. The result itself is not sent back: the parent
// compiles again, knowing now that it finishes within the limits.
func runSandbox(stdin io.Reader, stdout, stderr io.Writer) int {
	var req sandboxRequest
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		_, _ = fmt.Fprintf(stderr, "policy compile sandbox: bad request: %v\n", err)
		return sandboxExitInput
	}
	if req.MemoryLimit > 0 {
		// The GC works harder near the limit, so that only live memory
		// counts; the watchdog enforces it, the address space limit (on
		// Linux) stops single allocations far beyond it.
		debug.SetMemoryLimit(req.MemoryLimit)
		limitAddressSpace(req.MemoryLimit)
	}
	go sandboxWatchdog(req, stdout)
	_, _ = fmt.Fprintln(stdout, sandboxReady)
	ev, err := compileSource(req.Type, req.Data, true)
	if err == nil && req.Probe != nil {
		_, _ = fmt.Fprintln(stdout, sandboxCompiled)
		// Whether the sample pod passes does not matter, only that its
		// evaluation finishes.
		_ = ev.evaluate(context.Background(), evalInput{json: req.Probe.document()})
	}
	_, _ = fmt.Fprintln(stdout, sandboxOK)
	return 0
}

// sandboxWatchdog ends the sandbox when its memory passes the limit, or when
// it outlives its timeout (the parent kills it at the timeout; this is for
// a parent that died).
func sandboxWatchdog(req sandboxRequest, stdout io.Writer) {
	deadline := time.Now().Add(req.Timeout + time.Second)
	for {
		time.Sleep(2 * time.Millisecond)
		if req.Timeout > 0 && time.Now().After(deadline) {
			_, _ = fmt.Fprintln(stdout, "timeout")
			os.Exit(sandboxExitTimeout)
		}
		exitPastMemoryLimit(req.MemoryLimit, stdout)
	}
}

// memorySamples are what goMemory reads; a child reads them from its one
// watchdog goroutine.
var memorySamples = []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}

// exitPastMemoryLimit ends the process with sandboxExitMemory when the Go
// runtime's memory (all of it, less what was given back to the system)
// passes limit; limit <= 0 means none.
func exitPastMemoryLimit(limit int64, stdout io.Writer) {
	if limit <= 0 {
		return
	}
	metrics.Read(memorySamples)
	var used uint64
	if memorySamples[0].Value.Kind() == metrics.KindUint64 && memorySamples[1].Value.Kind() == metrics.KindUint64 {
		used = memorySamples[0].Value.Uint64() - memorySamples[1].Value.Uint64()
	}
	if used > uint64(limit) {
		_, _ = fmt.Fprintf(stdout, "memory %d\n", used)
		os.Exit(sandboxExitMemory)
	}
}

// compileLimitError is why a body was not compiled in-process: it broke a
// limit of the sandbox, the sandbox crashed, or it could not be run.
type compileLimitError struct {
	msg string
	// transient: compiling again may succeed (no free slot, the sandbox
	// could not start, the time limit on a loaded machine).
	transient bool
	// notStarted: the sandbox did not say it was ready in time.
	notStarted bool
}

func (e *compileLimitError) Error() string { return e.msg }

// limits are the effective limits of c.
func (c Compiler) limits() (timeout time.Duration, memory int64) {
	timeout, memory = c.CompileTimeout, c.CompileMemoryLimit
	if timeout == 0 {
		timeout = DefaultCompileTimeout
	}
	if memory == 0 {
		memory = DefaultCompileMemoryLimit
	}
	return timeout, memory
}

// acquireCompileSlot waits up to timeout for the compile slot; release
// gives it back.
func acquireCompileSlot(typ string, timeout time.Duration) (release func(), err error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case compileSlot <- struct{}{}:
		return func() { <-compileSlot }, nil
	case <-t.C:
		return nil, &compileLimitError{transient: true,
			msg: fmt.Sprintf("no %s compilation could start within %s: other policies were being compiled", typ, timeout)}
	}
}

// sandboxCompile compiles the body in a child process within the limits of
// c; nil means it finished (compiled or not) within them. A sandbox that did
// not start in time is started again, up to sandboxStarts times in all.
func (c Compiler) sandboxCompile(typ, data string, probe *sandboxProbe) error {
	for attempt := 1; ; attempt++ {
		err := c.sandboxCompileOnce(typ, data, probe)
		var limit *compileLimitError
		if !errors.As(err, &limit) || !limit.notStarted {
			return err
		}
		if attempt == sandboxStarts {
			limit.msg += fmt.Sprintf(", %d times", sandboxStarts)
			return limit
		}
	}
}

// sandboxCompileOnce is one run of the sandbox.
func (c Compiler) sandboxCompileOnce(typ, data string, probe *sandboxProbe) error {
	timeout, memory := c.limits()
	exe, err := selfExecutable()
	if err != nil {
		return &compileLimitError{transient: true, msg: fmt.Sprintf("the compile sandbox could not be started: %v", err)}
	}
	req, err := json.Marshal(sandboxRequest{Type: typ, Data: data, Timeout: timeout, MemoryLimit: memory, Probe: probe})
	if err != nil {
		return &compileLimitError{msg: fmt.Sprintf("the compile sandbox could not be started: %v", err)}
	}
	// #nosec G204 -- the command is this executable, run as the compile
	// sandbox; the policy reaches it on stdin, never as an argument.
	cmd := exec.Command(exe, "policy-compile-sandbox")
	cmd.Env = []string{sandboxEnv + "=1"}
	cmd.Stdin = bytes.NewReader(req)
	stdout := &sandboxOutput{ready: make(chan struct{})}
	var stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return &compileLimitError{transient: true, msg: fmt.Sprintf("the compile sandbox could not be started: %v", err)}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	startup := max(timeout, minSandboxStartup)
	var runErr error
	timedOut := false
	wait := func(limit time.Duration, ready <-chan struct{}) (done bool) {
		t := time.NewTimer(limit)
		defer t.Stop()
		select {
		case runErr = <-exited:
			return true
		case <-ready:
			return false
		case <-t.C:
			_ = cmd.Process.Kill()
			runErr = <-exited
			timedOut = true
			return true
		}
	}
	if !wait(startup, stdout.ready) {
		wait(timeout, nil)
	}
	out := stdout.lines()
	if timedOut && !slices.Contains(out, sandboxReady) {
		return &compileLimitError{transient: true, notStarted: true, msg: fmt.Sprintf("the compile sandbox did not start within %s", startup)}
	}
	if runErr == nil && slices.Contains(out, sandboxOK) {
		return nil
	}
	what := "the compilation"
	if slices.Contains(out, sandboxCompiled) {
		what = "evaluating the policy for a sample pod"
	}
	var exit *exec.ExitError
	code := -1
	if errors.As(runErr, &exit) {
		code = exit.ExitCode()
	}
	switch {
	case code == sandboxExitMemory, code >= 0 && strings.Contains(stderr.String(), "out of memory"):
		return &compileLimitError{msg: fmt.Sprintf("%s needed more than its limit of %s of memory", what, formatBytes(memory))}
	case timedOut, code == sandboxExitTimeout:
		return &compileLimitError{transient: true, msg: fmt.Sprintf("%s took longer than its limit of %s", what, timeout)}
	case code >= 0:
		msg, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		if msg == "" {
			msg = runErr.Error()
		}
		return &compileLimitError{msg: fmt.Sprintf("%s crashed: %s", what, msg)}
	case runErr == nil:
		return &compileLimitError{msg: fmt.Sprintf("%s ended without finishing: %s", what, strings.Join(out, " "))}
	case exit != nil: // a signal from elsewhere, e.g. the kernel's OOM killer
		return &compileLimitError{transient: true, msg: fmt.Sprintf("%s was stopped: %v", what, runErr)}
	default:
		return &compileLimitError{transient: true, msg: fmt.Sprintf("the compile sandbox could not be run: %v", runErr)}
	}
}

func formatBytes(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// sandboxOutput is the sandbox's stdout; ready is closed when it has
// printed sandboxReady.
type sandboxOutput struct {
	mu    sync.Mutex
	buf   limitedBuffer
	ready chan struct{}
	once  sync.Once
}

func (o *sandboxOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.buf.Write(p)
	if bytes.Contains(o.buf.Bytes(), []byte(sandboxReady+"\n")) {
		o.once.Do(func() { close(o.ready) })
	}
	return len(p), nil
}

// lines are the words the sandbox printed.
func (o *sandboxOutput) lines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Fields(o.buf.String())
}

// limitedBuffer keeps the first 4 KiB written to it and discards the rest,
// so that a child's output cannot use the parent's memory.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4<<10 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
