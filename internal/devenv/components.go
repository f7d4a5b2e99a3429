package devenv

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// controllers are the kube-controller-manager controllers a dev cluster
// runs: the workload controllers for every pod-owning kind that Vigil's
// webhook judges, garbage collection (ReplicaSets of a deleted Deployment,
// PolicyReports of a deleted Pod), namespace deletion and default
// ServiceAccounts. Node lifecycle, IPAM, volume binding, certificates, quotas,
// endpoints and the cloud controllers are left out: kwok's nodes need none of
// them, and each costs CPU when there are thousands of pods.
var controllers = []string{
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"daemonset-controller",
	"job-controller",
	"cronjob-controller",
	"ttl-after-finished-controller",
	"pod-garbage-collector-controller",
	// They remove the finalizers that admission puts on PersistentVolumeClaims
	// and PersistentVolumes, without which deleting a namespace would hang.
	"persistentvolumeclaim-protection-controller",
	"persistentvolume-protection-controller",
}

// disabledAdmissionPlugins are turned off in kube-apiserver, consistently with
// the controllers that do not run:
//   - ServiceAccount: without the token controller and a kubelet nobody
//     mounts tokens; with it, a pod created right after its namespace could
//     be refused until the default ServiceAccount exists.
//   - TaintNodesByCondition: it taints every new Node not-ready, and only the
//     node lifecycle controller (not run) would lift the taint.
var disabledAdmissionPlugins = []string{"ServiceAccount", "TaintNodesByCondition"}

// Client rate limits of the controllers and the scheduler, high enough to
// create and place thousands of pods in seconds rather than minutes.
const (
	componentQPS   = 200
	componentBurst = 400
)

// kwokNodeAnnotation marks the Nodes that this cluster's kwok manages.
const (
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	kwokNodeValue      = "fake"
)

// The controller manager and the scheduler serve HTTPS only for readiness
// checks: /healthz is always allowed, anonymously. They get no
// authentication or authorization kubeconfig, which would make them look up
// the front-proxy CA that envtest's API server does not have (and log an
// error about it every few seconds).
func controllerManagerArgs(kubeconfig, certDir string, port int) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--leader-elect=false",
		"--controllers=" + strings.Join(controllers, ","),
		"--kube-api-qps=" + strconv.Itoa(componentQPS),
		"--kube-api-burst=" + strconv.Itoa(componentBurst),
	}
}

func schedulerArgs(configFile, certDir string, port int) []string {
	return []string{
		"--config=" + configFile,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
	}
}

// schedulerConfig is a KubeSchedulerConfiguration: the flags that set the
// same things are deprecated.
func schedulerConfig(kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  qps: %d
  burst: %d
leaderElection:
  leaderElect: false
`, kubeconfig, componentQPS, componentBurst)
}

func kwokArgs(kubeconfig, stagesFile string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--config=" + stagesFile,
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=" + kwokNodeValue,
		// No Leases in kube-node-lease: nothing here watches them (no node
		// lifecycle controller), and they would cost a write per node every
		// 10s. The node-heartbeat stage keeps the Ready condition fresh.
		"--node-lease-duration-seconds=0",
	}
}

// componentEnv is the environment of every child: vigil's own, with HOME
// pointed at home so that no tool reads the user's configuration (kwok loads
// ~/.kwok/kwok.yaml when it exists) or writes caches outside the cluster's
// directory.
func componentEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "KUBECONFIG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// freePort asks the kernel for a free loopback TCP port. Another process may
// take it before the component binds it; the component then fails to start
// and says so in its log.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
