package devenv

import "runtime"

// startThread runs functions, one at a time, on a goroutine locked to its OS
// thread. Children started there have that thread as their parent for the
// parent-death signal (see deathsig_linux.go), and it lives until stop, which
// comes after the children are stopped: a Go thread that the runtime could
// end, or that another goroutine could take, would kill them early.
type startThread struct {
	calls chan func()
}

func newStartThread() *startThread {
	t := &startThread{calls: make(chan func())}
	go func() {
		runtime.LockOSThread()
		for f := range t.calls {
			f()
		}
		// Exiting while locked ends the thread: anything started here that
		// is somehow still running gets its parent-death signal.
	}()
	return t
}

// run calls f on the thread and returns its error.
func (t *startThread) run(f func() error) error {
	done := make(chan error, 1)
	t.calls <- func() { done <- f() }
	return <-done
}

// stop ends the thread, once its last call returned.
func (t *startThread) stop() { close(t.calls) }
