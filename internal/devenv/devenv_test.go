package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/v1/random"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-dev/vigil/internal/testenv"
)

func TestFindBinariesNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{binEtcd, binAPIServer, binScheduler} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Present but not executable counts as missing.
	if err := os.WriteFile(filepath.Join(dir, binKwok), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := findBinaries(dir)
	var missing *MissingBinaryError
	if !errors.As(err, &missing) {
		t.Fatalf("findBinaries: got %v, want a *MissingBinaryError", err)
	}
	if got, want := strings.Join(missing.Binaries, ","), "kube-controller-manager,kwok"; got != want {
		t.Errorf("missing binaries: got %s, want %s", got, want)
	}
	for _, want := range []string{"kube-controller-manager, kwok", dir, "make tools"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestStartFailsBeforeCreatingAnythingWhenBinariesAreMissing(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	_, err := Start(t.Context(), Options{AssetsDir: filepath.Join(tmp, "nonexistent")})
	var missing *MissingBinaryError
	if !errors.As(err, &missing) || len(missing.Binaries) != len(requiredBinaries) {
		t.Fatalf("Start: got %v, want every binary reported missing", err)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("Start left %d entries in TMPDIR", len(entries))
	}
}

func TestKwokNodesHaveDistinctAddressesAndCIDRs(t *testing.T) {
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 255, 256, maxNodes - 1} {
		node := kwokNode(i)
		for _, v := range []string{node.Spec.PodCIDR, node.Status.Addresses[0].Address} {
			if seen[v] {
				t.Errorf("node %d: %s is used twice", i, v)
			}
			seen[v] = true
		}
	}
	if got := kwokNode(256).Spec.PodCIDR; got != "10.65.0.0/24" {
		t.Errorf("pod CIDR of node 256: got %s, want 10.65.0.0/24", got)
	}
	if got := kwokNode(maxNodes - 1).Spec.PodCIDR; got != "10.127.255.0/24" {
		t.Errorf("pod CIDR of the last node: got %s, want 10.127.255.0/24", got)
	}
}

// TestCluster starts a real cluster from bin/ and checks what `vigil dev`
// promises: nodes Ready, a Deployment's pods Running and Ready, a Job's pod
// Succeeded, garbage collection, CRDs Established, and a Stop that leaves
// nothing behind.
func TestCluster(t *testing.T) {
	testenv.Integration(t)
	if testing.Short() {
		t.Skip("starts a whole cluster")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var log bytes.Buffer
	c, err := Start(t.Context(), Options{AssetsDir: filepath.Join(root, "bin"), Nodes: 2, Log: &log})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	t.Logf("start:\n%s", log.String())

	ctx := t.Context()
	cs := kubernetes.NewForConfigOrDie(c.RESTConfig())
	if err := c.InstallCRDs(ctx); err != nil {
		t.Fatalf("InstallCRDs: %v", err)
	}
	if err := c.InstallCRDs(ctx); err != nil {
		t.Fatalf("InstallCRDs a second time: %v", err)
	}

	kubeconfig := filepath.Join(t.TempDir(), "sub", "kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(kubeconfig); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig: %v, mode %v; want mode 0600", err, info.Mode())
	}
	if _, err := clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
		t.Fatalf("kubeconfig does not load: %v", err)
	}

	labels := map[string]string{"app": "web"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 pods Running and Ready", func() (bool, string) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		var seen []string
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && podReady(&p) && p.Status.PodIP != "" && p.Spec.NodeName != "" {
				ready++
			}
			seen = append(seen, fmt.Sprintf("%s %s ready=%v ip=%q node=%q", p.Name, p.Status.Phase, podReady(&p), p.Status.PodIP, p.Spec.NodeName))
		}
		return ready == 3, fmt.Sprintf("%d pods: %s", len(pods.Items), strings.Join(seen, "; "))
	})

	// The cluster's registry serves what is pushed to it, and a pod that
	// names one of its images by digest gets the imageID a kubelet on
	// containerd reports: repository@digest, the tag dropped.
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := crane.Push(img, c.RegistryAddr()+"/demo/app:v1", crane.Insecure); err != nil {
		t.Fatalf("push to the cluster's registry: %v", err)
	}
	pinned := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: c.RegistryAddr() + "/demo/app:v1@" + digest.String()},
			{Name: "tagged", Image: c.RegistryAddr() + "/demo/app:v1"},
		}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pinned, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pinned pod to run", func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "pinned", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if p.Status.Phase != corev1.PodRunning {
			return false, "phase " + string(p.Status.Phase)
		}
		ids := map[string]string{}
		for _, st := range p.Status.ContainerStatuses {
			ids[st.Name] = st.ImageID
		}
		if want := c.RegistryAddr() + "/demo/app@" + digest.String(); ids["app"] != want {
			t.Fatalf("imageID of the container pinned by digest = %q, want %q", ids["app"], want)
		}
		if ids["tagged"] != "" {
			t.Fatalf("imageID of the container named by tag = %q, want none (kwok cannot resolve tags)", ids["tagged"])
		}
		return true, ""
	})

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "once", Namespace: "default"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "once", Image: "busybox"}},
		}}},
	}
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Job to complete", func() (bool, string) {
		j, err := cs.BatchV1().Jobs("default").Get(ctx, "once", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return j.Status.Succeeded == 1, fmt.Sprintf("status %+v", j.Status)
	})

	if err := cs.AppsV1().Deployments("default").Delete(ctx, "web", metav1.DeleteOptions{
		PropagationPolicy: new(metav1.DeletePropagationBackground),
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Deployment's pods to be gone", func() (bool, string) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err.Error()
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods left", len(pods.Items))
	})

	// A component that dies is reported, with its name and log.
	if c.Err() != nil {
		t.Fatalf("Err before any failure: %v", c.Err())
	}
	kwok := c.children[len(c.children)-1]
	if err := kwok.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Failed():
		if err := c.Err(); err == nil || !strings.Contains(err.Error(), "kwok exited unexpectedly") {
			t.Errorf("Err after kwok was killed: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Errorf("Failed was not closed within %s after kwok was killed", waitTimeout)
	}

	dir := c.Dir()
	stopped = true
	if err := c.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if _, err := crane.Digest(c.RegistryAddr()+"/demo/app:v1", crane.Insecure); err == nil {
		t.Error("the registry still serves after Stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Stop left %s behind (%v)", dir, err)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("Stop left %d entries in TMPDIR, the first %s", len(entries), entries[0].Name())
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitTimeout bounds each wait: generous, for a loaded 2-core machine.
const waitTimeout = 3 * time.Minute

// waitFor polls cond until it holds, failing the test after waitTimeout with
// what cond last observed.
func waitFor(t *testing.T, what string, cond func() (ok bool, observed string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		ok, observed := cond()
		last = observed
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last observed: %s", what, err, last)
	}
}
