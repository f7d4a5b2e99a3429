package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// pagedPods serves pods as the API server lists them: by namespace, sorted
// by name, limit pods a page with a continue token. It counts the pages.
type pagedPods struct {
	client.Reader
	pods map[string][]corev1.Pod // by namespace, sorted by name

	mu    sync.Mutex
	lists map[string]int
}

func (f *pagedPods) listed(ns string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists[ns]
}

func (f *pagedPods) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	o := &client.ListOptions{}
	o.ApplyOptions(opts)
	f.mu.Lock()
	f.lists[o.Namespace]++
	f.mu.Unlock()
	all := f.pods[o.Namespace]
	from := 0
	if o.Continue != "" {
		from, _ = strconv.Atoi(o.Continue)
	}
	to := min(len(all), from+int(o.Limit))
	out := list.(*corev1.PodList)
	out.Items = append([]corev1.Pod(nil), all[from:to]...)
	out.Continue = ""
	if to < len(all) {
		out.Continue = strconv.Itoa(to)
	}
	return nil
}

func pagedPod(ns string, i int) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: fmt.Sprintf("web-%05d", i), ResourceVersion: strconv.Itoa(1000 + i),
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
	}}
}

func newPagedPods(counts map[string]int) (*pagedPods, []types.NamespacedName) {
	f := &pagedPods{pods: map[string][]corev1.Pod{}, lists: map[string]int{}}
	var keys []types.NamespacedName
	for _, ns := range []string{"a", "b", "c"} { // the order queuePods sorts them in
		for i := range counts[ns] {
			p := pagedPod(ns, i)
			f.pods[ns] = append(f.pods[ns], p)
			keys = append(keys, types.NamespacedName{Namespace: ns, Name: p.Name})
		}
	}
	return f, keys
}

func notB(_ context.Context, ns string) bool { return ns != "b" }

// Taken in queue order, every pod comes from a page: 3 LISTs for 1,200 pods
// of a, none for b (out of scope), one for c.
func TestPodPagesInOrder(t *testing.T) {
	f, keys := newPagedPods(map[string]int{"a": 1200, "b": 10, "c": 3})
	p := newPodPages(f)
	p.start(t.Context(), keys, notB)
	for _, k := range keys {
		if k.Namespace == "b" {
			if _, ok := p.take(t.Context(), k, "1000"); ok {
				t.Fatalf("%s: a pod of a namespace out of scope came from a page", k)
			}
			continue
		}
		i, _ := strconv.Atoi(k.Name[len("web-"):])
		pod, ok := p.take(t.Context(), k, strconv.Itoa(1000+i))
		if !ok {
			t.Fatalf("%s: not from a page", k)
		}
		if pod.Name != k.Name || pod.Namespace != k.Namespace || pod.ManagedFields != nil {
			t.Fatalf("%s: got %s/%s with %d managed fields", k, pod.Namespace, pod.Name, len(pod.ManagedFields))
		}
	}
	waitRunEnded(t, p)
	if a, b, c := f.listed("a"), f.listed("b"), f.listed("c"); a != 3 || b != 0 || c != 1 {
		t.Errorf("LISTs by namespace a %d, b %d, c %d; want 3, 0, 1", a, b, c)
	}
}

// A pod at another version than the index shows is read alone; so is one
// queued out of order, without waiting for its page, and it is not held
// when its page comes.
func TestPodPagesOnlyTheVersionIndexed(t *testing.T) {
	f, keys := newPagedPods(map[string]int{"a": 1600})
	p := newPodPages(f)
	p.start(t.Context(), keys, notB)
	far := keys[1500]
	began := time.Now()
	if _, ok := p.take(t.Context(), far, "2500"); ok {
		t.Errorf("a pod three pages on came from a page before its page was read")
	}
	if waited := time.Since(began); waited > time.Second {
		t.Errorf("a pod queued out of order waited %s for its page", waited)
	}
	if _, ok := p.take(t.Context(), keys[0], "999"); ok {
		t.Errorf("a pod at version 1000 was taken for version 999")
	}
	for _, k := range keys[1:1500] {
		p.take(t.Context(), k, "")
	}
	// The last page (1,500 to 1,599) is read once the workers made room;
	// nobody takes its pods yet.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		run := p.run
		if run == nil {
			p.mu.Unlock()
			t.Fatal("the reading ended with pods not taken")
		}
		if run.listed >= 1599 {
			_, farHeld := run.held[far]
			_, nextHeld := run.held[keys[1501]]
			p.mu.Unlock()
			if farHeld || !nextHeld {
				t.Errorf("last page: the pod read alone held %v (want false), the next pod held %v (want true)", farHeld, nextHeld)
			}
			return
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the last page was not read")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A reader whose pods nobody takes gives up and drops them; a new
// queueing drops the reading before it.
func TestPodPagesStallAndRestart(t *testing.T) {
	f, keys := newPagedPods(map[string]int{"a": 1200})
	p := newPodPages(f)
	p.stall = 50 * time.Millisecond
	p.start(t.Context(), keys, notB)
	waitRunEnded(t, p)
	if n := f.listed("a"); n != 1 {
		t.Errorf("%d LISTs before the reader gave up, want 1: the next page waits for room, and nobody took a pod", n)
	}
	if _, ok := p.take(t.Context(), keys[0], "1000"); ok {
		t.Errorf("a pod came from a reading that gave up")
	}

	p.stall = time.Minute
	p.start(t.Context(), keys, notB)
	p.mu.Lock()
	first := p.run
	p.mu.Unlock()
	p.start(t.Context(), keys[:10], notB)
	p.mu.Lock()
	dropped := first.done
	p.mu.Unlock()
	if !dropped {
		t.Errorf("the first reading still runs after a second started")
	}
	for _, k := range keys[:10] {
		i, _ := strconv.Atoi(k.Name[len("web-"):])
		if _, ok := p.take(t.Context(), k, strconv.Itoa(1000+i)); !ok {
			t.Errorf("%s: not from the second reading's page", k)
		}
	}
	waitRunEnded(t, p)
}

// Keys queued before the reading keep their place in the queue, so the
// workers may take them in any order. None may then wait for a page the
// reader cannot read until the workers take pods: with the stall time at a
// minute, 16 workers taking 2,000 pods in a random order must not wait
// for it once.
func TestPodPagesOutOfOrder(t *testing.T) {
	f, keys := newPagedPods(map[string]int{"a": 2000})
	p := newPodPages(f)
	p.stall = time.Minute
	p.start(t.Context(), keys, notB)
	shuffled := slices.Clone(keys)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	next := make(chan types.NamespacedName)
	var paged atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for k := range next {
				i, _ := strconv.Atoi(k.Name[len("web-"):])
				if _, ok := p.take(t.Context(), k, strconv.Itoa(1000+i)); ok {
					paged.Add(1)
				}
			}
		})
	}
	began := time.Now()
	for _, k := range shuffled {
		next <- k
	}
	close(next)
	wg.Wait()
	if took := time.Since(began); took > p.stall/2 {
		t.Fatalf("2,000 pods taken out of order in %s: workers waited for a page the reader could not read", took)
	}
	t.Logf("out of order: %d of %d pods from pages, %d LISTs", paged.Load(), len(keys), f.listed("a"))
}

// hangingPods is an API server that never answers a LIST.
type hangingPods struct{ client.Reader }

func (hangingPods) List(ctx context.Context, _ client.ObjectList, _ ...client.ListOption) error {
	<-ctx.Done()
	return ctx.Err()
}

// A page that does not come holds a worker for the stall time at most, and
// the reading ends.
func TestPodPagesPageNeverComes(t *testing.T) {
	_, keys := newPagedPods(map[string]int{"a": 10})
	p := newPodPages(hangingPods{})
	p.stall = 100 * time.Millisecond
	p.start(t.Context(), keys, notB)
	began := time.Now()
	if _, ok := p.take(t.Context(), keys[0], "1000"); ok {
		t.Fatal("a pod came from a page that never came")
	}
	if waited := time.Since(began); waited < p.stall/2 || waited > 10*p.stall {
		t.Errorf("the worker waited %s for the page; want about the stall time, %s", waited, p.stall)
	}
	waitRunEnded(t, p)
}

func waitRunEnded(t *testing.T, p *podPages) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		ended := p.run == nil
		p.mu.Unlock()
		if ended {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the reading did not end")
}
