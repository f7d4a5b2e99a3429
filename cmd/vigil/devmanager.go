package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/vigil-dev/vigil/apis"
	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/controllers"
	"github.com/vigil-dev/vigil/internal/admission"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/policy"
)

// devReadyTimeout bounds how long the in-process manager may take to serve.
const devReadyTimeout = 2 * time.Minute

// runDevManager runs Vigil's manager (webhook server and reconcilers)
// in-process against the dev cluster until ctx ends, and closes ready once it
// serves: the webhook on
// loopback (https://localhost:PORT, with a certificate cert-controller makes
// for localhost), metrics over plain HTTP, no leader election.
func runDevManager(ctx context.Context, cfg *rest.Config, o managerOptions, ready chan<- struct{}) error {
	ctrl.SetLogger(manager.QuietCertRotation(zap.New(zap.WriteTo(os.Stderr))))
	c, err := client.New(cfg, client.Options{Scheme: apis.NewScheme()})
	if err != nil {
		return err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	certDir, err := os.MkdirTemp("", "vigil-dev-certs-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(certDir) }()

	ns := manager.DefaultNamespace
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	// cert-controller fills this Secret; it must exist, as in cluster, where
	// config/webhook ships it empty.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: manager.DefaultCertSecretName}}
	if err := c.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Secret %s/%s: %w", ns, secret.Name, err)
	}
	webhooks := admission.ConfigurationOptions{
		Name: manager.DefaultWebhookConfigName, MutatingName: manager.DefaultMutatingWebhookConfigName,
		WorkloadWebhookName: o.webhookName, Namespace: ns, URL: "https://localhost:" + strconv.Itoa(port),
	}
	if err := c.Create(ctx, admission.Configuration(webhooks)); err != nil {
		return fmt.Errorf("create ValidatingWebhookConfiguration: %w", err)
	}
	if o.pinDigests {
		if err := c.Create(ctx, admission.MutatingConfiguration(webhooks)); err != nil {
			return fmt.Errorf("create MutatingWebhookConfiguration: %w", err)
		}
	}

	m, err := manager.New(cfg, manager.Options{
		Namespace:          ns,
		MetricsBindAddress: o.metricsAddr,
		// `vigil dev` is local: the probes are not needed and the webhook
		// readiness is checked below instead.
		HealthProbeBindAddress: "0",
		WebhookHost:            "127.0.0.1",
		WebhookPort:            port,
		CertDir:                certDir,
		CopyCertFromSecret:     true,
		CertSecretName:         manager.DefaultCertSecretName,
		CertDNSName:            "localhost",
		WebhookConfigName:      manager.DefaultWebhookConfigName,
		NoMatchPolicy:          policy.NoMatchDeny,
		PolicyTimeout:          policy.DefaultPolicyTimeout,
		KubeAPIQPS:             manager.DefaultKubeAPIQPS,
		KubeAPIBurst:           manager.DefaultKubeAPIBurst,
		Verification:           manager.VerificationOptions{PinDigests: o.pinDigests, PassTTL: o.passTTL, FailTTL: o.failTTL},
	})
	if err != nil {
		return err
	}
	verify := controllers.DefaultOptions()
	verify.ClockRecheck = o.clockRecheck
	if err := controllers.Setup(m, m.VerifyDeps(), verify); err != nil {
		return err
	}
	readyCtx, cancel := context.WithTimeout(ctx, devReadyTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- m.Start(ctx)
		cancel() // a manager that stops early ends the wait below at once
	}()
	if err := waitWebhookAnswers(readyCtx, c); err != nil {
		select {
		case merr := <-done:
			return fmt.Errorf("the manager stopped: %v", merr)
		default:
			return err
		}
	}
	close(ready)
	return <-done
}

// waitWebhookAnswers waits until kube-apiserver reaches the webhook with the
// injected CA: a dry-run of a policy that cannot compile is refused by the
// webhook itself, not by the schema or a TLS error.
func waitWebhookAnswers(ctx context.Context, c client.Client) error {
	probe := &v1beta1.ClusterImagePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "vigil-dev-readiness-probe"},
		Spec: v1beta1.ClusterImagePolicySpec{
			Images:      []v1beta1.ImagePattern{{Glob: "**"}},
			Authorities: []v1beta1.Authority{{Static: &v1beta1.StaticRef{Action: v1beta1.StaticActionPass}}},
			Policy:      &v1beta1.Policy{Type: v1beta1.PolicyTypeCUE, Data: "{"},
		},
	}
	var last error
	for {
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), admission.PolicyWebhookName) && strings.Contains(err.Error(), "validation failed") {
			return nil
		}
		if err == nil {
			last = fmt.Errorf("the webhook admitted a policy that does not compile")
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("webhook not answering: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for the webhook: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
