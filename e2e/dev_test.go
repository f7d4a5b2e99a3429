package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/internal/testenv"
)

// TestDevCluster checks the `vigil dev` contract with real kubectl: simulated
// nodes Ready, namespace default opted in, a Deployment's pods Running and
// garbage-collected after it, Vigil's CRDs served; then a SIGTERM that exits
// 0 and leaves no process, temporary file or kubeconfig behind.
func TestDevCluster(t *testing.T) {
	testenv.EndToEnd(t)
	d := startDev(t)
	t.Logf("vigil dev wrote its kubeconfig after %s", d.ReadyAfter.Round(100*time.Millisecond))
	if out := d.Output(); !strings.Contains(out, "export KUBECONFIG="+d.Kubeconfig) {
		t.Errorf("vigil dev did not say how to use %s; its output:\n%s", d.Kubeconfig, out)
	}
	if info, err := os.Stat(d.Kubeconfig); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig %s: %v; want mode 0600", d.Kubeconfig, info.Mode())
	}

	t.Run("nodes are Ready", func(t *testing.T) {
		out := d.MustKubectl(t, "get", "nodes", "--no-headers")
		ready := 0
		for line := range strings.Lines(out) {
			if f := strings.Fields(line); len(f) > 1 && f[1] == "Ready" {
				ready++
			}
		}
		if ready != 3 {
			t.Errorf("want 3 Ready nodes, got %d:\n%s", ready, out)
		}
	})

	t.Run("namespace default is opted in", func(t *testing.T) {
		out := d.MustKubectl(t, "get", "ns", "-l", "policy.sigstore.dev/include=true", "-o", "name")
		if strings.TrimSpace(out) != "namespace/default" {
			t.Errorf("namespaces labelled policy.sigstore.dev/include=true: got %q, want namespace/default", out)
		}
	})

	t.Run("CRDs are served", func(t *testing.T) {
		d.MustKubectl(t, "get", "cip")
		d.MustKubectl(t, "get", "clusterimagepolicies.v1alpha1.policy.sigstore.dev")
		d.MustKubectl(t, "get", "polr", "-A")
		d.MustKubectl(t, "get", "cpolr")
	})

	t.Run("a Deployment's pods run and are garbage-collected", func(t *testing.T) {
		// An unlabelled namespace: Vigil's webhook leaves it alone, whatever the
		// policies.
		const ns = "e2e-dev"
		d.MustKubectl(t, "create", "namespace", ns)
		d.MustKubectl(t, "-n", ns, "create", "deployment", "web", "--image=registry.k8s.io/pause:3.10", "--replicas=3")
		waitFor(t, waitTimeout, "3 pods Running", func() (bool, string) {
			out, err := d.Kubectl("-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}")
			return err == nil && strings.Count(out, "Running") == 3, out
		})
		d.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=90s")
		d.MustKubectl(t, "-n", ns, "rollout", "status", "deployment/web", "--timeout=90s")

		d.MustKubectl(t, "-n", ns, "delete", "deployment", "web")
		waitFor(t, waitTimeout, "the ReplicaSet and pods to be gone", func() (bool, string) {
			out, err := d.Kubectl("-n", ns, "get", "replicasets,pods", "-l", "app=web", "-o", "name")
			return err == nil && strings.TrimSpace(out) == "", out
		})
	})

	// What runs now must all be gone after SIGTERM.
	children := descendants(t, d.Pid())
	var names []string
	rssKiB := 0
	if p, ok := readProc(d.Pid()); ok {
		rssKiB = p.rssKiB
	}
	for _, p := range children {
		names = append(names, filepath.Base(strings.Fields(p.cmdline + " ?")[0]))
		rssKiB += p.rssKiB
	}
	t.Logf("vigil dev and its %d descendants (%s) use %d MiB of RSS", len(children), strings.Join(names, ", "), rssKiB/1024)
	for _, want := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("no %s among vigil dev's children %v", want, names)
		}
	}

	code, took := d.Stop(t)
	t.Logf("vigil dev exited %d %s after SIGTERM", code, took.Round(100*time.Millisecond))
	if code != 0 {
		t.Errorf("vigil dev exited %d after SIGTERM, want 0; its output:\n%s", code, d.Output())
	}
	for _, p := range survivors(t, children, d.TmpDir) {
		t.Errorf("process %d survived vigil dev: %s", p.pid, p.cmdline)
	}
	if entries, err := os.ReadDir(d.TmpDir); err != nil || len(entries) != 0 {
		var left []string
		for _, e := range entries {
			left = append(left, e.Name())
		}
		t.Errorf("vigil dev left temporary files in %s: %v (%v)", d.TmpDir, left, err)
	}
	if _, err := os.Stat(d.Kubeconfig); !os.IsNotExist(err) {
		t.Errorf("vigil dev left its kubeconfig %s (%v)", d.Kubeconfig, err)
	}
}

// TestDevUsageErrors checks that `vigil dev` refuses bad input with exit 2
// and a message that says what to do, before starting anything.
func TestDevUsageErrors(t *testing.T) {
	testenv.EndToEnd(t)
	vigil := vigilBin(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing binaries", []string{"--assets", "/nonexistent"}, []string{"/nonexistent", "kube-apiserver", "make tools"}},
		{"no nodes", []string{"--nodes", "0"}, []string{"--nodes"}},
		{"not a number of nodes", []string{"--nodes", "three"}, []string{"--nodes"}},
		{"bad metrics address", []string{"--metrics-bind-address", "8080"}, []string{"--metrics-bind-address"}},
		{"short webhook name", []string{"--webhook-name", "policy"}, []string{"--webhook-name", "three labels"}},
		{"no pass TTL", []string{"--verification-pass-ttl", "0s"}, []string{"--verification-pass-ttl", "positive"}},
		{"negative failure TTL", []string{"--verification-failure-ttl", "-1m"}, []string{"--verification-failure-ttl", "positive"}},
		{"unknown flag", []string{"--node", "3"}, []string{"unknown flag"}},
		{"argument", []string{"now"}, []string{"unknown command"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			kubeconfig := filepath.Join(tmp, "out", "kubeconfig")
			cmd := exec.Command(vigil, append([]string{"dev", "--kubeconfig-out", kubeconfig}, tc.args...)...)
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			code, out, err := exitCode(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if code != 2 {
				t.Errorf("exit code %d, want 2; output:\n%s", code, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("output does not mention %q:\n%s", want, out)
				}
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Errorf("vigil dev left %d entries in TMPDIR", len(entries))
			}
		})
	}
}

// TestDevRemovesStaleKubeconfig checks that a kubeconfig left by an earlier
// run, which points at a cluster that is gone, is removed at start, so that
// waiting for the file means waiting for this run's cluster.
func TestDevRemovesStaleKubeconfig(t *testing.T) {
	testenv.EndToEnd(t)
	tmp := t.TempDir()
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Missing binaries stop vigil dev right after it removed the stale file.
	cmd := exec.Command(vigilBin(t), "dev", "--kubeconfig-out", kubeconfig, "--assets", filepath.Join(tmp, "nonexistent"))
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if code, out, err := exitCode(cmd); err != nil || code != 2 {
		t.Fatalf("exit code %d (%v), want 2; output:\n%s", code, err, out)
	}
	if _, err := os.Stat(kubeconfig); !os.IsNotExist(err) {
		t.Errorf("the stale kubeconfig is still there (%v)", err)
	}
}
