package controllers

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// podPages reads the pods that a policy change (or a resync) queues a page
// at a time, ahead of the workers that judge them: one LIST of up to
// pageSize pods, served by the API server's watch cache, instead of one GET
// a pod. Over 10,300 pods that is 21 requests instead of 10,300
// (BENCHMARKS.md, "Pods read by the page").
//
// It only saves requests; it decides nothing. The keys stay queued as
// before; a worker takes its pod from the page only if it is the version
// the pod index shows (the one a GET would return), and reads it alone
// otherwise: a pod that changed since its page was read, one queued out of
// order, or one whose page failed. The keys are queued in the order the API
// server lists them (by namespace, then name), so the workers take the pods
// about as the pages bring them; a worker whose pod is in the page being
// read waits for it, briefly. Fewer than two pages are held: the next page
// is read when less than one is left, and the reader gives up when the
// workers take nothing for a while.
type podPages struct {
	reader client.Reader
	// pageSize pods a LIST; the reader holds fewer than twice as many.
	pageSize int
	// stall: a reader whose pods nobody takes for this long stops, and
	// drops what it holds; it is also the longest a page may take to come,
	// and the longest a worker waits for one.
	stall time.Duration

	mu  sync.Mutex
	run *pageRun
	// base is the context of the manager's run (Start): a reading outlives
	// the event that started it, not the manager.
	base context.Context
}

// pageRun is one reading of the pods of a queueing.
type pageRun struct {
	cancel context.CancelFunc
	// order is each key not taken yet, by its place in the queue.
	order map[types.NamespacedName]int
	held  map[types.NamespacedName]*corev1.Pod
	// listed: the keys up to this place have been read (or were not
	// listed: gone, or their namespace out of scope).
	listed int
	// full: the reader waits for room, that is for the workers to take
	// pods, so no worker waits for the reader.
	full bool
	done bool
	// changed is closed, and replaced, when listed, held or done change.
	changed chan struct{}
}

const (
	defaultPageSize = 500
	defaultPageWait = 10 * time.Second
)

func newPodPages(reader client.Reader) *podPages {
	return &podPages{reader: reader, pageSize: defaultPageSize, stall: defaultPageWait}
}

// start reads the pods of keys, which are queued in this order, sorted by
// namespace and name; inScope says whether a namespace's pods are judged at
// all. A reading still going is dropped.
func (p *podPages) start(ctx context.Context, keys []types.NamespacedName, inScope func(ctx context.Context, namespace string) bool) {
	if p == nil || len(keys) == 0 {
		return
	}
	p.mu.Lock()
	base := p.base
	p.mu.Unlock()
	if base == nil { // not started by a manager: the caller's context, uncancelled
		base = context.WithoutCancel(ctx)
	}
	ctx, cancel := context.WithCancel(base)
	run := &pageRun{
		cancel: cancel, order: make(map[types.NamespacedName]int, len(keys)),
		held: map[types.NamespacedName]*corev1.Pod{}, listed: -1, changed: make(chan struct{}),
	}
	for i, k := range keys {
		run.order[k] = i
	}
	p.mu.Lock()
	if p.run != nil {
		p.end(p.run)
	}
	p.run = run
	p.mu.Unlock()
	go p.read(ctx, run, keys, inScope)
}

// Start keeps ctx as the context of every reading, and ends the reading
// in course when ctx ends; it runs as long as the manager.
func (p *podPages) Start(ctx context.Context) error {
	p.mu.Lock()
	p.base = ctx
	p.mu.Unlock()
	<-ctx.Done()
	p.mu.Lock()
	if p.run != nil {
		p.end(p.run)
	}
	p.mu.Unlock()
	return nil
}

// read lists the pods of keys' namespaces, in pages, into run, and ends
// run when the workers have taken them.
func (p *podPages) read(ctx context.Context, run *pageRun, keys []types.NamespacedName, inScope func(context.Context, string) bool) {
	if p.list(ctx, run, keys, inScope) {
		p.waitUntil(ctx, run, 0)
	}
	p.mu.Lock()
	p.end(run)
	p.mu.Unlock()
}

// list reads the pages; false: it stopped before the end.
func (p *podPages) list(ctx context.Context, run *pageRun, keys []types.NamespacedName, inScope func(context.Context, string) bool) bool {
	for next := 0; next < len(keys); {
		ns := keys[next].Namespace
		if !inScope(ctx, ns) {
			next = p.advance(run, keys, next, ns, "", true)
			continue
		}
		opts := &client.ListOptions{Namespace: ns, Limit: int64(p.pageSize)}
		for {
			if !p.waitUntil(ctx, run, p.pageSize) {
				return false
			}
			var list corev1.PodList
			listCtx, cancel := context.WithTimeout(ctx, p.stall)
			err := p.reader.List(listCtx, &list, opts)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					log.FromContext(ctx).V(1).Info("pods are read one by one: a page failed", "namespace", ns, "error", err.Error())
				}
				return false
			}
			p.hold(run, list.Items)
			last := ""
			if n := len(list.Items); n > 0 {
				last = list.Items[n-1].Name
			}
			opts.Continue = list.Continue
			next = p.advance(run, keys, next, ns, last, opts.Continue == "")
			if opts.Continue == "" {
				break
			}
		}
	}
	return true
}

// hold keeps the listed pods that are still to be taken.
func (p *podPages) hold(run *pageRun, pods []corev1.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range pods {
		key := types.NamespacedName{Namespace: pods[i].Namespace, Name: pods[i].Name}
		if _, wanted := run.order[key]; wanted && !run.done {
			pod := pods[i] // a copy: the page itself is not kept
			pod.ManagedFields = nil
			run.held[key] = &pod
		}
	}
}

// advance moves run.listed past the keys of namespace ns from next on that
// sort up to last, or past all of them when the namespace is read to its
// end, and returns the place of the first key not passed.
func (p *podPages) advance(run *pageRun, keys []types.NamespacedName, next int, ns, last string, whole bool) int {
	for next < len(keys) && keys[next].Namespace == ns && (whole || keys[next].Name <= last) {
		next++
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	run.listed = next - 1
	run.signal()
	return next
}

// waitUntil waits until run holds fewer than n pods (none, for n 0), and
// says false when the reading is to stop instead: dropped, or none of its
// pods taken for p.stall.
func (p *podPages) waitUntil(ctx context.Context, run *pageRun, n int) bool {
	stalled := time.NewTimer(p.stall)
	defer stalled.Stop()
	for {
		p.mu.Lock()
		if run.done {
			p.mu.Unlock()
			return false
		}
		if len(run.held) < max(n, 1) {
			run.full = false
			p.mu.Unlock()
			return true
		}
		if n > 0 && !run.full {
			run.full = true
			run.signal() // the workers waiting for the next page read it alone
		}
		changed, before := run.changed, len(run.held)
		p.mu.Unlock()
		select {
		case <-changed:
			p.mu.Lock()
			taken := len(run.held) < before
			p.mu.Unlock()
			if taken {
				stalled.Reset(p.stall)
			}
		case <-ctx.Done():
			return false
		case <-stalled.C:
			return false
		}
	}
}

// take returns the pod of key from the pages if it is at version, the
// version the pod index shows; false: read it alone. A key whose page is
// being read waits for it.
func (p *podPages) take(ctx context.Context, key types.NamespacedName, version string) (*corev1.Pod, bool) {
	if p == nil {
		return nil, false
	}
	p.mu.Lock()
	run := p.run
	if run == nil {
		p.mu.Unlock()
		return nil, false
	}
	place, ok := run.order[key]
	if !ok {
		p.mu.Unlock()
		return nil, false
	}
	// Only the page being read is waited for, and for p.stall at most. A
	// key further on was queued out of order, and is read alone rather
	// than hold a worker; so is a key of the next page while the reader
	// waits for room: the workers take keys out of order then too (keys
	// queued before the reading keep their place), and a worker waiting
	// for the reader would wait for itself.
	var waited <-chan time.Time
	for !run.done && !run.full && place > run.listed && place <= run.listed+p.pageSize {
		changed := run.changed
		p.mu.Unlock()
		if waited == nil {
			t := time.NewTimer(p.stall)
			defer t.Stop()
			waited = t.C
		}
		gaveUp := false
		select {
		case <-changed:
		case <-waited:
			gaveUp = true
		case <-ctx.Done():
			gaveUp = true
		}
		p.mu.Lock()
		if gaveUp {
			delete(run.order, key) // read alone: not to be held when its page comes
			p.mu.Unlock()
			return nil, false
		}
	}
	pod := run.held[key]
	delete(run.held, key)
	delete(run.order, key)
	if len(run.held) < p.pageSize {
		run.full = false // the reader goes on to the next page
	}
	run.signal()
	p.mu.Unlock()
	if pod == nil || pod.ResourceVersion != version {
		return nil, false
	}
	return pod, true
}

// end stops run and drops what it holds; p.mu is held.
func (p *podPages) end(run *pageRun) {
	if run.done {
		return
	}
	run.done = true
	run.cancel()
	run.held, run.order = nil, nil
	run.signal()
	if p.run == run {
		p.run = nil
	}
}

// signal wakes whoever waits on run; p.mu is held.
func (r *pageRun) signal() {
	close(r.changed)
	r.changed = make(chan struct{})
}
