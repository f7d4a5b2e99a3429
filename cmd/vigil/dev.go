package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/devenv"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/policy"
)

// managerOptions are the flags of `vigil dev` that concern the manager.
type managerOptions struct {
	metricsAddr string
	// webhookName is the name kube-apiserver shows in denials.
	webhookName string
	// pinDigests installs and serves the digest-pinning webhook.
	pinDigests bool
	// passTTL and failTTL are how long a verified signature, and a verified
	// failure, stand before the image is verified again.
	passTTL, failTTL time.Duration
	// clockRecheck is the longest a pod under a policy that reads the clock
	// waits before it is judged again.
	clockRecheck time.Duration
}

// managerStopTimeout bounds how long `vigil dev` waits for the manager to
// return after it is told to stop.
const managerStopTimeout = 30 * time.Second

type devOptions struct {
	kubeconfigOut string
	assets        string
	nodes         int
	metricsAddr   string
	webhookName   string
	pinDigests    bool
	passTTL       time.Duration
	failTTL       time.Duration
	clockRecheck  time.Duration
}

func newDevCommand() *cobra.Command {
	o := devOptions{kubeconfigOut: filepath.Join(".vigil", "kubeconfig"), nodes: devenv.DefaultNodes, metricsAddr: "127.0.0.1:8080", webhookName: "policy.sigstore.dev",
		passTTL: manager.DefaultVerificationPassTTL, failTTL: manager.DefaultVerificationFailTTL, clockRecheck: policy.DefaultClockRecheck}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start a local cluster (etcd, kube-apiserver, kwok nodes) with Vigil in it",
		Long: `Start a complete local cluster with no containers: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok simulating nodes on which pods
become Running. Vigil's CRDs are installed, namespace default is labelled
` + v1beta1.IncludeLabel + `=true and Vigil's manager runs in-process.

The kubeconfig is written only once everything is ready, so a script can wait
for the file. Runs until SIGINT or SIGTERM, then stops every process it
started and removes the kubeconfig and its temporary files.

The binaries come from --assets, else $KUBEBUILDER_ASSETS, else bin/
(` + "`make tools`" + ` builds them there).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			return runDev(cmd, o)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitBadInput, err: err}
	})
	f := cmd.Flags()
	f.StringVar(&o.kubeconfigOut, "kubeconfig-out", o.kubeconfigOut, "where to write the cluster's kubeconfig once it is ready")
	f.StringVar(&o.assets, "assets", "", "directory of etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (default $KUBEBUILDER_ASSETS, else bin/)")
	f.IntVar(&o.nodes, "nodes", o.nodes, "number of simulated nodes, each with room for 110 pods")
	f.StringVar(&o.metricsAddr, "metrics-bind-address", o.metricsAddr, "address of the manager's metrics endpoint (plain HTTP); 0 disables it")
	f.BoolVar(&o.pinDigests, "pin-digests", false, "install and serve the digest-pinning webhook, as `vigil controller` does by default; off here because a covered tag must then resolve at a registry, and a local cluster often has none but its own")
	f.DurationVar(&o.passTTL, "verification-pass-ttl", o.passTTL, "how long a verified signature stands (running images are verified again in its last tenth), as `vigil controller`'s flag; shorten it to watch a deleted signature turn a report fail")
	f.DurationVar(&o.failTTL, "verification-failure-ttl", o.failTTL, "how long a verified failure stands before the image is verified again, as `vigil controller`'s flag")
	f.DurationVar(&o.clockRecheck, "clock-recheck", o.clockRecheck, "longest wait before a pod under a policy that reads the clock (time.now_ns) is judged again, as `vigil controller`'s flag; shorten it to watch a result turn as time passes")
	f.StringVar(&o.webhookName, "webhook-name", o.webhookName, "name of the pod webhook, shown in denials; rename it to run beside policy-controller")
	return cmd
}

func (o devOptions) validate() error {
	if o.kubeconfigOut == "" {
		return errors.New("--kubeconfig-out must not be empty")
	}
	if o.nodes < 1 {
		return fmt.Errorf("--nodes %d: need at least one node", o.nodes)
	}
	if errs := validation.IsDNS1123Subdomain(o.webhookName); len(errs) > 0 || strings.Count(o.webhookName, ".") < 2 {
		return fmt.Errorf("--webhook-name %q: want a fully qualified name of at least three labels, such as vigil.policy.sigstore.dev", o.webhookName)
	}
	if o.passTTL <= 0 {
		return fmt.Errorf("--verification-pass-ttl must be positive, not %s", o.passTTL)
	}
	if o.failTTL <= 0 {
		return fmt.Errorf("--verification-failure-ttl must be positive, not %s", o.failTTL)
	}
	if o.clockRecheck <= 0 {
		return fmt.Errorf("--clock-recheck must be positive, not %s", o.clockRecheck)
	}
	if o.metricsAddr != "0" {
		if _, _, err := net.SplitHostPort(o.metricsAddr); err != nil {
			return fmt.Errorf("--metrics-bind-address %q: want host:port, or 0 to disable: %w", o.metricsAddr, err)
		}
	}
	return nil
}

// runDev starts everything, announces the kubeconfig, waits for a signal
// (or a failure) and tears everything down.
func runDev(cmd *cobra.Command, o devOptions) (err error) {
	began := time.Now()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	kubeconfig, err := filepath.Abs(o.kubeconfigOut)
	if err != nil {
		return &exitError{code: exitBadInput, err: fmt.Errorf("--kubeconfig-out: %w", err)}
	}
	// A kubeconfig left by an earlier run points at a cluster that is gone.
	if err := os.Remove(kubeconfig); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the stale kubeconfig: %w", err)
	}

	cluster, err := devenv.Start(ctx, devenv.Options{AssetsDir: o.assets, Nodes: o.nodes})
	if err != nil {
		var missing *devenv.MissingBinaryError
		switch {
		case errors.As(err, &missing):
			return &exitError{code: exitBadInput, err: err}
		case ctx.Err() != nil: // interrupted while starting
			return nil
		}
		return fmt.Errorf("start the cluster: %w", err)
	}
	defer func() {
		if stopErr := cluster.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop the cluster: %w", stopErr))
		}
	}()

	if err := prepareCluster(ctx, cluster); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	managerCtx, stopManager := context.WithCancel(ctx)
	managerDone, err := startManager(managerCtx, cluster, managerOptions{
		metricsAddr: o.metricsAddr, webhookName: o.webhookName, pinDigests: o.pinDigests, passTTL: o.passTTL, failTTL: o.failTTL,
		clockRecheck: o.clockRecheck,
	})
	defer func() {
		stopManager()
		// Told to stop, the manager has nothing more to say that changes the
		// outcome; what it says is worth a line.
		if managerErr := waitManager(managerDone); managerErr != nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "vigil dev: while stopping,", managerErr)
		}
	}()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	if err := cluster.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	defer func() {
		if rmErr := os.Remove(kubeconfig); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("remove the kubeconfig: %w", rmErr))
		}
	}()
	fmt.Fprintf(cmd.OutOrStdout(),
		"vigil dev: ready in %s with %d nodes; use it with `export KUBECONFIG=%s` or `kubectl --kubeconfig %s ...`; an OCI registry (plain HTTP) at %s, whose images pods may name (component logs in %s); Ctrl-C stops it\n",
		time.Since(began).Round(100*time.Millisecond), o.nodes, kubeconfig, kubeconfig, cluster.RegistryAddr(), cluster.LogDir())

	select {
	case <-ctx.Done():
		return nil
	case <-cluster.Failed():
		return fmt.Errorf("the cluster failed: %w", cluster.Err())
	case err := <-managerDone:
		if err == nil {
			err = errors.New("returned before it was told to stop")
		}
		managerDone = nil // already received
		return fmt.Errorf("the manager stopped: %w", err)
	}
}

// prepareCluster installs the CRDs and opts namespace default in.
func prepareCluster(ctx context.Context, cluster *devenv.Cluster) error {
	if err := cluster.InstallCRDs(ctx); err != nil {
		return fmt.Errorf("install the CRDs: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cluster.RESTConfig())
	if err != nil {
		return err
	}
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:"true"}}}`, v1beta1.IncludeLabel)
	// The API server creates namespace default shortly after it starts serving.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Patch(ctx, "default", types.MergePatchType, patch, metav1.PatchOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("label namespace default %s=true: %w", v1beta1.IncludeLabel, err)
	}
	return nil
}

// startManager starts runDevManager and waits until it is ready. The
// returned channel yields what runDevManager returned.
func startManager(ctx context.Context, cluster *devenv.Cluster, mo managerOptions) (chan error, error) {
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runDevManager(ctx, cluster.RESTConfig(), mo, ready) }()
	select {
	case <-ready:
		return done, nil
	case err := <-done:
		if err == nil {
			err = errors.New("returned before it was ready")
		}
		return nil, fmt.Errorf("start the manager: %w", err)
	case <-cluster.Failed():
		return done, fmt.Errorf("the cluster failed while the manager started: %w", cluster.Err())
	case <-ctx.Done():
		return done, ctx.Err()
	}
}

// waitManager waits for a stopped manager to return.
func waitManager(done chan error) error {
	if done == nil {
		return nil
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("the manager: %w", err)
		}
		return nil
	case <-time.After(managerStopTimeout):
		return fmt.Errorf("the manager did not stop within %s", managerStopTimeout)
	}
}
