package policy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A policy body that compiles, and passes the sandbox's sample pod, can
// still explode for some objects: `_b: _a * 1000000` when the first
// container is named "boom" asks for a terabyte, a fatal error no recover
// catches; a Rego `replace` can fill gigabytes within its deadline; and a
// CUE evaluation cannot be interrupted at all. Evaluated in the webhook's
// process, one such pod would crash the replica (and, since the reconcilers
// judge it again, every leader in turn).
//
// So a WorkerPool evaluates CUE and Rego in long-lived child processes, the
// same executable started with workerEnv set: each under a memory limit (the
// Go runtime's memory, watched every 2ms, and on Linux an address-space
// limit), killed at the evaluation's deadline, and replaced when it dies. The
// result cache and the native checks stay in the calling process, so the
// common decision never leaves it; only a cache miss that CUE or Rego must
// decide costs a round trip (about 0.1 ms, BENCHMARKS.md). An object that
// sets a policy off costs its own decision an `error` result, and nothing
// else: the worker it ran in is killed, no evaluation runs on after its
// deadline, and other objects are judged by the other workers.

// workerEnv marks a worker process; its value is the memory limit in bytes.
const workerEnv = "VIGIL_POLICY_EVALUATION_WORKER"

// Defaults of WorkerPoolOptions.
const (
	// DefaultWorkers: two evaluations at a time per replica. Ordinary
	// decisions are settled in the caller from the cache or natively; a
	// worker is busy only for the first object of each distinct input.
	DefaultWorkers = 2
	// DefaultWorkerMemoryLimit bounds each worker's Go memory: about 40
	// MiB of it is the executable's own, an ordinary evaluation adds a few.
	DefaultWorkerMemoryLimit = 192 << 20
)

// maxWorkerPolicies bounds the compiled bodies a worker keeps; past it the
// worker forgets them all and compiles again those it is asked for.
const maxWorkerPolicies = 256

// WorkerPoolOptions size a WorkerPool.
type WorkerPoolOptions struct {
	// Workers is how many evaluations run at a time; zero means DefaultWorkers.
	Workers int
	// MemoryLimit bounds each worker's memory, in bytes; zero means
	// DefaultWorkerMemoryLimit, a negative value no bound.
	MemoryLimit int64
}

// WorkerPool runs CUE and Rego evaluations in child processes (see the
// comment above). Processes start when first needed. It is safe for
// concurrent use; Close stops every worker.
type WorkerPool struct {
	opts WorkerPoolOptions
	// free holds the workers not in use; a nil entry is a slot whose
	// process is not running (not started yet, or killed).
	free chan *worker

	mu     sync.Mutex
	live   map[*worker]struct{}
	closed bool

	started, killed atomic.Int64
}

// NewWorkerPool makes a pool; no process starts until an evaluation needs one.
func NewWorkerPool(opts WorkerPoolOptions) *WorkerPool {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = DefaultWorkerMemoryLimit
	}
	p := &WorkerPool{opts: opts, free: make(chan *worker, opts.Workers), live: map[*worker]struct{}{}}
	for range opts.Workers {
		p.free <- nil
	}
	return p
}

// Close kills every worker; evaluations asked of the pool afterwards get an
// `error` result.
func (p *WorkerPool) Close() {
	p.mu.Lock()
	p.closed = true
	live := make([]*worker, 0, len(p.live))
	for w := range p.live {
		live = append(live, w)
	}
	p.mu.Unlock()
	for _, w := range live {
		w.kill()
	}
}

// WorkerPoolStats counts worker processes.
type WorkerPoolStats struct {
	// Running: processes alive now, never more than the pool's Workers.
	Running int
	// Started and Killed since the pool was made; Killed counts the
	// evaluations stopped at their deadline.
	Started, Killed int64
}

// Stats says how many workers run and how many were started and killed.
func (p *WorkerPool) Stats() WorkerPoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return WorkerPoolStats{Running: len(p.live), Started: p.started.Load(), Killed: p.killed.Load()}
}

// workerSource is a policy body as workers know it: by key, a hash of its
// type and text, and the text to compile the first time.
type workerSource struct {
	key, typ, data string
}

func newWorkerSource(typ, data string) workerSource {
	sum := sha256.Sum256([]byte(typ + "\x00" + data))
	return workerSource{key: hex.EncodeToString(sum[:16]), typ: typ, data: data}
}

// evaluate evaluates p's body for in in a worker, within b. inputDone says
// the worker no longer reads in's buffer.
func (pool *WorkerPool) evaluate(b *budget, p *CompiledPolicy, in evalInput) (r bodyResult, inputDone bool) {
	ctx, cancel := b.evalContext()
	defer cancel()
	errored := func(format string, args ...any) bodyResult {
		return bodyResult{err: fmt.Errorf("failed evaluating %s policy for ClusterImagePolicy: "+format, append([]any{p.typ}, args...)...), errored: true}
	}
	var w *worker
	select {
	case w = <-pool.free:
	case <-ctx.Done():
		return errored("no evaluation worker was free within %s", b.limit()), true
	}
	if w != nil {
		select {
		case <-w.exited: // it died while idle (killed from outside): start another
			pool.discard(w)
			w = nil
		default:
		}
	}
	if w == nil {
		var err error
		if w, err = pool.start(); err != nil {
			pool.free <- nil
			return errored("the evaluation worker could not be started: %v", err), true
		}
	}
	type outcome struct {
		resp workerResponse
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		resp, err := w.roundTrip(p.source, in)
		done <- outcome{resp, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			why := w.failure(o.err, pool.opts.MemoryLimit)
			pool.discard(w)
			pool.free <- nil
			return errored("%s", why), true
		}
		pool.free <- w
		return o.resp.result(), true
	case <-ctx.Done():
		// CUE cannot be interrupted: the worker is killed, and the next
		// object gets a fresh one, started here in the background.
		pool.killed.Add(1)
		w.kill()
		<-done // the pipes close with the process
		pool.discard(w)
		go pool.replace()
		return p.overran(b), true
	}
}

// replace starts a worker for a free slot, so that the next evaluation does
// not wait for a process to start.
func (pool *WorkerPool) replace() {
	w, err := pool.start()
	if err != nil {
		w = nil
	}
	pool.free <- w
}

func (pool *WorkerPool) start() (*worker, error) {
	pool.mu.Lock()
	closed := pool.closed
	pool.mu.Unlock()
	if closed {
		return nil, errors.New("the worker pool is closed")
	}
	w, err := startWorker(pool.opts.MemoryLimit)
	if err != nil {
		return nil, err
	}
	pool.started.Add(1)
	pool.mu.Lock()
	defer pool.mu.Unlock()
	if pool.closed {
		w.kill()
		return nil, errors.New("the worker pool is closed")
	}
	pool.live[w] = struct{}{}
	return w, nil
}

// discard forgets a worker that died or was killed, once it has exited.
func (pool *WorkerPool) discard(w *worker) {
	<-w.exited
	pool.mu.Lock()
	delete(pool.live, w)
	pool.mu.Unlock()
}

// worker is one child process, used by one evaluation at a time.
type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	w     *bufio.Writer
	r     *bufio.Reader
	// stderr keeps the start of the worker's stderr, which it writes to
	// only when it dies (Go's "fatal error: out of memory"). Read it once
	// exited is closed.
	stderr *limitedBuffer
	// loaded are the bodies this worker has compiled, as far as we know.
	loaded map[string]bool

	exited  chan struct{}
	waitErr error
}

func startWorker(memoryLimit int64) (*worker, error) {
	exe, err := selfExecutable()
	if err != nil {
		return nil, err
	}
	// #nosec G204 -- the command is this executable, run as an evaluation
	// worker; policies and inputs reach it on stdin.
	cmd := exec.Command(exe, "policy-evaluation-worker")
	cmd.Env = []string{workerEnv + "=" + strconv.FormatInt(max(memoryLimit, -1), 10)}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	w := &worker{cmd: cmd, stdin: stdin, w: bufio.NewWriterSize(stdin, 64<<10), r: bufio.NewReaderSize(stdout, 64<<10),
		stderr: &limitedBuffer{}, loaded: map[string]bool{}, exited: make(chan struct{})}
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		w.waitErr = cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

func (w *worker) kill() { _ = w.cmd.Process.Kill() }

// failure says why the worker died during an evaluation.
func (w *worker) failure(ioErr error, memoryLimit int64) string {
	select {
	case <-w.exited:
	case <-time.After(time.Second):
		w.kill() // it is alive but talks nonsense
		<-w.exited
		return fmt.Sprintf("the evaluation worker failed: %v", ioErr)
	}
	var exit *exec.ExitError
	code := -1
	if errors.As(w.waitErr, &exit) {
		code = exit.ExitCode()
	}
	stderr := w.stderr.String()
	switch {
	case code == sandboxExitMemory, code >= 0 && strings.Contains(stderr, "out of memory"):
		return fmt.Sprintf("the evaluation needed more than its limit of %s of memory", formatBytes(memoryLimit))
	case code >= 0:
		msg := firstLine(stderr)
		if msg == "" {
			msg = fmt.Sprint(w.waitErr)
		}
		return "the evaluation crashed: " + msg
	default: // a signal from elsewhere, e.g. the kernel's OOM killer
		return fmt.Sprintf("the evaluation worker was stopped: %v", w.waitErr)
	}
}

func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}

// roundTrip sends one evaluation and reads its result, sending the body's
// text when the worker does not have it compiled.
func (w *worker) roundTrip(src workerSource, in evalInput) (workerResponse, error) {
	for attempt := 0; ; attempt++ {
		req := workerRequest{Key: src.key, Projected: in.projected, InputLen: len(in.json)}
		for _, part := range in.parts[:in.nparts] {
			req.Parts = append(req.Parts, workerPart{Key: part.key, Start: part.start, End: part.end})
		}
		if !w.loaded[src.key] || attempt > 0 {
			req.Type, req.Data = src.typ, src.data
		}
		if err := writeFrame(w.w, req, in.json); err != nil {
			return workerResponse{}, err
		}
		var resp workerResponse
		if _, err := readFrame(w.r, &resp, false); err != nil {
			return workerResponse{}, err
		}
		if resp.Unknown && attempt == 0 {
			continue
		}
		w.loaded[src.key] = !resp.Unknown
		return resp, nil
	}
}

// workerRequest is one evaluation; the input's JSON follows it.
type workerRequest struct {
	Key string `json:"key"`
	// Type and Data are the body, sent when the worker may not have it.
	Type      string       `json:"type,omitempty"`
	Data      string       `json:"data,omitempty"`
	Projected bool         `json:"projected,omitempty"`
	Parts     []workerPart `json:"parts,omitempty"`
	InputLen  int          `json:"inputLen"`
}

type workerPart struct {
	Key        string `json:"key"`
	Start, End int
}

// workerResponse is a bodyResult as plain data.
type workerResponse struct {
	// Unknown: the worker does not have the body; send it.
	Unknown  bool          `json:"unknown,omitempty"`
	Err      string        `json:"err,omitempty"`
	Errored  bool          `json:"errored,omitempty"`
	Findings []wireFinding `json:"findings,omitempty"`
	CUEErrs  []cueErrorAt  `json:"cueErrs,omitempty"`
	Omitted  int           `json:"omitted,omitempty"`
}

type wireFinding struct {
	Where  string `json:"where,omitempty"`
	Phrase string `json:"phrase"`
	Custom bool   `json:"custom,omitempty"`
}

func responseOf(r bodyResult) workerResponse {
	resp := workerResponse{Errored: r.errored, CUEErrs: r.cueErrs, Omitted: r.omitted}
	if r.err != nil {
		resp.Err = r.err.Error()
		if resp.Err == "" { // keep the failure: an empty text is still an error
			resp.Err = " "
		}
	}
	for _, f := range r.findings {
		resp.Findings = append(resp.Findings, wireFinding{f.where, f.phrase, f.custom})
	}
	return resp
}

func (resp workerResponse) result() bodyResult {
	r := bodyResult{errored: resp.Errored, cueErrs: resp.CUEErrs, omitted: resp.Omitted}
	if resp.Err != "" {
		r.err = errors.New(resp.Err)
	}
	for _, f := range resp.Findings {
		r.findings = append(r.findings, finding{where: f.Where, phrase: f.Phrase, custom: f.Custom})
	}
	return r
}

// maxFrame bounds a frame's header; inputs are bounded by the object the
// caller decoded (the API server's request size).
const maxFrame = 64 << 20

// writeFrame writes a header (length and JSON) and a payload (length and
// bytes), then flushes.
func writeFrame(w *bufio.Writer, header any, payload []byte) error {
	raw, err := json.Marshal(header)
	if err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(raw))) // #nosec G115 -- headers are far below 4 GiB
	_, _ = w.Write(n[:])
	_, _ = w.Write(raw)
	if payload != nil {
		binary.BigEndian.PutUint32(n[:], uint32(len(payload))) // #nosec G115 -- bounded by maxFrame
		_, _ = w.Write(n[:])
		_, _ = w.Write(payload)
	}
	return w.Flush()
}

// readFrame reads a header into v and, with payload, the payload.
func readFrame(r *bufio.Reader, v any, payload bool) ([]byte, error) {
	chunk := func() ([]byte, error) {
		var n [4]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return nil, err
		}
		size := binary.BigEndian.Uint32(n[:])
		if size > maxFrame {
			return nil, fmt.Errorf("frame of %d bytes, more than %d", size, maxFrame)
		}
		buf := make([]byte, size)
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	raw, err := chunk()
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, err
	}
	if !payload {
		return nil, nil
	}
	return chunk()
}

// runWorker is the worker process: it evaluates requests one at a time
// until its stdin closes.
func runWorker(limitEnv string, stdin io.Reader, stdout io.Writer) int {
	limit, _ := strconv.ParseInt(limitEnv, 10, 64)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
		limitAddressSpace(limit)
	}
	go workerWatchdog(limit)
	r, w := bufio.NewReaderSize(stdin, 64<<10), bufio.NewWriterSize(stdout, 64<<10)
	bodies := map[string]evaluator{}
	for {
		var req workerRequest
		input, err := readFrame(r, &req, true)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_, _ = fmt.Fprintf(os.Stderr, "policy evaluation worker: bad request: %v\n", err)
				return sandboxExitInput
			}
			return 0
		}
		if err := writeFrame(w, serveRequest(bodies, req, input), nil); err != nil {
			return 0
		}
	}
}

func serveRequest(bodies map[string]evaluator, req workerRequest, input []byte) workerResponse {
	ev, ok := bodies[req.Key]
	if !ok {
		if req.Data == "" {
			return workerResponse{Unknown: true}
		}
		var err error
		if ev, err = compileSource(req.Type, req.Data, false); err != nil {
			return workerResponse{Errored: true, Err: "failed to compile the policy in the evaluation worker: " + err.Error()}
		}
		if len(bodies) >= maxWorkerPolicies {
			clear(bodies)
		}
		bodies[req.Key] = ev
	}
	in := evalInput{json: input, projected: req.Projected}
	for _, p := range req.Parts {
		if in.nparts == len(in.parts) || p.Start < 0 || p.End > len(input) || p.Start > p.End {
			return workerResponse{Errored: true, Err: "the evaluation worker got a malformed input"}
		}
		in.parts[in.nparts] = inputPart{key: p.Key, start: p.Start, end: p.End}
		in.nparts++
	}
	return responseOf(ev.evaluateFully(context.Background(), in))
}

// workerWatchdog ends the worker when its memory passes limit, and when its
// parent is gone (it would be re-parented).
func workerWatchdog(limit int64) {
	parent := os.Getppid()
	for i := 0; ; i++ {
		time.Sleep(2 * time.Millisecond)
		exitPastMemoryLimit(limit, os.Stderr)
		if i%100 == 0 && os.Getppid() != parent {
			os.Exit(0)
		}
	}
}
