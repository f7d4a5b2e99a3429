package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// TestAPIServerRestart stops kube-apiserver (the process exits; etcd keeps
// the data) while pods are created and deleted and a policy is edited, keeps
// it down a few seconds and starts it again on the same port, then changes
// pods and the policy right away. The one `vigil controller` must still run
// and, by itself, converge: every live pod's report right, at the policy's
// last generation, and no report left for a deleted pod.
func TestAPIServerRestart(t *testing.T) {
	testenv.EndToEnd(t)
	const (
		ns      = "restart"
		cip     = "restart"
		image   = "registry.test/restart/app:1"
		nPods   = 200
		outage  = 3 * time.Second
		nAfter  = 20 // pods deleted, and pods created, right after the restart
		minOps  = 20 // churn operations that succeed before the stop, and after the start
		opPause = 20 * time.Millisecond
	)
	c := startEnvCluster(t)
	c.namespace(t, ns, true)
	c.createPolicy(t, cip, "registry.test/restart/**", v1beta1.StaticActionPass)
	var initial []string
	for i := range nPods {
		initial = append(initial, fmt.Sprintf("pod-%03d", i))
	}
	c.createPods(t, ns, image, initial...)
	// The Lease outlives the outage: this test is about the watches, caches
	// and queues recovering, not about the leader giving up (with the
	// default 10s renew deadline, an outage longer than that makes the
	// leader exit, for the kubelet to restart it).
	v := startControllerProcess(t, c, "only", "--leader-elect-lease-duration=90s", "--leader-elect-renew-deadline=60s")
	procs := []*controllerProcess{v}
	began := time.Now()
	c.waitConverged(t, ns, cip, reportsv1alpha2.ResultPass, procs)
	t.Logf("first convergence (%d reports): %s", nPods, time.Since(began).Round(time.Millisecond))

	// Churn: each step creates a pod, deletes the oldest, and every tenth
	// step flips the policy; failures (while kube-apiserver is down) are
	// counted and the step moves on.
	ch := startChurn(c, ns, cip, image, initial, opPause)
	defer ch.stop()
	waitFor(t, convergeTimeout, fmt.Sprintf("%d churn operations before the stop", minOps), func() (bool, string) {
		return ch.ok.Load() >= minOps, ch.String()
	})

	okBefore, failedBefore := ch.ok.Load(), ch.failed.Load()
	stopping, down, up := c.restartAPIServer(t, outage)
	t.Logf("kube-apiserver restarted: stopping took %s, down %s (%s on purpose), unreachable %s in all",
		down.Sub(stopping).Round(time.Millisecond), up.Sub(down).Round(time.Millisecond), outage, up.Sub(stopping).Round(time.Millisecond))
	if v.exited() {
		t.Fatalf("vigil controller exited during the outage (%v); its output ends:\n%s", v.waitErr, v.tail(40))
	}

	// Right after the restart: the policy flips, pods go and come.
	ctx := context.Background()
	if _, err := c.flipPolicyAction(cip); err != nil {
		t.Fatalf("edit the policy right after the restart: %v", err)
	}
	var deleted []string
	for _, name := range ch.takeOldest(nAfter) {
		if err := c.client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatalf("delete pod %s right after the restart: %v", name, err)
		}
		deleted = append(deleted, name)
	}
	var created []string
	for i := range nAfter {
		created = append(created, fmt.Sprintf("after-%02d", i))
	}
	c.createPods(t, ns, image, created...)
	t.Logf("right after the restart: the policy edited, %d pods deleted and %d created in %s", nAfter, nAfter, time.Since(up).Round(time.Millisecond))

	okAtStart := ch.ok.Load()
	waitFor(t, convergeTimeout, fmt.Sprintf("%d churn operations after the start", minOps), func() (bool, string) {
		return ch.ok.Load() >= okAtStart+minOps, ch.String()
	})
	ch.stop()
	t.Logf("churn: %d operations before the stop (%d failed), %d in all, %d failed while kube-apiserver was away; %s",
		okBefore, failedBefore, ch.ok.Load(), ch.failed.Load()-failedBefore, ch)

	// What Vigil must converge to: the policy's last action for every pod
	// that exists now.
	var policy v1beta1.ClusterImagePolicy
	if err := c.client.Get(ctx, client.ObjectKey{Name: cip}, &policy); err != nil {
		t.Fatal(err)
	}
	want := reportsv1alpha2.Result(policy.Spec.Authorities[0].Static.Action)
	settled := time.Now()
	c.waitConverged(t, ns, cip, want, procs)
	t.Logf("converged (%s, policy generation %d) %s after the churn stopped, %s after kube-apiserver came back",
		want, policy.Generation, time.Since(settled).Round(time.Millisecond), time.Since(up).Round(time.Millisecond))

	final := c.checkReports(ns, cip, want)
	gone := append(deleted, ch.deletedNames()...)
	for _, name := range gone {
		if final.byPod[name] != 0 {
			t.Errorf("deleted pod %s still has %d report(s)", name, final.byPod[name])
		}
	}
	for _, name := range created {
		if final.byPod[name] != 1 {
			t.Errorf("pod %s, created right after the restart, has %d report(s), want 1", name, final.byPod[name])
		}
	}
	if v.exited() {
		t.Errorf("vigil controller exited: %v", v.waitErr)
	}
	if len(ch.deletedNames()) == 0 || ch.failed.Load() == failedBefore {
		t.Errorf("the churn did not run across the outage (no pod deleted, or no operation refused): %s", ch)
	}
}

// churn creates and deletes pods and flips a policy in the background.
type churn struct {
	c                *envCluster
	ns, cip, image   string
	ok, failed       atomic.Int64
	mu               sync.Mutex
	live             []string // pods believed to exist, oldest first
	deleted          []string // pods whose deletion succeeded
	created, flipped int
	quit, done       chan struct{}
	stopOnce         sync.Once
	pause            time.Duration
}

func startChurn(c *envCluster, ns, cip, image string, live []string, pause time.Duration) *churn {
	ch := &churn{c: c, ns: ns, cip: cip, image: image, live: append([]string(nil), live...),
		quit: make(chan struct{}), done: make(chan struct{}), pause: pause}
	go ch.run()
	return ch
}

func (ch *churn) run() {
	defer close(ch.done)
	for step := 0; ; step++ {
		select {
		case <-ch.quit:
			return
		case <-time.After(ch.pause):
		}
		ch.step(step)
	}
}

// step does one create, one delete, and every tenth step a policy flip.
func (ch *churn) step(step int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	count := func(err error) bool {
		if err != nil {
			ch.failed.Add(1)
			return false
		}
		ch.ok.Add(1)
		return true
	}
	name := fmt.Sprintf("churn-%04d", step)
	err := ch.c.client.Create(ctx, pendingPod(ch.ns, name, ch.image))
	ch.mu.Lock()
	if count(err) {
		ch.live = append(ch.live, name)
		ch.created++
	}
	ch.mu.Unlock()
	if victim := ch.takeOldest(1); len(victim) == 1 {
		err := ch.c.client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ch.ns, Name: victim[0]}})
		if apierrors.IsNotFound(err) {
			err = nil // an earlier attempt got through after all
		}
		ch.mu.Lock()
		if count(err) {
			ch.deleted = append(ch.deleted, victim[0])
		} else {
			ch.live = append([]string{victim[0]}, ch.live...) // try it again next step
		}
		ch.mu.Unlock()
	}
	if step%10 == 9 {
		_, err := ch.c.flipPolicyAction(ch.cip)
		ch.mu.Lock()
		if count(err) {
			ch.flipped++
		}
		ch.mu.Unlock()
	}
}

// takeOldest removes up to n of the oldest live pods from the churn's list
// and returns them, for the caller to delete.
func (ch *churn) takeOldest(n int) []string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	n = min(n, len(ch.live))
	out := append([]string(nil), ch.live[:n]...)
	ch.live = ch.live[n:]
	return out
}

func (ch *churn) deletedNames() []string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return append([]string(nil), ch.deleted...)
}

func (ch *churn) stop() {
	ch.stopOnce.Do(func() { close(ch.quit) })
	<-ch.done
}

func (ch *churn) String() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return fmt.Sprintf("%d operations succeeded, %d failed; %d pods created, %d deleted, %d policy flips",
		ch.ok.Load(), ch.failed.Load(), ch.created, len(ch.deleted), ch.flipped)
}
