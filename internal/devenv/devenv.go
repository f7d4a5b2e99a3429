// Package devenv runs a complete local Kubernetes cluster without containers,
// the one behind `vigil dev`: etcd and kube-apiserver (through
// controller-runtime's envtest), kube-controller-manager, kube-scheduler and
// kwok, which simulates the kubelets of N nodes so that pods get scheduled,
// become Running and Ready, and go away when deleted, and an in-process OCI
// registry on a loopback port for the images those pods name.
//
// Every file the cluster needs lives in one temporary directory, every child
// runs in a process group of its own, and Stop removes both.
package devenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/vigil-dev/vigil/config"
)

// Options configures Start.
type Options struct {
	// AssetsDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler and kwok (`make tools` builds them into bin/). Default:
	// $KUBEBUILDER_ASSETS, else bin/ in the working directory.
	AssetsDir string
	// Nodes is how many kwok nodes to simulate, each with 32 CPUs, 256Gi and
	// room for 110 pods. Default 3.
	Nodes int
	// Log receives a line per step of Start and Stop. Nil discards them. The
	// components' own logs are files in LogDir; errors quote their last lines.
	Log io.Writer
}

// DefaultNodes is the number of nodes when Options.Nodes is zero.
const DefaultNodes = 3

// Time limits: for the whole of Start (on a loaded machine the API server
// alone can take 20s), and for each child to exit after SIGTERM.
const (
	startTimeout = 3 * time.Minute
	stopGrace    = 15 * time.Second
	// controlPlaneStopGrace is kube-apiserver's and etcd's: on SIGTERM
	// kube-apiserver drains the requests in flight, for up to its request
	// timeout (60s), and on a loaded machine that takes longer than the
	// other children's grace; envtest reports a timeout, then kills it.
	controlPlaneStopGrace = 70 * time.Second
)

// Cluster is a running local cluster. Stop it exactly once (further calls
// return the first result).
type Cluster struct {
	dir   string // the temporary directory holding everything
	log   io.Writer
	nodes int

	controlPlane *envtest.ControlPlane
	admin        *rest.Config
	children     []*process // kube-controller-manager, kube-scheduler, kwok
	registry     *Registry
	registryLog  *os.File
	// starter starts every child, so that their parent-death signal
	// follows vigil, not a thread of it.
	starter *startThread

	failOnce sync.Once
	failed   chan struct{} // closed when a child exits unexpectedly
	failErr  error

	stopOnce sync.Once
	stopErr  error
}

// Start starts a cluster and returns once the API server is healthy, the
// controllers and the scheduler serve, and all nodes are Ready. A missing
// binary is a *MissingBinaryError. When Start fails, or ctx ends first, it
// stops whatever it had started and removes its files.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	began := time.Now()
	if opts.AssetsDir == "" {
		opts.AssetsDir = defaultAssetsDir()
	}
	if opts.Nodes == 0 {
		opts.Nodes = DefaultNodes
	}
	if opts.Nodes < 0 || opts.Nodes > maxNodes {
		return nil, fmt.Errorf("%d nodes: the number of nodes must be between 1 and %d", opts.Nodes, maxNodes)
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	bins, err := findBinaries(opts.AssetsDir)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vigil-dev-")
	if err != nil {
		return nil, fmt.Errorf("create the cluster's temporary directory: %w", err)
	}
	c := &Cluster{dir: dir, log: opts.Log, nodes: opts.Nodes, failed: make(chan struct{}), starter: newStartThread()}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	if err := c.startControlPlane(bins); err != nil {
		return nil, err
	}
	c.logf("etcd and kube-apiserver serve at %s (%s)", c.admin.Host, since(began))
	if err := c.startRegistry(); err != nil {
		return nil, err
	}
	c.logf("the OCI registry serves at %s", c.registry.Addr())
	fast := c.RESTConfig()
	fast.QPS, fast.Burst = componentQPS, componentBurst // creating 100 nodes takes 20s at the default 5/s
	cs, err := kubernetes.NewForConfig(fast)
	if err != nil {
		return nil, err
	}
	// The Nodes exist, with their capacity, before kwok starts managing them.
	if err := createNodes(ctx, cs, c.nodes); err != nil {
		return nil, err
	}
	ports, err := c.startComponents(bins)
	if err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, cs, ports); err != nil {
		return nil, err
	}
	c.logf("ready: %d nodes, controllers and scheduler running (%s)", c.nodes, since(began))
	return c, nil
}

// startControlPlane starts etcd and kube-apiserver with envtest and
// provisions the admin user.
func (c *Cluster) startControlPlane(bins map[string]string) error {
	for _, sub := range []string{"etcd", "kube-apiserver", "logs"} {
		if err := os.MkdirAll(filepath.Join(c.dir, sub), 0o700); err != nil {
			return err
		}
	}
	etcdLog, err := createLog(c.logPath(binEtcd))
	if err != nil {
		return err
	}
	apiLog, err := createLog(c.logPath(binAPIServer))
	if err != nil {
		_ = etcdLog.Close()
		return err
	}
	// The processes keep their own descriptors; ours are not needed past Start.
	defer etcdLog.Close()
	defer apiLog.Close()

	paths, undo, err := shimmed(filepath.Join(c.dir, "shims"), map[string]string{binEtcd: bins[binEtcd], binAPIServer: bins[binAPIServer]})
	if err != nil {
		return err
	}
	defer undo()
	api := &envtest.APIServer{
		Path: paths[binAPIServer], CertDir: filepath.Join(c.dir, "kube-apiserver"),
		Out: apiLog, Err: apiLog, StartTimeout: time.Minute, StopTimeout: controlPlaneStopGrace,
	}
	api.Configure().Set("disable-admission-plugins", strings.Join(disabledAdmissionPlugins, ","))
	c.controlPlane = &envtest.ControlPlane{
		Etcd: &envtest.Etcd{
			Path: paths[binEtcd], DataDir: filepath.Join(c.dir, "etcd"),
			Out: etcdLog, Err: etcdLog, StartTimeout: time.Minute, StopTimeout: controlPlaneStopGrace,
		},
		APIServer: api,
	}
	if err := c.starter.run(c.controlPlane.Start); err != nil {
		return fmt.Errorf("start etcd and kube-apiserver: %w; the end of kube-apiserver's log:\n%s",
			err, logTail(c.logPath(binAPIServer), 20))
	}
	user, err := c.controlPlane.AddUser(envtest.User{Name: kubeconfigUser, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("provision the admin user: %w", err)
	}
	c.admin = user.Config()
	return nil
}

// startRegistry starts the in-process OCI registry, logging to LogDir.
func (c *Cluster) startRegistry() error {
	logFile, err := createLog(c.logPath("registry"))
	if err != nil {
		return err
	}
	r, err := StartRegistry(logFile)
	if err != nil {
		_ = logFile.Close()
		return err
	}
	c.registry, c.registryLog = r, logFile
	return nil
}

// componentPorts are the secure ports that readiness is checked on.
type componentPorts struct{ controllerManager, scheduler int }

// startComponents writes the components' files and starts
// kube-controller-manager, kube-scheduler and kwok.
func (c *Cluster) startComponents(bins map[string]string) (componentPorts, error) {
	var ports componentPorts
	kubeconfig := filepath.Join(c.dir, "admin.kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig); err != nil {
		return ports, err
	}
	stages, err := config.Kwok.ReadFile(config.KwokStagesFile)
	if err != nil {
		return ports, err
	}
	stagesFile := filepath.Join(c.dir, "kwok", "stages.yaml")
	if err := writeFileAtomic(stagesFile, stages); err != nil {
		return ports, err
	}
	schedConfig := filepath.Join(c.dir, binScheduler, "config.yaml")
	if err := writeFileAtomic(schedConfig, []byte(schedulerConfig(kubeconfig))); err != nil {
		return ports, err
	}
	if ports.controllerManager, err = freePort(); err != nil {
		return ports, err
	}
	if ports.scheduler, err = freePort(); err != nil {
		return ports, err
	}
	env := componentEnv(filepath.Join(c.dir, "home"))
	starts := []struct {
		name string
		args []string
	}{
		{binControllerManager, controllerManagerArgs(kubeconfig, filepath.Join(c.dir, binControllerManager), ports.controllerManager)},
		{binScheduler, schedulerArgs(schedConfig, filepath.Join(c.dir, binScheduler), ports.scheduler)},
		{binKwok, kwokArgs(kubeconfig, stagesFile)},
	}
	for _, s := range starts {
		var p *process
		err := c.starter.run(func() (err error) {
			p, err = startProcess(s.name, bins[s.name], s.args, env, c.logPath(s.name), c.childExited)
			return err
		})
		if err != nil {
			return ports, err
		}
		c.children = append(c.children, p)
	}
	return ports, nil
}

// childExited records the first child that exits before Stop.
func (c *Cluster) childExited(p *process) {
	c.failOnce.Do(func() {
		c.failErr = p.exitError()
		close(c.failed)
	})
}

// waitReady polls until the controller manager and the scheduler answer
// /healthz, the default ServiceAccount exists (the controller manager starts
// its informers only after every controller, so this shows that they run)
// and every node is Ready.
func (c *Cluster) waitReady(ctx context.Context, cs kubernetes.Interface, ports componentPorts) error {
	probe := &http.Client{
		Timeout: 2 * time.Second,
		// The components serve self-signed certificates on loopback.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // #nosec G402 -- health probes of our own components on loopback, self-signed
	}
	defer probe.CloseIdleConnections()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := c.notReady(ctx, cs, probe, ports)
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-c.failed:
			return c.failErr
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			var msg strings.Builder
			fmt.Fprintf(&msg, "the cluster was not ready in time (%v)", ctx.Err())
			for _, p := range pending {
				fmt.Fprintf(&msg, "\nstill waiting for %s; the end of %s's log:\n%s", p.what, p.component, logTail(c.logPath(p.component), 10))
			}
			return errors.New(msg.String())
		case <-tick.C:
		}
	}
}

// pendingCheck is one readiness check that has not passed yet.
type pendingCheck struct {
	what      string // in words
	component string // whose log tells why
}

// notReady lists the readiness checks that do not pass yet.
func (c *Cluster) notReady(ctx context.Context, cs kubernetes.Interface, probe *http.Client, ports componentPorts) []pendingCheck {
	var pending []pendingCheck
	if !healthy(ctx, probe, ports.controllerManager) {
		pending = append(pending, pendingCheck{"kube-controller-manager's /healthz", binControllerManager})
	}
	if !healthy(ctx, probe, ports.scheduler) {
		pending = append(pending, pendingCheck{"kube-scheduler's /healthz", binScheduler})
	}
	if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			pending = append(pending, pendingCheck{"the default ServiceAccount", binControllerManager})
		} else {
			pending = append(pending, pendingCheck{"the API server (" + err.Error() + ")", binAPIServer})
		}
	}
	if ready, err := readyNodes(ctx, cs); err != nil || ready < c.nodes {
		pending = append(pending, pendingCheck{fmt.Sprintf("%d of %d nodes to be Ready", c.nodes-ready, c.nodes), binKwok})
	}
	return pending
}

func healthy(ctx context.Context, probe *http.Client, port int) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), nil)
	if err != nil {
		return false
	}
	resp, err := probe.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// RESTConfig returns a copy of the admin user's client configuration
// (group system:masters), with client-go's default rate limits: set QPS and
// Burst to suit the client.
func (c *Cluster) RESTConfig() *rest.Config {
	return rest.CopyConfig(c.admin)
}

// WriteKubeconfig writes a kubeconfig for the admin user, certificates
// embedded, that kubectl can use, with mode 0600. The file appears whole
// (written aside, then renamed): a reader polling for it never sees half.
func (c *Cluster) WriteKubeconfig(path string) error {
	data, err := kubeconfigFor(c.admin)
	if err != nil {
		return fmt.Errorf("render kubeconfig: %w", err)
	}
	return writeFileAtomic(path, data)
}

// RegistryAddr is the host:port of the cluster's OCI registry on loopback
// (plain HTTP), for image references such as <RegistryAddr>/app:v1. Stop
// stops it and drops its content.
func (c *Cluster) RegistryAddr() string { return c.registry.Addr() }

// LogDir is the directory of the components' logs, one file per component.
// Stop removes it.
func (c *Cluster) LogDir() string { return filepath.Join(c.dir, "logs") }

// Dir is the temporary directory that holds all of the cluster's files:
// etcd's data, certificates, kubeconfigs, logs. Stop removes it.
func (c *Cluster) Dir() string { return c.dir }

// Failed is closed when kube-controller-manager, kube-scheduler or kwok
// exits without Stop being called; Err then says which one and why.
func (c *Cluster) Failed() <-chan struct{} { return c.failed }

// Err is what Failed signals, nil until then.
func (c *Cluster) Err() error {
	select {
	case <-c.failed:
		return c.failErr
	default:
		return nil
	}
}

// Stop stops every child (SIGTERM to its process group, SIGKILL after a
// grace period): kwok, the scheduler and the controller manager together,
// then the registry, then kube-apiserver, then etcd. Then it removes the temporary directory.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		began := time.Now()
		errs := make([]error, len(c.children))
		var wg sync.WaitGroup
		for i, p := range c.children {
			wg.Go(func() { errs[i] = p.stop(stopGrace) })
		}
		wg.Wait()
		if c.registry != nil {
			ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
			errs = append(errs, c.registry.Stop(ctx), c.registryLog.Close())
			cancel()
		}
		if c.controlPlane != nil {
			cpBegan := time.Now()
			errs = append(errs, c.controlPlane.Stop())
			c.logf("kube-apiserver and etcd stopped (%s)", since(cpBegan))
		}
		c.starter.stop()
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.dir, err))
		}
		c.stopErr = errors.Join(errs...)
		c.logf("stopped (%s)", since(began))
	})
	return c.stopErr
}

func createLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) // #nosec G304 -- a log file in devenv's own directory
}

func (c *Cluster) logPath(component string) string {
	return filepath.Join(c.dir, "logs", component+".log")
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "devenv: "+format+"\n", args...)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }
