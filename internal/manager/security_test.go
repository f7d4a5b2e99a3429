// Security tests of the manager as `vigil controller` runs it (issue 9),
// against a real kube-apiserver and etcd (envtest, binaries from bin/): the
// metrics endpoint refuses unauthenticated and unauthorized scrapes, the
// webhook and metrics servers speak TLS 1.2 or newer only, and the manager's
// cache holds no Secret or ConfigMap outside Vigil's namespace.
package manager_test

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/internal/admission"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/settings"
	"github.com/vigil-dev/vigil/internal/testenv"
)

const ns = manager.DefaultNamespace

var (
	cfg         *rest.Config
	k8s         client.Client
	mgr         *manager.Manager
	metricsAddr string
	webhookAddr string
	repoRoot    string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // unit tests only: no API server
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var logs io.Writer = io.Discard
	if os.Getenv("VIGIL_TEST_LOG") != "" {
		logs = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
	err := setup()
	defer stopEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// setup starts kube-apiserver and etcd, then a manager as `vigil controller`
// starts it (secure metrics, the webhook with a certificate from
// cert-controller), with what config/ would install beforehand: the
// namespace, the empty certificate Secret and the webhook configuration.
func setup() (err error) {
	repoRoot, err = testenv.RepoRoot()
	if err != nil {
		return err
	}
	env, err := testenv.New()
	if err != nil {
		return err
	}
	if cfg, err = env.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	// run stops the manager and the environment when the tests end.
	stopEnv = func() { _ = env.Stop() }
	if k8s, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return err
	}
	ctx := context.Background()
	webhookPort, err := freePort()
	if err != nil {
		return err
	}
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	metricsAddr = "127.0.0.1:" + strconv.Itoa(metricsPort)
	webhookAddr = "127.0.0.1:" + strconv.Itoa(webhookPort)
	webhooks := admission.ConfigurationOptions{
		Name: manager.DefaultWebhookConfigName, MutatingName: manager.DefaultMutatingWebhookConfigName,
		WorkloadWebhookName: manager.DefaultWebhookName, Namespace: ns, URL: "https://localhost:" + strconv.Itoa(webhookPort),
	}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: manager.DefaultCertSecretName}},
		admission.Configuration(webhooks),
		admission.MutatingConfiguration(webhooks),
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err)
		}
	}
	certDir, err := os.MkdirTemp("", "vigil-security-test-")
	if err != nil {
		return err
	}
	mgr, err = manager.New(cfg, manager.Options{
		Namespace:              ns,
		MetricsBindAddress:     metricsAddr,
		SecureMetrics:          true,
		HealthProbeBindAddress: "0",
		WebhookHost:            "127.0.0.1",
		WebhookPort:            webhookPort,
		CertDir:                certDir,
		CopyCertFromSecret:     true,
		CertSecretName:         manager.DefaultCertSecretName,
		CertDNSName:            "localhost",
		WebhookConfigName:      manager.DefaultWebhookConfigName,
		NoMatchPolicy:          policy.NoMatchDeny,
		Verification:           manager.VerificationOptions{PinDigests: true},
	})
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	prevStop := stopEnv
	stopEnv = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		_ = os.RemoveAll(certDir)
		prevStop()
	}
	if err := testenv.WaitWebhook(ctx, mgr.CertsReady, mgr.Webhook.StartedChecker(), 2*time.Minute); err != nil {
		return err
	}
	return waitListening(metricsAddr, time.Minute)
}

// stopEnv stops what setup started.
var stopEnv = func() {}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape GETs /metrics with token as a bearer token (none when empty).
func scrape(t *testing.T, token string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The metrics server's certificate is self-signed in this test;
		// what is tested is the authentication and authorization behind it.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	req, err := http.NewRequest(http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// serviceAccountToken creates a ServiceAccount in namespace and returns a
// token for it from the TokenRequest API.
func serviceAccountToken(t *testing.T, namespace, name string) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	create(t, sa)
	expiry := int64(600)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}
	if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", namespace, name, err)
	}
	if tr.Status.Token == "" {
		t.Fatal("TokenRequest returned no token")
	}
	return tr.Status.Token
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
}

func TestMetricsRefuseUnauthenticatedScrapes(t *testing.T) {
	testenv.Integration(t)
	// The ClusterRole that config/rbac ships for Prometheus.
	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "metrics_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var reader rbacv1.ClusterRole
	if err := yaml.Unmarshal(data, &reader); err != nil {
		t.Fatal(err)
	}
	create(t, &reader)
	const scrapers = "monitoring"
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scrapers}})
	allowed := serviceAccountToken(t, scrapers, "prometheus")
	stranger := serviceAccountToken(t, scrapers, "stranger")
	create(t, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-vigil-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: scrapers, Name: "prometheus"}},
	})

	if code, body := scrape(t, ""); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("unauthenticated scrape: HTTP %d, want 401 or 403: %.200s", code, body)
	}
	// controller-runtime's filter (pkg/metrics/filters) answers 500
	// "Authentication failed" when the TokenReview of a forged token errs:
	// refused all the same.
	if code, body := scrape(t, "not-a-token"); code == http.StatusOK || strings.Contains(body, "controller_runtime_") {
		t.Errorf("scrape with a forged token: HTTP %d, want a refusal: %.200s", code, body)
	}
	if code, body := scrape(t, stranger); code != http.StatusForbidden {
		t.Errorf("scrape by a ServiceAccount without %s: HTTP %d, want 403: %.200s", reader.Name, code, body)
	}
	// RBAC changes reach the authorizer at once, but the filter caches
	// decisions briefly: retry the allowed scrape for a while.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := scrape(t, allowed)
		if code == http.StatusOK && strings.Contains(body, "controller_runtime_") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape by a ServiceAccount bound to %s: HTTP %d, want 200 with metrics: %.200s", reader.Name, code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestServersRefuseOldTLS(t *testing.T) {
	testenv.Integration(t)
	for name, addr := range map[string]string{"webhook": webhookAddr, "metrics": metricsAddr} {
		for _, c := range []struct {
			name     string
			min, max uint16
			ok       bool
		}{
			{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, false},
			{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, false},
			{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
			{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
		} {
			t.Run(name+" "+c.name, func(t *testing.T) {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{
					MinVersion: c.min, MaxVersion: c.max, ServerName: "localhost",
					// The handshake's version is tested, not the certificate.
					InsecureSkipVerify: true,
				})
				if err == nil {
					got := conn.ConnectionState().Version
					_ = conn.Close()
					if !c.ok {
						t.Fatalf("handshake succeeded with %s", tls.VersionName(got))
					}
					return
				}
				if c.ok {
					t.Fatalf("handshake failed: %v", err)
				}
				if !strings.Contains(err.Error(), "protocol version") {
					t.Errorf("refused, but not for the protocol version: %v", err)
				}
			})
		}
	}
}

func TestCacheHoldsNoSecretOutsideVigilsNamespace(t *testing.T) {
	testenv.Integration(t)
	ctx := context.Background()
	const other = "not-vigil"
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}})
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "db-password"},
		StringData: map[string]string{"password": "hunter2"}})
	create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: settings.ConfigMapName},
		Data: map[string]string{settings.NoMatchPolicyKey: "allow"}})

	c := mgr.GetClient()
	// Vigil's own certificate Secret is readable...
	var own corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: manager.DefaultCertSecretName}, &own); err != nil {
		t.Fatalf("the manager cannot read its own certificate Secret: %v", err)
	}
	// ...another namespace's is not, nor is its ConfigMap.
	var secret corev1.Secret
	err := c.Get(ctx, types.NamespacedName{Namespace: other, Name: "db-password"}, &secret)
	if err == nil {
		t.Fatalf("the manager's client read Secret %s/db-password", other)
	}
	if !strings.Contains(err.Error(), "namespace") {
		t.Errorf("reading a Secret of %s: %v, want an error about the namespace not being cached", other, err)
	}
	var cm corev1.ConfigMap
	if err := c.Get(ctx, types.NamespacedName{Namespace: other, Name: settings.ConfigMapName}, &cm); err == nil {
		t.Errorf("the manager's client read ConfigMap %s/%s", other, settings.ConfigMapName)
	}
	// A cluster-wide list returns Vigil's namespace only.
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets); err != nil {
		t.Fatalf("list Secrets: %v", err)
	}
	for _, s := range secrets.Items {
		if s.Namespace != ns {
			t.Errorf("listing Secrets returned %s/%s", s.Namespace, s.Name)
		}
	}
	// A ConfigMap of the same name elsewhere does not change the setting.
	time.Sleep(time.Second)
	if got := mgr.Settings.NoMatchPolicy(); got != policy.NoMatchDeny {
		t.Errorf("no-match-policy = %s after a ConfigMap in %s said allow, want deny", got, other)
	}
}

// TestRBACKeepsSecretsInVigilsNamespace applies config/rbac and asks
// kube-apiserver what the manager's ServiceAccount may do with Secrets, webhook
// configurations and reports.
func TestRBACKeepsSecretsInVigilsNamespace(t *testing.T) {
	testenv.Integration(t)
	ctx := context.Background()
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vigil-controller"}})
	for _, f := range []string{"role.yaml", "reports/role.yaml", "role_binding.yaml"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil || tm.Kind == "" {
				continue
			}
			var obj client.Object
			switch tm.Kind {
			case "ClusterRole":
				obj = &rbacv1.ClusterRole{}
			case "Role":
				obj = &rbacv1.Role{}
			case "ClusterRoleBinding":
				obj = &rbacv1.ClusterRoleBinding{}
			case "RoleBinding":
				obj = &rbacv1.RoleBinding{}
			default:
				t.Fatalf("unexpected %s in %s", tm.Kind, f)
			}
			if err := yaml.Unmarshal([]byte(doc), obj); err != nil {
				t.Fatal(err)
			}
			if obj.GetNamespace() == "" && tm.Kind != "ClusterRole" && tm.Kind != "ClusterRoleBinding" {
				obj.SetNamespace(ns)
			}
			create(t, obj)
		}
	}
	user := "system:serviceaccount:" + ns + ":vigil-controller"
	reviewAttributes := func(attrs authorizationv1.ResourceAttributes) *authorizationv1.SubjectAccessReview {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &attrs,
		}}
		if err := k8s.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		return sar
	}
	review := func(namespace, resource, verb string) *authorizationv1.SubjectAccessReview {
		return reviewAttributes(authorizationv1.ResourceAttributes{Namespace: namespace, Resource: resource, Verb: verb})
	}
	// kube-apiserver's RBAC authorizer follows Roles and bindings through an
	// informer: wait until it has seen the ones just created.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if review(ns, "secrets", "get").Status.Allowed && review("default", "pods", "list").Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the RBAC authorizer never granted what config/rbac grants")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range []struct {
		namespace, resource, verb string
		allowed                   bool
	}{
		{ns, "secrets", "get", true},
		{ns, "secrets", "update", true},
		{ns, "secrets", "create", false},
		{ns, "secrets", "delete", false},
		// A pod's pull secrets, by name, for its registry credentials; never
		// a list or a watch.
		{"default", "secrets", "get", true},
		{"default", "secrets", "list", false},
		{"default", "secrets", "watch", false},
		{"default", "serviceaccounts", "get", true},
		{"default", "serviceaccounts", "list", false},
		{"", "secrets", "list", false}, // cluster-wide
		{"default", "configmaps", "get", false},
		{"", "configmaps", "list", false},
		{"default", "pods", "list", true},
		{"default", "pods", "delete", false},
		{"default", "pods", "create", false},
	} {
		sar := review(c.namespace, c.resource, c.verb)
		if sar.Status.Allowed != c.allowed {
			where := c.namespace
			if where == "" {
				where = "all namespaces"
			}
			t.Errorf("%s %s in %s: allowed = %v, want %v (%s)", c.verb, c.resource, where, sar.Status.Allowed, c.allowed, sar.Status.Reason)
		}
	}

	// Issue 14: Vigil writes its own webhook configuration and no other
	// engine's, and the reports of the API in use only (wgpolicyk8s.io here).
	const vwc = "validatingwebhookconfigurations"
	for _, c := range []struct {
		group, resource, name, verb, namespace string
		allowed                                bool
	}{
		{"admissionregistration.k8s.io", vwc, manager.DefaultWebhookConfigName, "update", "", true},
		{"admissionregistration.k8s.io", vwc, manager.DefaultWebhookConfigName, "patch", "", true},
		{"admissionregistration.k8s.io", vwc, "kyverno-resource-validating-webhook-cfg", "update", "", false},
		{"admissionregistration.k8s.io", vwc, "policy.sigstore.dev", "patch", "", false},
		{"admissionregistration.k8s.io", vwc, "", "list", "", true},
		{"admissionregistration.k8s.io", vwc, "", "create", "", false},
		{"admissionregistration.k8s.io", vwc, manager.DefaultWebhookConfigName, "delete", "", false},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "list", "", true},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", manager.DefaultMutatingWebhookConfigName, "patch", "", true},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", "istio-sidecar-injector", "patch", "", false},
		{"wgpolicyk8s.io", "policyreports", "", "create", "default", true},
		{"wgpolicyk8s.io", "policyreports", "", "delete", "default", true},
		{"openreports.io", "reports", "", "create", "default", false},
		{"openreports.io", "reports", "", "list", "", false},
	} {
		sar := reviewAttributes(authorizationv1.ResourceAttributes{
			Group: c.group, Resource: c.resource, Name: c.name, Verb: c.verb, Namespace: c.namespace,
		})
		if sar.Status.Allowed != c.allowed {
			t.Errorf("%s %s.%s %q: allowed = %v, want %v (%s)", c.verb, c.resource, c.group, c.name, sar.Status.Allowed, c.allowed, sar.Status.Reason)
		}
	}
}

// TestServersSpeakHTTP1Only: without --enable-http2 neither server offers
// HTTP/2, whatever the client asks for (issue 14).
func TestServersSpeakHTTP1Only(t *testing.T) {
	testenv.Integration(t)
	for name, addr := range map[string]string{"webhook": webhookAddr, "metrics": metricsAddr} {
		t.Run(name, func(t *testing.T) {
			for _, offer := range [][]string{{"h2"}, {"h2", "http/1.1"}} {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{
					NextProtos: offer, ServerName: "localhost", InsecureSkipVerify: true,
				})
				if err != nil {
					// Go refuses a handshake whose protocols it does not speak.
					if !strings.Contains(err.Error(), "no application protocol") || len(offer) > 1 {
						t.Errorf("a client offering %q: %v", offer, err)
					}
					continue
				}
				if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
					t.Errorf("a client offering %q negotiated %q", offer, p)
				}
				_ = conn.Close()
			}

			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				ForceAttemptHTTP2: true,
				TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			}}
			resp, err := c.Get("https://" + addr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.ProtoMajor != 1 {
				t.Errorf("an HTTP/2 client was answered over %s", resp.Proto)
			}
		})
	}
}

// TestServersCutOffSlowClients: a client that sends its headers, or its
// body, too slowly loses its connection after manager.ReadHeaderTimeout or
// manager.ReadTimeout, rather than holding it (and a goroutine) for ever.
func TestServersCutOffSlowClients(t *testing.T) {
	testenv.Integration(t)
	for _, c := range []struct {
		name, partial string
		// wait is how long the test waits for the server to end the
		// connection: well past the server's bound, and short of
		// controller-runtime's 32 s ReadHeaderTimeout.
		wait time.Duration
	}{
		{"slow headers", "POST " + admission.WorkloadPath + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n",
			manager.ReadHeaderTimeout + 15*time.Second},
		{"slow body", "POST " + admission.WorkloadPath + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"request\":",
			manager.ReadTimeout + 15*time.Second},
	} {
		for name, addr := range map[string]string{"webhook": webhookAddr, "metrics": metricsAddr} {
			t.Run(c.name+" "+name, func(t *testing.T) {
				t.Parallel()
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{
					ServerName: "localhost", InsecureSkipVerify: true,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = conn.Close() }()
				if _, err := io.WriteString(conn, c.partial); err != nil {
					t.Fatal(err)
				}
				wait := c.wait
				if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				got, err := io.ReadAll(conn)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the connection was still open after %s", wait)
				}
				t.Logf("connection closed by the server after %s (%v); it answered %q", time.Since(start).Round(100*time.Millisecond), err, firstLine(got))
			})
		}
	}
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\r\n")
	return line
}
