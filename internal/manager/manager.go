// Package manager assembles Vigil's controller-runtime manager: webhook server
// with certificates from cert-controller, metrics, health probes, leader
// election. `vigil controller` runs it in a cluster, `vigil dev` in-process.
package manager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/vigil-dev/vigil/apis"
	"github.com/vigil-dev/vigil/controllers"
	"github.com/vigil-dev/vigil/internal/admission"
	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
	"github.com/vigil-dev/vigil/internal/report"
	"github.com/vigil-dev/vigil/internal/settings"
	"github.com/vigil-dev/vigil/internal/verify"
)

// Defaults shared by the flags of `vigil controller` and `vigil dev`.
const (
	DefaultNamespace         = "vigil-system"
	DefaultWebhookName       = "policy.sigstore.dev"
	DefaultWebhookConfigName = "vigil-validating-webhook-configuration"
	// DefaultMutatingWebhookConfigName is the digest-pinning webhook's
	// configuration (--pin-digests).
	DefaultMutatingWebhookConfigName = "vigil-mutating-webhook-configuration"
	DefaultCertSecretName            = "vigil-webhook-server-cert" // #nosec G101 -- the name of a Secret, not a credential
	DefaultServiceName               = "vigil-webhook-service"
	DefaultLeaderElectionID          = "vigil.policy.sigstore.dev"
)

// Leader-election timing defaults (controller-runtime's own).
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// What the manager itself needs, besides the reconcilers' own rules: its
// settings, certificate and Lease in its namespace only, and the caBundle of
// its own webhook configuration.
// +kubebuilder:rbac:groups="",namespace=vigil-system,resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=vigil-system,resources=secrets,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=vigil-system,resources=leases,verbs=get;list;watch;create;update;patch
// cert-controller watches every ValidatingWebhookConfiguration (list and watch
// take no resourceNames) but writes Vigil's own only (DefaultWebhookConfigName):
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=update;patch,resourceNames=vigil-validating-webhook-configuration
// The same for the digest-pinning webhook's configuration (--pin-digests):
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=update;patch,resourceNames=vigil-mutating-webhook-configuration
// Registry credentials of the pods judged, read as a kubelet reads them
// (authn/kubernetes): their service accounts' and their imagePullSecrets.
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// The report API's rules are in ClusterRole vigil-manager-reports, generated
// from internal/manager/reportrbac for the API in use.
// The metrics endpoint authenticates and authorizes each scrape:
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Options configure the manager.
type Options struct {
	// Namespace is Vigil's own namespace: its Lease, certificate Secret and
	// config-policy-controller ConfigMap live there.
	Namespace string

	// MetricsBindAddress is where /metrics is served; "" or "0" is off.
	MetricsBindAddress string
	// SecureMetrics serves metrics over HTTPS behind Kubernetes authentication
	// and authorization (in cluster); plain HTTP otherwise (`vigil dev`).
	SecureMetrics bool
	// EnableHTTP2 lets the webhook and metrics servers speak HTTP/2; they
	// speak HTTP/1.1 only otherwise (servers.go says why).
	EnableHTTP2            bool
	HealthProbeBindAddress string
	// PprofBindAddress serves Go's profiles (net/http/pprof); "" or "0" is off.
	PprofBindAddress string

	LeaderElection   bool
	LeaderElectionID string
	// LeaseDuration is how long a replica waits, after the leader's last
	// renewal, before it takes the Lease over; RenewDeadline how long the
	// leader keeps trying to renew before it gives up leadership (and the
	// process exits); RetryPeriod how often every replica tries. Zero means
	// controller-runtime's defaults, DefaultLeaseDuration, DefaultRenewDeadline
	// and DefaultRetryPeriod.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration

	// WebhookHost and WebhookPort are where the webhook server listens;
	// WebhookPort < 0 disables the webhook.
	WebhookHost string
	WebhookPort int
	// CertDir receives the serving certificate that cert-controller writes.
	CertDir string
	// CertSecretName is the Secret in Namespace holding the CA and certificate.
	CertSecretName string
	// CertDNSName is the name the certificate is valid for: the webhook
	// Service's DNS name in cluster, localhost for `vigil dev`.
	CertDNSName string
	// WebhookConfigName is the ValidatingWebhookConfiguration whose caBundle
	// cert-controller keeps current.
	WebhookConfigName string
	// MutatingWebhookConfigName is the digest-pinning webhook's
	// MutatingWebhookConfiguration, kept current the same way when
	// Verification.PinDigests; empty is DefaultMutatingWebhookConfigName.
	MutatingWebhookConfigName string

	// PolicyTimeout bounds the evaluation of each policy for one object, in
	// the webhook and the reconcilers alike; past it the result is error.
	PolicyTimeout time.Duration

	// CopyCertFromSecret writes the certificate Secret into CertDir, for a
	// process that has no kubelet to mount it (`vigil dev`).
	CopyCertFromSecret bool

	// NoMatchPolicy applies while the config-policy-controller ConfigMap
	// does not set no-match-policy.
	NoMatchPolicy policy.NoMatchPolicy

	// ReportAPI is the API of the reports Vigil writes, caches and
	// deletes; empty means report.WGPolicy.
	ReportAPI report.API

	// KubeAPIQPS and KubeAPIBurst bound the requests Vigil sends the API
	// server (client-go's token bucket). A negative QPS turns the bound off
	// and leaves fairness to the API server's priority and fairness.
	KubeAPIQPS   float32
	KubeAPIBurst int

	// Verification configures the one signature verifier of the process.
	Verification VerificationOptions
}

// VerificationOptions configure the signature verifier the webhook and the
// reconcilers share; zero values take internal/verify's defaults.
type VerificationOptions struct {
	// PassTTL is how long a verified pass stands before it is verified
	// again; FailTTL the same for a verified failure.
	PassTTL time.Duration
	FailTTL time.Duration
	// RegistryQPS bounds the requests to all registries together,
	// RegistryQPSPerRegistry those to any one registry.
	RegistryQPS            float64
	RegistryQPSPerRegistry float64
	// PinDigests turns on the mutating webhook that pins pods' images to
	// the digests their tags name.
	PinDigests bool
	// AttestationCacheBytes bounds the verified attestation statements the
	// verifier keeps (SBOMs can be megabytes each); 0 is its default.
	AttestationCacheBytes int64
}

// Defaults of VerificationOptions, for the flags.
const (
	DefaultVerificationPassTTL    = time.Hour
	DefaultVerificationFailTTL    = 10 * time.Minute
	DefaultRegistryQPS            = 50
	DefaultRegistryQPSPerRegistry = 10
	// DefaultAttestationCacheMiB is verify's default bound on cached
	// attestation statements, in MiB.
	DefaultAttestationCacheMiB = 256
)

// Defaults of the client rate limit: none. A policy change rewrites one
// report per pod, and at a client-side 200 requests a second (two per pod)
// 10,000 pods would take 100 s on any API server, however idle. The API
// server's priority and fairness shares its capacity instead
// (config/manager/flowcontrol.yaml gives Vigil a priority level of its own),
// and the verify path's workers bound how many requests are in flight. A
// positive --kube-api-qps sets a client-side bound again.
const (
	DefaultKubeAPIQPS   = -1
	DefaultKubeAPIBurst = 0
)

// Manager is a controller-runtime manager plus the webhook server that starts
// once cert-controller has written its certificate.
type Manager struct {
	manager.Manager
	Webhook webhook.Server
	// CertsReady is closed when the serving certificate is on disk and the
	// caBundle is injected.
	CertsReady chan struct{}
	// Policies are the compiled ClusterImagePolicies, kept current on every replica.
	Policies *policystore.Store
	// Settings follow the config-policy-controller ConfigMap.
	Settings *settings.Settings
	// PolicyTimeout is Options.PolicyTimeout, for the reconcilers.
	PolicyTimeout time.Duration
	// ReportAPI is the API of the reports the reconcilers write.
	ReportAPI report.API
	// Namespace is Vigil's own.
	Namespace string
	// Verifier is the process's one signature verifier, shared by the
	// webhook and the reconcilers so that they never disagree.
	Verifier *verify.Verifier
	// Keychains read the registry credentials of the objects judged.
	Keychains *verify.Keychains

	// validating compiles ClusterImagePolicies for the policy webhook: it
	// reads their Secrets and TrustRoots, and evaluates nothing.
	validating policy.Compiler
}

// publicGoodRetry is how long a failure to load the public-good Sigstore
// root stands before the next keyless evaluation tries again.
const publicGoodRetry = time.Minute

// VerifyDeps are what the verify path (controllers.Setup) shares with the
// webhook.
func (m *Manager) VerifyDeps() controllers.Deps {
	return controllers.Deps{Namespace: m.Namespace, Policies: m.Policies, Settings: m.Settings, Reports: m.ReportAPI, PolicyTimeout: m.PolicyTimeout,
		Verifier: m.Verifier, Keychains: m.Keychains}
}

// New builds the manager. Register webhook handlers on m.Webhook and
// reconcilers on m before calling m.Start.
func New(cfg *rest.Config, opts Options) (*Manager, error) {
	api, err := report.ParseAPI(string(opts.ReportAPI))
	if err != nil {
		return nil, fmt.Errorf("report API: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	if opts.KubeAPIQPS != 0 {
		cfg.QPS, cfg.Burst = opts.KubeAPIQPS, opts.KubeAPIBurst
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: apis.NewScheme(),
		// No metrics server here: ours (servers.go) bounds slow clients.
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        opts.HealthProbeBindAddress,
		PprofBindAddress:              opts.PprofBindAddress,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              opts.LeaderElectionID,
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 durationOrNil(opts.LeaseDuration),
		RenewDeadline:                 durationOrNil(opts.RenewDeadline),
		RetryPeriod:                   durationOrNil(opts.RetryPeriod),
		// No WebhookServer here: ours starts only once its certificate exists.
		WebhookServer: nil,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// The only ConfigMap Vigil reads is its own settings, and the only
			// Secret its webhook certificate: never cluster-wide.
			&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{opts.Namespace: {}}},
			&corev1.Secret{}:    {Namespaces: map[string]cache.Config{opts.Namespace: {}}},
		},
			// managedFields is never read and is a large part of every object.
			// Pods and reports are not cached: the verify path keeps what it
			// needs of them (controllers.podIndex, controllers.reportIndex).
			DefaultTransform: cache.TransformStripManagedFields(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	// key.secretRef and keyless.trustRootRef are read through the cache
	// (Secrets of Vigil's namespace, TrustRoots), and the public-good root
	// is loaded at the first keyless authority without a trustRootRef.
	refs := &policystore.Resolvers{Reader: mgr.GetCache(), Namespace: opts.Namespace}
	compiler := policy.Compiler{
		SystemNamespace:     opts.Namespace,
		Secret:              refs.Secret,
		TrustRoot:           refs.TrustRoot,
		PublicGoodTrustRoot: verify.PublicGoodLoader(verify.TrustRootOptions{}, publicGoodRetry, nil),
	}
	evaluating := compiler
	evaluating.Workers = policy.NewWorkerPool(policy.WorkerPoolOptions{})
	m := &Manager{
		Manager:       mgr,
		Verifier:      newVerifier(opts.Verification),
		Keychains:     &verify.Keychains{Client: cs},
		CertsReady:    make(chan struct{}),
		Policies:      policystore.New(evaluating),
		Settings:      settings.New(opts.NoMatchPolicy),
		PolicyTimeout: opts.PolicyTimeout,
		ReportAPI:     api,
		Namespace:     opts.Namespace,
		validating:    compiler,
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := addMetricsServer(mgr, cfg, opts); err != nil {
		return nil, err
	}
	if err := mgr.Add(&policystore.Watcher{Store: m.Policies, Cache: mgr.GetCache(), Namespace: opts.Namespace}); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("policies", func(*http.Request) error {
		select {
		case <-m.Policies.Synced():
			return nil
		default:
			return errors.New("ClusterImagePolicies not loaded yet")
		}
	}); err != nil {
		return nil, err
	}
	// The no-match setting serves the webhook and the verify path alike.
	if err := mgr.Add(&settings.Watcher{
		Settings: m.Settings, Cache: mgr.GetCache(), Namespace: opts.Namespace,
		Log: mgr.GetLogger().WithName("config"),
	}); err != nil {
		return nil, err
	}
	if opts.WebhookPort < 0 {
		close(m.CertsReady)
		return m, nil
	}

	if err := os.MkdirAll(opts.CertDir, 0o700); err != nil {
		return nil, fmt.Errorf("create certificate directory: %w", err)
	}
	m.Webhook = newWebhookServer(opts, mgr.GetLogger().WithName("webhook-server"))
	if err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: opts.Namespace, Name: opts.CertSecretName},
		CertDir:        opts.CertDir,
		CAName:         "vigil-ca",
		CAOrganization: "vigil",
		DNSName:        opts.CertDNSName,
		IsReady:        m.CertsReady,
		Webhooks:       webhookConfigs(opts),
		// Every replica serves the webhook, so every replica needs the certificate.
		RequireLeaderElection: false,
	}); err != nil {
		return nil, fmt.Errorf("add certificate rotator: %w", err)
	}
	m.Webhook.Register(admission.WorkloadPath, admission.Serve(&admission.WorkloadValidator{
		Policies: m.Policies, NoMatch: m.Settings, PolicyTimeout: opts.PolicyTimeout,
		Verifier: m.Verifier, Keychains: m.Keychains,
	}))
	if opts.Verification.PinDigests {
		m.Webhook.Register(admission.PinPath, admission.Serve(
			&admission.DigestPinner{Policies: m.Policies, Resolver: m.Verifier, Keychains: m.Keychains}))
	}
	m.Webhook.Register(admission.PolicyPath, admission.Serve(&admission.PolicyValidator{Compiler: m.validating}))
	if opts.CopyCertFromSecret {
		if err := mgr.Add(&secretFiles{
			reader: mgr.GetAPIReader(),
			secret: types.NamespacedName{Namespace: opts.Namespace, Name: opts.CertSecretName},
			dir:    opts.CertDir,
		}); err != nil {
			return nil, err
		}
	}
	started := &atomic.Bool{}
	if err := mgr.Add(&delayedWebhook{server: m.Webhook, ready: m.CertsReady, started: started}); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook", func(req *http.Request) error {
		if !started.Load() {
			return errors.New("webhook server waits for its certificate")
		}
		return m.Webhook.StartedChecker()(req)
	}); err != nil {
		return nil, err
	}
	return m, nil
}

// webhookConfigs are the webhook configurations whose caBundle
// cert-controller keeps current.
func webhookConfigs(opts Options) []rotator.WebhookInfo {
	configs := []rotator.WebhookInfo{{Name: opts.WebhookConfigName, Type: rotator.Validating}}
	if opts.Verification.PinDigests {
		name := opts.MutatingWebhookConfigName
		if name == "" {
			name = DefaultMutatingWebhookConfigName
		}
		configs = append(configs, rotator.WebhookInfo{Name: name, Type: rotator.Mutating})
	}
	return configs
}

// newVerifier is the process's one signature verifier, reporting to
// Vigil's metrics.
func newVerifier(o VerificationOptions) *verify.Verifier {
	return verify.New(verify.Options{
		PassTTL: o.PassTTL, FailTTL: o.FailTTL,
		GlobalQPS: o.RegistryQPS, RegistryQPS: o.RegistryQPSPerRegistry,
		Observer:              metrics.NewVerificationObserver(),
		AttestationCacheBytes: o.AttestationCacheBytes,
	})
}

// addMetricsServer serves /metrics at opts.MetricsBindAddress, behind
// Kubernetes authentication and authorization when opts.SecureMetrics.
func addMetricsServer(mgr manager.Manager, cfg *rest.Config, opts Options) error {
	if opts.MetricsBindAddress == "" || opts.MetricsBindAddress == "0" {
		return nil
	}
	s := &metricsServer{addr: opts.MetricsBindAddress, secure: opts.SecureMetrics, enableHTTP2: opts.EnableHTTP2,
		log: mgr.GetLogger().WithName("metrics-server")}
	if opts.SecureMetrics {
		filter, err := filters.WithAuthenticationAndAuthorization(cfg, mgr.GetHTTPClient())
		if err != nil {
			return fmt.Errorf("metrics authentication and authorization: %w", err)
		}
		s.filter = filter
	}
	return mgr.Add(s)
}

// ValidateLeaderElection checks the leader-election timing as client-go's
// elector will, so that a bad combination is refused at once, with the
// values, rather than when the manager starts. Zero values stand for the
// defaults.
func (o Options) ValidateLeaderElection() error {
	lease, renew, retry := o.LeaseDuration, o.RenewDeadline, o.RetryPeriod
	if lease == 0 {
		lease = DefaultLeaseDuration
	}
	if renew == 0 {
		renew = DefaultRenewDeadline
	}
	if retry == 0 {
		retry = DefaultRetryPeriod
	}
	switch {
	case lease < 0 || renew < 0 || retry < 0:
		return fmt.Errorf("leader-election durations must be positive (lease duration %s, renew deadline %s, retry period %s)", lease, renew, retry)
	case lease <= renew:
		return fmt.Errorf("the lease duration (%s) must be longer than the renew deadline (%s)", lease, renew)
	case renew <= time.Duration(1.2*float64(retry)):
		return fmt.Errorf("the renew deadline (%s) must be longer than 1.2 times the retry period (%s)", renew, retry)
	}
	return nil
}

func durationOrNil(d time.Duration) *time.Duration {
	if d == 0 {
		return nil
	}
	return &d
}

// delayedWebhook starts the webhook server once the certificate is ready. It
// runs on every replica, leader or not.
type delayedWebhook struct {
	server  webhook.Server
	ready   <-chan struct{}
	started *atomic.Bool
}

func (d *delayedWebhook) NeedLeaderElection() bool { return false }

func (d *delayedWebhook) Start(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-d.ready:
	}
	d.started.Store(true)
	return d.server.Start(ctx)
}
