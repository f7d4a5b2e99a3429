package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/report"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// Deadlines of the tests that run `vigil controller` against envtest:
// generous, since CI machines are shared and these tests load them.
const (
	controlPlaneTimeout = 2 * time.Minute  // kube-apiserver (re)starting
	convergeTimeout     = 3 * time.Minute  // Vigil catching up with thousands of pods
	takeoverTimeout     = time.Minute      // the standby taking the Lease over
	controllerStopGrace = 30 * time.Second // SIGTERM until `vigil controller` exits
)

// TestLeaderFailover runs two `vigil controller` processes with leader
// election against one kube-apiserver, makes a policy edit flip the results
// of 2,000 pods, and SIGKILLs the leader while the reports are half
// rewritten. While no one leads, pods are deleted and created. The standby
// must take the Lease over and finish the job: in the end every pod has
// exactly one report, with the right result and a summary that counts it, no
// report is left for a deleted pod, and the policy's status counts every pod.
func TestLeaderFailover(t *testing.T) {
	testenv.EndToEnd(t)
	const (
		ns       = "failover"
		cip      = "failover"
		nPods    = 2000
		nChurn   = 100 // pods deleted, and pods created, while no one leads
		attempts = 4   // policy flips tried before giving up catching one half done
	)
	ctx := context.Background()
	c := startEnvCluster(t)
	c.namespace(t, ns, true)
	c.createPolicy(t, cip, "registry.test/failover/**", v1beta1.StaticActionPass)

	began := time.Now()
	var names []string
	for i := range nPods {
		names = append(names, fmt.Sprintf("pod-%04d", i))
	}
	c.createPods(t, ns, "registry.test/failover/app:1", names...)
	t.Logf("%d pods created in %s", nPods, time.Since(began).Round(time.Millisecond))

	// Faster leader election than the defaults (15s, 10s, 2s), so that the
	// takeover fits the test, with room for slow renewals on a loaded machine.
	leFlags := []string{"--leader-elect-lease-duration=8s", "--leader-elect-renew-deadline=6s", "--leader-elect-retry-period=1s"}
	procs := []*controllerProcess{startControllerProcess(t, c, "a", leFlags...), startControllerProcess(t, c, "b", leFlags...)}

	began = time.Now()
	c.waitConverged(t, ns, cip, reportsv1alpha2.ResultPass, procs)
	t.Logf("first convergence (%d reports created): %s", nPods, time.Since(began).Round(time.Millisecond))

	leader, standby, holder := findLeader(t, c, procs)
	t.Logf("leader: process %s (pid %d), Lease holder %s", leader.Name, leader.Pid(), holder)

	// Flip the policy, and kill the leader once between 10% and 70% of the
	// reports are rewritten. A poll that first sees more than 70% missed the
	// window: let that flip finish and try again.
	want := reportsv1alpha2.ResultPass
	var killedAt time.Time
	for attempt := 1; killedAt.IsZero(); attempt++ {
		if attempt > attempts {
			t.Fatalf("in %d policy flips, no poll saw between 10%% and 70%% of the reports rewritten: the leader could not be killed half way", attempts)
		}
		want = flipResult(want)
		c.setPolicyAction(t, cip, want)
		flipped := time.Now()
		var seen reportCheck
		waitFor(t, convergeTimeout, fmt.Sprintf("10%% of the reports to turn %s", want), func() (bool, string) {
			seen = c.checkReports(ns, cip, want)
			return seen.err == nil && seen.right*10 >= nPods, seen.String()
		})
		if seen.right*10 > nPods*7 {
			t.Logf("flip %d (to %s): first seen %d/%d rewritten after %s, past 70%%: flipping again", attempt, want, seen.right, nPods, time.Since(flipped).Round(time.Millisecond))
			c.waitConverged(t, ns, cip, want, procs)
			continue
		}
		leader.kill(t)
		killedAt = time.Now()
		atKill := c.checkReports(ns, cip, want)
		t.Logf("flip %d (to %s): leader %s SIGKILLed %s after the edit, with %d/%d reports rewritten (%d%%)",
			attempt, want, leader.Name, killedAt.Sub(flipped).Round(time.Millisecond), atKill.right, nPods, atKill.right*100/nPods)
		// The poll saw between 10% and 70%; the leader wrote on until the
		// kill landed, so more may be rewritten now, which is still a leader
		// dying half way. Only a flip already finished misses the point.
		if atKill.right >= nPods {
			t.Errorf("all %d reports were rewritten by the time the leader died (the poll before the kill saw %d): nothing was left half done", nPods, seen.right)
		}
	}

	// No one leads: pods come and go unwatched.
	var deleted []string
	for i := 0; i < nChurn; i++ {
		name := names[i*(nPods/nChurn)]
		if err := c.client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatalf("delete pod %s: %v", name, err)
		}
		deleted = append(deleted, name)
	}
	var late []string
	for i := range nChurn {
		late = append(late, fmt.Sprintf("late-%03d", i))
	}
	c.createPods(t, ns, "registry.test/failover/app:2", late...)
	t.Logf("while no one led: %d pods deleted and %d created, %s after the kill", nChurn, nChurn, time.Since(killedAt).Round(time.Millisecond))

	// The standby takes the Lease over.
	var newHolder string
	waitFor(t, takeoverTimeout, "the standby to take the Lease over", func() (bool, string) {
		h, err := c.leaseHolder()
		if err != nil {
			return false, err.Error()
		}
		newHolder = h
		return h != "" && h != holder, "Lease holder " + h
	})
	takenOver := time.Now()
	t.Logf("takeover: the Lease went to %s %s after the kill", newHolder, takenOver.Sub(killedAt).Round(time.Millisecond))
	waitFor(t, takeoverTimeout, "the standby to say it leads", func() (bool, string) {
		ok, detail := standby.leading(t)
		return ok, detail
	})

	c.waitConverged(t, ns, cip, want, []*controllerProcess{standby})
	t.Logf("convergence: %s after the takeover, %s after the kill", time.Since(takenOver).Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))

	final := c.checkReports(ns, cip, want)
	if final.pods != nPods || final.right != nPods {
		t.Errorf("in the end: %s; want %d pods, each with one right report", final, nPods)
	}
	for _, name := range deleted {
		if final.byPod[name] != 0 {
			t.Errorf("deleted pod %s still has %d report(s)", name, final.byPod[name])
		}
	}
	for _, name := range late {
		if final.byPod[name] != 1 {
			t.Errorf("pod %s, created while no one led, has %d report(s), want 1", name, final.byPod[name])
		}
	}
	if h, err := c.leaseHolder(); err != nil || h != newHolder {
		t.Errorf("Lease holder at the end: %q (%v), want %s still", h, err, newHolder)
	}
	if standby.exited() {
		t.Errorf("the new leader %s exited: %v", standby.Name, standby.waitErr)
	}
}

func flipResult(r reportsv1alpha2.Result) reportsv1alpha2.Result {
	if r == reportsv1alpha2.ResultPass {
		return reportsv1alpha2.ResultFail
	}
	return reportsv1alpha2.ResultPass
}

// findLeader waits until exactly one of procs says it leads (its
// leader_election_master_status metric) and the Lease names a holder, and
// returns the leader, the other process and the holder.
func findLeader(t *testing.T, c *envCluster, procs []*controllerProcess) (leader, other *controllerProcess, holder string) {
	t.Helper()
	waitFor(t, takeoverTimeout, "one leader", func() (bool, string) {
		var leading []*controllerProcess
		var details []string
		for _, p := range procs {
			ok, detail := p.leading(t)
			if ok {
				leading = append(leading, p)
			}
			details = append(details, p.Name+": "+detail)
		}
		h, err := c.leaseHolder()
		if err != nil {
			return false, err.Error()
		}
		holder = h
		if len(leading) != 1 || h == "" {
			return false, fmt.Sprintf("Lease holder %q; %s", h, strings.Join(details, "; "))
		}
		leader = leading[0]
		return true, ""
	})
	for _, p := range procs {
		if p != leader {
			other = p
		}
	}
	return leader, other, holder
}

// envCluster is a kube-apiserver and etcd started by envtest from bin/,
// with Vigil's CRDs and namespace, a kubeconfig file for `vigil controller`
// and a client for the test. The API server keeps its certificates in a
// directory of the test's, so that it can be stopped and started again on
// the same port and etcd with the kubeconfig still valid.
var quietEnvtest sync.Once

type envCluster struct {
	env        *envtest.Environment
	Kubeconfig string
	client     client.Client
}

func startEnvCluster(t testing.TB) *envCluster {
	t.Helper()
	// envtest logs through controller-runtime's logger, which complains
	// with a stack trace if nothing was set; its lines say nothing a
	// failure here needs.
	quietEnvtest.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	env.ControlPlaneStartTimeout = controlPlaneTimeout
	env.ControlPlaneStopTimeout = time.Minute
	apiServer := &envtest.APIServer{CertDir: t.TempDir()}
	// On SIGTERM, kube-apiserver otherwise gives open watches (Vigil's)
	// --request-timeout, a minute, before it exits; this way it drains the
	// other requests, answering new ones 429 with Retry-After meanwhile, and
	// exits 2 seconds later.
	apiServer.Configure().Set("shutdown-send-retry-after", "true")
	// VIGIL_TEST_APISERVER_LOG=FILE keeps kube-apiserver's output, to see
	// what it did on a stop or start.
	if path := os.Getenv("VIGIL_TEST_APISERVER_LOG"); path != "" {
		out, err := os.Create(path) // #nosec G304 -- a file the person running the tests names
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = out.Close() })
		apiServer.Out, apiServer.Err = out, out
	}
	env.ControlPlane.APIServer = apiServer
	began := time.Now()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop kube-apiserver and etcd: %v", err)
		}
	})
	t.Logf("kube-apiserver and etcd ready in %s", time.Since(began).Round(time.Millisecond))
	k, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	c := &envCluster{env: env, Kubeconfig: filepath.Join(t.TempDir(), "kubeconfig"), client: k}
	if err := os.WriteFile(c.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	c.namespace(t, manager.DefaultNamespace, false)
	return c
}

// restartAPIServer stops kube-apiserver (SIGTERM, then waits until it has
// exited), leaves it down for outage, and starts it again on the same port,
// certificates and etcd; it returns once /healthz answers again, with the
// time the stop began, the time the process was gone and the time it
// answered again.
func (c *envCluster) restartAPIServer(t *testing.T, outage time.Duration) (stopping, down, up time.Time) {
	t.Helper()
	s := c.env.ControlPlane.APIServer
	addr := s.SecureServing.ListenAddr
	stopping = time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("stop kube-apiserver: %v", err)
	}
	down = time.Now()
	time.Sleep(outage) // the outage itself, not a wait for something
	if err := s.Start(); err != nil {
		t.Fatalf("start kube-apiserver again: %v", err)
	}
	up = time.Now()
	if s.SecureServing.ListenAddr != addr {
		t.Fatalf("kube-apiserver came back on %s, not %s: the kubeconfig no longer points at it", s.SecureServing.ListenAddr, addr)
	}
	return stopping, down, up
}

// namespace creates a namespace, opted in to Vigil when included.
func (c *envCluster) namespace(t testing.TB, name string, included bool) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if included {
		ns.Labels = map[string]string{"policy.sigstore.dev/include": "true"}
	}
	if err := c.client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// createPolicy creates a ClusterImagePolicy for the images of glob whose
// static authority passes or fails every pod.
func (c *envCluster) createPolicy(t *testing.T, name, glob, action string) {
	t.Helper()
	cip := &v1beta1.ClusterImagePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1beta1.ClusterImagePolicySpec{
			Images:      []v1beta1.ImagePattern{{Glob: glob}},
			Authorities: []v1beta1.Authority{{Static: staticAuthority(action)}},
		},
	}
	if err := c.client.Create(context.Background(), cip); err != nil {
		t.Fatalf("create ClusterImagePolicy %s: %v", name, err)
	}
}

func staticAuthority(action string) *v1beta1.StaticRef {
	if action == v1beta1.StaticActionFail {
		return &v1beta1.StaticRef{Action: action, Message: "the test says no"}
	}
	return &v1beta1.StaticRef{Action: action}
}

// setPolicyAction edits the policy's static authority to pass or fail.
func (c *envCluster) setPolicyAction(t *testing.T, name string, result reportsv1alpha2.Result) {
	t.Helper()
	if _, err := c.editPolicyAction(name, func(string) string { return string(result) }); err != nil {
		t.Fatal(err)
	}
}

// flipPolicyAction edits the policy's static authority from pass to fail or
// back, and returns the result it now gives.
func (c *envCluster) flipPolicyAction(name string) (reportsv1alpha2.Result, error) {
	action, err := c.editPolicyAction(name, func(old string) string {
		return string(flipResult(reportsv1alpha2.Result(old)))
	})
	return reportsv1alpha2.Result(action), err
}

// editPolicyAction sets the policy's static authority to the action edit
// returns from the current one, retrying conflicts (Vigil writes the
// policy's status meanwhile), and returns the action set.
func (c *envCluster) editPolicyAction(name string, edit func(action string) string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var cip v1beta1.ClusterImagePolicy
		if err := c.client.Get(ctx, client.ObjectKey{Name: name}, &cip); err != nil {
			return "", fmt.Errorf("get ClusterImagePolicy %s: %w", name, err)
		}
		action := edit(cip.Spec.Authorities[0].Static.Action)
		cip.Spec.Authorities = []v1beta1.Authority{{Static: staticAuthority(action)}}
		err := c.client.Update(ctx, &cip)
		if err == nil {
			return action, nil
		}
		if !apierrors.IsConflict(err) {
			return "", fmt.Errorf("update ClusterImagePolicy %s: %w", name, err)
		}
	}
}

// createPods creates pods of names running image in ns, 32 at a time. No
// scheduler runs: they stay Pending, which Vigil judges like running pods.
func (c *envCluster) createPods(t *testing.T, ns, image string, names ...string) {
	t.Helper()
	jobs := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for name := range jobs {
				errs <- c.client.Create(context.Background(), pendingPod(ns, name, image))
			}
		})
	}
	for _, n := range names {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("create pod: %v", err)
		}
	}
}

func pendingPod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// leaseHolder is the holder of Vigil's leader-election Lease, empty when
// there is none.
func (c *envCluster) leaseHolder() (string, error) {
	var lease coordinationv1.Lease
	err := c.client.Get(context.Background(), client.ObjectKey{Namespace: manager.DefaultNamespace, Name: manager.DefaultLeaderElectionID}, &lease)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if lease.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *lease.Spec.HolderIdentity, nil
}

// reportCheck compares Vigil's reports in a namespace with its pods.
type reportCheck struct {
	pods, reports int
	// right counts the pods with exactly one report, and that report right:
	// named after the pod's UID, owned by and scoped to it, with exactly one
	// result, of the policy at its current generation, saying want, and a
	// summary that counts it.
	right int
	// byPod counts the reports about each pod name, pods gone included.
	byPod map[string]int
	// problems describes the first few things wrong; nProblems counts them.
	problems  []string
	nProblems int
	// status is the policy's status, and statusOK whether it counts every
	// pod under want at its current generation, Ready.
	status   v1beta1.ClusterImagePolicyStatus
	statusOK bool
	err      error
}

func (r *reportCheck) problem(format string, args ...any) {
	r.nProblems++
	if len(r.problems) < 5 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

// ok says whether the namespace is converged: every report right, none
// missing, none extra, and the policy's status right.
func (r reportCheck) ok() bool {
	return r.err == nil && r.nProblems == 0 && r.right == r.pods && r.reports == r.pods && r.statusOK
}

func (r reportCheck) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	return fmt.Sprintf("%d pods, %d reports, %d right; policy status pods %+v (generation %d, right: %v); %d problem(s): %s",
		r.pods, r.reports, r.right, r.status.Pods, r.status.ObservedGeneration, r.statusOK, r.nProblems, strings.Join(r.problems, "; "))
}

// checkReports reads the pods of ns, Vigil's reports there and the policy
// cip, and compares them: each pod's report must hold cip's result want.
func (c *envCluster) checkReports(ns, cip string, want reportsv1alpha2.Result) reportCheck {
	ctx := context.Background()
	var r reportCheck
	var policy v1beta1.ClusterImagePolicy
	if r.err = c.client.Get(ctx, client.ObjectKey{Name: cip}, &policy); r.err != nil {
		return r
	}
	var pods corev1.PodList
	if r.err = c.client.List(ctx, &pods, client.InNamespace(ns)); r.err != nil {
		return r
	}
	var reports reportsv1alpha2.PolicyReportList
	if r.err = c.client.List(ctx, &reports, client.InNamespace(ns)); r.err != nil {
		return r
	}
	r.pods, r.reports = len(pods.Items), len(reports.Items)
	uids := map[string]types.UID{}
	for _, p := range pods.Items {
		uids[p.Name] = p.UID
	}
	r.byPod = map[string]int{}
	reportOf := map[string]*reportsv1alpha2.PolicyReport{}
	for i := range reports.Items {
		rep := &reports.Items[i]
		if rep.Scope == nil || rep.Scope.Kind != "Pod" {
			r.problem("report %s is not about a pod (scope %+v)", rep.Name, rep.Scope)
			continue
		}
		r.byPod[rep.Scope.Name]++
		reportOf[rep.Scope.Name] = rep
		if uid, ok := uids[rep.Scope.Name]; !ok || uid != rep.Scope.UID {
			r.problem("report %s is about pod %s (%s), which does not exist", rep.Name, rep.Scope.Name, rep.Scope.UID)
		}
	}
	generation := strconv.FormatInt(policy.Generation, 10)
	for _, p := range pods.Items {
		switch n := r.byPod[p.Name]; n {
		case 0:
			r.problem("pod %s has no report", p.Name)
			continue
		case 1:
		default:
			r.problem("pod %s has %d reports", p.Name, n)
			continue
		}
		if err := reportProblem(reportOf[p.Name], &p, cip, generation, want); err != "" {
			r.problem("report of pod %s: %s", p.Name, err)
			continue
		}
		r.right++
	}
	r.status = policy.Status
	wantCounts := v1beta1.PodResultCounts{}
	if want == reportsv1alpha2.ResultPass {
		wantCounts.Pass = len(pods.Items)
	} else {
		wantCounts.Fail = len(pods.Items)
	}
	ready := meta.FindStatusCondition(policy.Status.Conditions, v1beta1.ConditionReady)
	r.statusOK = policy.Status.Pods == wantCounts && policy.Status.ObservedGeneration == policy.Generation &&
		ready != nil && ready.Status == metav1.ConditionTrue
	return r
}

// reportProblem says what is wrong with the report of pod, or "" when it
// holds exactly the result want of policy cip at generation, with a summary
// that counts it, and belongs to the pod.
func reportProblem(rep *reportsv1alpha2.PolicyReport, pod *corev1.Pod, cip, generation string, want reportsv1alpha2.Result) string {
	switch {
	case rep.Name != string(pod.UID):
		return fmt.Sprintf("named %s, not after the pod's UID %s", rep.Name, pod.UID)
	case rep.Labels[report.ManagedByLabel] != report.ManagedByValue:
		return fmt.Sprintf("labels %v", rep.Labels)
	case len(rep.OwnerReferences) != 1 || rep.OwnerReferences[0].UID != pod.UID:
		return fmt.Sprintf("owners %+v", rep.OwnerReferences)
	case rep.Scope.UID != pod.UID:
		return fmt.Sprintf("scope %+v", rep.Scope)
	case len(rep.Results) != 1:
		return fmt.Sprintf("%d results, want 1", len(rep.Results))
	}
	res := rep.Results[0]
	var sum reportsv1alpha2.PolicyReportSummary
	switch res.Result {
	case reportsv1alpha2.ResultPass:
		sum.Pass = 1
	case reportsv1alpha2.ResultFail:
		sum.Fail = 1
	}
	switch {
	case res.Policy != cip || res.Result != want:
		return fmt.Sprintf("result %s=%s, want %s=%s", res.Policy, res.Result, cip, want)
	case res.Properties["policyGeneration"] != generation:
		return fmt.Sprintf("of the policy's generation %s, want %s", res.Properties["policyGeneration"], generation)
	case rep.Summary != sum:
		return fmt.Sprintf("summary %+v does not count its result %s", rep.Summary, res.Result)
	case len(res.Subjects) != 1 || res.Subjects[0].UID != pod.UID:
		return fmt.Sprintf("result about %+v", res.Subjects)
	}
	return ""
}

// waitConverged waits until every pod of ns has exactly one right report
// with cip's result want, none is left over, and the policy's status counts
// them; it fails early if one of procs exits.
func (c *envCluster) waitConverged(t *testing.T, ns, cip string, want reportsv1alpha2.Result, procs []*controllerProcess) {
	t.Helper()
	waitFor(t, convergeTimeout, fmt.Sprintf("every report of %s to say %s", ns, want), func() (bool, string) {
		for _, p := range procs {
			if p.exited() {
				t.Fatalf("vigil controller %s exited (%v); its output ends:\n%s", p.Name, p.waitErr, p.tail(40))
			}
		}
		r := c.checkReports(ns, cip, want)
		return r.ok(), r.String()
	})
}

// controllerProcess is a running `bin/vigil controller` subprocess, in a
// process group of its own.
type controllerProcess struct {
	Name string
	// MetricsAddr serves plain-HTTP metrics.
	MetricsAddr string
	*subprocess
}

// startControllerProcess starts `bin/vigil controller` against c with the webhook
// and probes off, metrics over plain HTTP on a free port, leader election on
// and the extra flags. The test's cleanup stops it (SIGTERM, then SIGKILL to
// its process group) and, if the test failed, shows the end of its output.
func startControllerProcess(t testing.TB, c *envCluster, name string, flags ...string) *controllerProcess {
	t.Helper()
	p := &controllerProcess{
		Name:        name,
		MetricsAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
	}
	argv := append([]string{"controller",
		"--namespace", manager.DefaultNamespace,
		"--webhook-port=-1",
		"--metrics-bind-address", p.MetricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address=0",
		"--leader-elect=true",
	}, flags...)
	cmd := exec.Command(vigilBin(t), argv...)
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "POD_NAMESPACE=")
	})
	cmd.Env = append(env, "KUBECONFIG="+c.Kubeconfig)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var err error
	if p.subprocess, err = startSubprocess(cmd); err != nil {
		t.Fatalf("start vigil controller: %v", err)
	}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("vigil controller %s (pid %d) output ends:\n%s", p.Name, p.Pid(), p.tail(40))
		}
	})
	return p
}

// kill SIGKILLs the process group (its id is the process's) and waits until the process is reaped.
func (p *controllerProcess) kill(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil && !p.exited() {
		t.Fatalf("kill vigil controller %s: %v", p.Name, err)
	}
	select {
	case <-p.done:
	case <-time.After(controllerStopGrace):
		t.Fatalf("vigil controller %s survived SIGKILL for %s", p.Name, controllerStopGrace)
	}
}

// stop sends SIGTERM to the process group and waits; past
// controllerStopGrace it SIGKILLs it.
func (p *controllerProcess) stop(t testing.TB) {
	t.Helper()
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(controllerStopGrace):
		t.Errorf("vigil controller %s did not exit within %s of SIGTERM", p.Name, controllerStopGrace)
		p.kill(t)
	}
}

// leading says whether the process's leader_election_master_status is 1,
// with what it read.
func (p *controllerProcess) leading(t *testing.T) (bool, string) {
	t.Helper()
	if p.exited() {
		return false, fmt.Sprintf("exited (%v)", p.waitErr)
	}
	samples, err := scrape(t, p.MetricsAddr)
	if err != nil {
		return false, err.Error()
	}
	v, found := metricSum(samples, "leader_election_master_status", nil)
	return found && v == 1, fmt.Sprintf("leader_election_master_status %v (found %v)", v, found)
}

// tail is the last n lines of the process's output.
func (p *controllerProcess) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.out.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// userKubeconfig writes a kubeconfig of this cluster for a user with a
// client certificate of name and groups, and returns its path.
func (c *envCluster) userKubeconfig(t testing.TB, name string, groups ...string) string {
	t.Helper()
	return testenv.UserKubeconfig(t, c.env, name, groups...)
}
