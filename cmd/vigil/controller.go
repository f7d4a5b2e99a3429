package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/vigil-dev/vigil/controllers"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/report"
)

func newControllerCommand() *cobra.Command {
	var (
		opts        manager.Options
		noMatch     string
		reportAPI   string
		serviceName string
		zapOpts     zap.Options
		verify      = controllers.DefaultOptions()
		nsLabel     bool
		// memoryPercent of the container's memory limit is Go's soft limit.
		memoryPercent int
		// gcPercent is Go's GOGC.
		gcPercent int
		// attestationCacheMiB bounds the verifier's attestation statements.
		attestationCacheMiB int
	)
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the in-cluster manager: webhook, reconcilers, metrics, probes, leader election",
		Long: `Run Vigil in a cluster: the validating webhook (on every replica), the
reconcilers that keep PolicyReports (or, with --report-api, openreports.io
Reports) current (on the leader), metrics over HTTPS behind Kubernetes
authentication and authorization, and health probes.
The webhook's certificate is generated and rotated by cert-controller in the
Secret --cert-secret of --namespace, and its CA injected into the webhook
configuration --webhook-config-name.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := policy.ParseNoMatchPolicy(noMatch)
			if err != nil {
				return &exitError{code: exitBadInput, err: fmt.Errorf("--no-match-policy: %w", err)}
			}
			opts.NoMatchPolicy = p
			if opts.ReportAPI, err = report.ParseAPI(reportAPI); err != nil {
				return &exitError{code: exitBadInput, err: fmt.Errorf("--report-api: %w", err)}
			}
			if opts.LeaderElection {
				for flag, d := range map[string]time.Duration{
					"--leader-elect-lease-duration": opts.LeaseDuration,
					"--leader-elect-renew-deadline": opts.RenewDeadline,
					"--leader-elect-retry-period":   opts.RetryPeriod,
				} {
					if d <= 0 {
						return &exitError{code: exitBadInput, err: fmt.Errorf("%s must be positive, not %s", flag, d)}
					}
				}
				if err := opts.ValidateLeaderElection(); err != nil {
					return &exitError{code: exitBadInput, err: err}
				}
			}
			for flag, d := range map[string]time.Duration{
				"--verification-pass-ttl":    opts.Verification.PassTTL,
				"--verification-failure-ttl": opts.Verification.FailTTL,
				"--clock-recheck":            verify.ClockRecheck,
			} {
				if d <= 0 {
					return &exitError{code: exitBadInput, err: fmt.Errorf("%s must be positive, not %s", flag, d)}
				}
			}
			for flag, q := range map[string]float64{
				"--registry-qps":              opts.Verification.RegistryQPS,
				"--registry-qps-per-registry": opts.Verification.RegistryQPSPerRegistry,
				"--attestation-cache-mib":     float64(attestationCacheMiB),
			} {
				if q <= 0 {
					return &exitError{code: exitBadInput, err: fmt.Errorf("%s must be positive, not %g", flag, q)}
				}
			}
			if t := verify.APILatencyTolerance; t != 0 && !(t >= 1 && t <= 100) {
				return &exitError{code: exitBadInput, err: fmt.Errorf("--api-latency-tolerance must be 0 (off) or from 1 to 100, not %g", t)}
			}
			opts.Verification.AttestationCacheBytes = int64(attestationCacheMiB) << 20
			opts.CertDNSName = fmt.Sprintf("%s.%s.svc", serviceName, opts.Namespace)
			ctrl.SetLogger(manager.QuietCertRotation(zap.New(zap.UseFlagOptions(&zapOpts))))
			if err := applyMemoryLimit(memoryPercent); err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			if err := applyGCPercent(gcPercent); err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			if nsLabel {
				if err := metrics.UseNamespaceLabel(); err != nil {
					return err
				}
			}
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			m, err := manager.New(cfg, opts)
			if err != nil {
				return err
			}
			ctx := ctrl.SetupSignalHandler()
			if err := controllers.Setup(m, m.VerifyDeps(), verify); err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			return m.Start(ctx)
		},
	}
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = manager.DefaultNamespace
	}
	f := cmd.Flags()
	f.StringVar(&opts.Namespace, "namespace", ns, "Vigil's own namespace (its Lease, certificate Secret and config-policy-controller ConfigMap); defaults to $POD_NAMESPACE")
	f.StringVar(&opts.MetricsBindAddress, "metrics-bind-address", ":8443", "address of the metrics endpoint; 0 disables it")
	f.BoolVar(&opts.SecureMetrics, "metrics-secure", true, "serve metrics over HTTPS with Kubernetes authentication and authorization")
	f.BoolVar(&opts.EnableHTTP2, "enable-http2", false, "let the webhook and metrics servers speak HTTP/2; off, they speak HTTP/1.1 only, as kube-apiserver and Prometheus do (HTTP/2's stream handling has been the way into denial-of-service attacks)")
	f.StringVar(&opts.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	f.StringVar(&opts.PprofBindAddress, "pprof-bind-address", "0", "address of Go's profiling endpoints (/debug/pprof/), for diagnosis; 0 disables them")
	f.BoolVar(&opts.LeaderElection, "leader-elect", true, "elect a leader so that only one replica writes reports")
	f.StringVar(&opts.LeaderElectionID, "leader-election-id", manager.DefaultLeaderElectionID, "name of the leader-election Lease")
	f.DurationVar(&opts.LeaseDuration, "leader-elect-lease-duration", manager.DefaultLeaseDuration, "how long a standby replica waits after the leader's last renewal before it takes the Lease over: about how long reports go unwritten when the leader dies")
	f.DurationVar(&opts.RenewDeadline, "leader-elect-renew-deadline", manager.DefaultRenewDeadline, "how long the leader keeps failing to renew the Lease (say, kube-apiserver unreachable) before it gives up leadership and exits; shorter than --leader-elect-lease-duration")
	f.DurationVar(&opts.RetryPeriod, "leader-elect-retry-period", manager.DefaultRetryPeriod, "how often replicas try to acquire or renew the Lease; the renew deadline must exceed 1.2 times it")
	f.IntVar(&opts.WebhookPort, "webhook-port", 9443, "port of the webhook server; -1 disables the webhook (for example beside policy-controller)")
	f.StringVar(&opts.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory the webhook certificate is written to")
	f.StringVar(&opts.CertSecretName, "cert-secret", manager.DefaultCertSecretName, "Secret holding the webhook CA and certificate")
	f.StringVar(&serviceName, "webhook-service", manager.DefaultServiceName, "Service in front of the webhook; the certificate is valid for its DNS name")
	f.StringVar(&opts.WebhookConfigName, "webhook-config-name", manager.DefaultWebhookConfigName, "ValidatingWebhookConfiguration whose caBundle is kept current")
	f.DurationVar(&opts.PolicyTimeout, "policy-timeout", policy.DefaultPolicyTimeout, "bound on evaluating one policy's CUE or Rego for one object; past it the result is error, a denial in enforce mode")
	f.StringVar(&noMatch, "no-match-policy", string(policy.NoMatchDeny), "deny, warn or allow images no policy covers, unless the config-policy-controller ConfigMap says otherwise")
	f.StringVar(&reportAPI, "report-api", string(report.WGPolicy), fmt.Sprintf("API of the reports written, one per pod: %s (PolicyReport) or %s (Report, whose CRDs config/overlays/openreports installs)", report.WGPolicy, report.OpenReports))
	f.StringVar(&verify.NamespaceSelector, "namespace-selector", verify.NamespaceSelector, "label selector of the namespaces whose running pods are verified; empty: every namespace but kube-system and Vigil's own")
	f.IntVar(&memoryPercent, "memory-limit-percent", manager.DefaultMemoryLimitPercent, "Go's soft memory limit (GOMEMLIMIT), as a percentage of the container's memory limit in $"+manager.MemoryLimitEnv+" (bytes, from the downward API); the rest is for the policy compile child and what Go does not account; 0 leaves Go's limit alone, and so does $GOMEMLIMIT when set")
	f.IntVar(&gcPercent, "gc-percent", manager.DefaultGCPercent, "how far Go's heap may grow past what is live before it is collected (GOGC), in percent: lower costs CPU and saves memory; 0 leaves Go's own 100, and so does $GOGC when set")
	f.BoolVar(&nsLabel, "metrics-namespace-label", false, "add a namespace label to vigil_policy_results and vigil_drift_total (one series per namespace and policy)")
	f.Float32Var(&opts.KubeAPIQPS, "kube-api-qps", manager.DefaultKubeAPIQPS, "requests per second Vigil may send the API server, sustained; negative: no client-side bound")
	f.IntVar(&opts.KubeAPIBurst, "kube-api-burst", manager.DefaultKubeAPIBurst, "requests Vigil may send the API server at once before --kube-api-qps applies")
	f.IntVar(&verify.Workers, "workers", verify.Workers, "pods judged at once by the verify path")
	f.Float64Var(&verify.APILatencyTolerance, "api-latency-tolerance", verify.APILatencyTolerance, "pace the verify path's requests to the API server: fewer in flight (down to 1, up to --workers) whenever the API server answers slower than this many times its fastest recent answers, so other clients' requests do not queue behind Vigil's; 0: no pacing, --workers alone bound them")
	f.Float64Var(&verify.EventsPerSecond, "events-per-second", verify.EventsPerSecond, "sustained rate of PolicyViolation and PolicyCompliant events; bursts beyond it are dropped and counted")
	f.DurationVar(&verify.ResyncPeriod, "resync-period", verify.ResyncPeriod, "how often every pod is judged again although nothing changed; 0 turns it off")
	f.DurationVar(&verify.ClockRecheck, "clock-recheck", verify.ClockRecheck, "longest wait before a pod under a policy that reads the clock (time.now_ns) is judged again, so its result turns within it of the moment it should")
	f.IntVar(&verify.EventBurst, "event-burst", verify.EventBurst, "events emitted at once before --events-per-second applies")
	f.DurationVar(&opts.Verification.PassTTL, "verification-pass-ttl", manager.DefaultVerificationPassTTL, "how long a verified signature stands; running images are verified again in its last tenth, before it expires")
	f.DurationVar(&opts.Verification.FailTTL, "verification-failure-ttl", manager.DefaultVerificationFailTTL, "how long a verified failure (no signature, wrong key or identity) stands before the image is verified again; errors are retried sooner, with back-off")
	f.Float64Var(&opts.Verification.RegistryQPS, "registry-qps", manager.DefaultRegistryQPS, "requests per second to all registries together, for signatures and tag resolution; admission goes before the verify path")
	f.Float64Var(&opts.Verification.RegistryQPSPerRegistry, "registry-qps-per-registry", manager.DefaultRegistryQPSPerRegistry, "requests per second to any one registry")
	f.IntVar(&attestationCacheMiB, "attestation-cache-mib", manager.DefaultAttestationCacheMiB, "MiB of verified attestation statements (SBOMs, scans) kept in memory, shared by all pods of a digest; past it the least recently used are dropped and verified again when next needed")
	f.BoolVar(&opts.Verification.PinDigests, "pin-digests", true, "pin the images of pods that a policy covers to the digests their tags name, in a mutating webhook, as policy-controller does; a tag that cannot be resolved is denied")
	logFlags := flag.NewFlagSet("log", flag.ContinueOnError)
	zapOpts.BindFlags(logFlags)
	f.AddGoFlagSet(logFlags)
	return cmd
}

// applyGCPercent sets GOGC to percent, unless $GOGC says otherwise or
// percent is 0.
func applyGCPercent(percent int) error {
	if percent < 0 {
		return fmt.Errorf("--gc-percent must be 0 or more, not %d", percent)
	}
	log := ctrl.Log.WithName("setup")
	switch {
	case os.Getenv("GOGC") != "":
		log.Info("Go's collector is set by GOGC", "GOGC", os.Getenv("GOGC"))
	case percent > 0:
		debug.SetGCPercent(percent)
		log.Info("Go's collector set", "gcPercent", percent)
	}
	return nil
}

// applyMemoryLimit sets Go's soft memory limit to percent of the container's
// memory limit, unless GOMEMLIMIT says otherwise or the limit is unknown.
func applyMemoryLimit(percent int) error {
	limit, err := manager.GoMemoryLimit(os.Getenv(manager.MemoryLimitEnv), percent)
	if err != nil {
		return err
	}
	log := ctrl.Log.WithName("setup")
	switch {
	case os.Getenv("GOMEMLIMIT") != "":
		log.Info("Go's memory limit is set by GOMEMLIMIT", "limitBytes", debug.SetMemoryLimit(-1))
	case limit > 0:
		debug.SetMemoryLimit(limit)
		log.Info("Go's memory limit set from the container's", "limitBytes", limit, "percent", percent, manager.MemoryLimitEnv, os.Getenv(manager.MemoryLimitEnv))
	}
	return nil
}
