package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Bounds of the webhook and metrics servers on a client that is slow to
// send its request. controller-runtime's servers set no ReadTimeout and a
// 32 s ReadHeaderTimeout and take no option to change them, so Vigil serves
// their handlers with http.Servers of its own.
const (
	// ReadHeaderTimeout bounds the time a client takes to send a request's
	// headers: kube-apiserver and Prometheus send them at once.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds the time a client takes to send a whole request,
	// body included: kube-apiserver gives up on the webhook after its
	// timeoutSeconds (10 s) anyway.
	ReadTimeout = 10 * time.Second
	// idleTimeout and maxHeaderBytes are controller-runtime's values.
	idleTimeout    = 90 * time.Second
	maxHeaderBytes = 1 << 20
	// shutdownTimeout bounds the wait for requests in flight at shutdown.
	shutdownTimeout = time.Minute
)

// serveHTTP serves h on ln until ctx ends, with Vigil's timeouts, over
// HTTP/2 only when enableHTTP2 (ln must then offer h2 by ALPN, see
// tlsConfig).
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, enableHTTP2 bool, log logr.Logger) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(enableHTTP2)
	srv := &http.Server{
		Handler:           h,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		Protocols:         &protocols,
	}
	stopped := make(chan struct{})
	// #nosec G118 -- the shutdown runs once ctx has ended, so it needs a context of its own
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Error(err, "shutting down the HTTP server")
		}
	}()
	log.Info("serving", "address", ln.Addr().String(), "http2", enableHTTP2)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	return nil
}

// tlsConfig is the TLS configuration of Vigil's servers: TLS 1.2 or newer,
// and HTTP/1.1 only unless enableHTTP2, for HTTP/2's stream handling has
// been the way into several denial-of-service attacks (CVE-2023-44487,
// CVE-2023-39325); kube-apiserver and Prometheus speak HTTP/1.1 to it.
func tlsConfig(enableHTTP2 bool) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if enableHTTP2 {
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	return c
}

// webhookServer serves the handlers registered on controller-runtime's
// webhook server (which instruments them) with serveHTTP, and the
// certificate that cert-controller writes to certDir, reloaded when it
// changes.
type webhookServer struct {
	webhook.Server
	mux         *http.ServeMux
	addr        string
	certDir     string
	enableHTTP2 bool
	log         logr.Logger
	listening   atomic.Bool
}

func newWebhookServer(opts Options, log logr.Logger) *webhookServer {
	mux := http.NewServeMux()
	return &webhookServer{
		Server:      webhook.NewServer(webhook.Options{Host: opts.WebhookHost, Port: opts.WebhookPort, CertDir: opts.CertDir, WebhookMux: mux}),
		mux:         mux,
		addr:        net.JoinHostPort(opts.WebhookHost, strconv.Itoa(opts.WebhookPort)),
		certDir:     opts.CertDir,
		enableHTTP2: opts.EnableHTTP2,
		log:         log,
	}
}

// Start serves the webhooks until ctx ends; the certificate must be on disk.
func (s *webhookServer) Start(ctx context.Context) error {
	watcher, err := certwatcher.New(filepath.Join(s.certDir, "tls.crt"), filepath.Join(s.certDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("webhook certificate: %w", err)
	}
	go func() {
		if err := watcher.Start(ctx); err != nil {
			s.log.Error(err, "watching the webhook certificate")
		}
	}()
	cfg := tlsConfig(s.enableHTTP2)
	cfg.GetCertificate = watcher.GetCertificate
	ln, err := tls.Listen("tcp", s.addr, cfg)
	if err != nil {
		return fmt.Errorf("webhook server: %w", err)
	}
	s.listening.Store(true)
	return serveHTTP(ctx, ln, s.mux, s.enableHTTP2, s.log)
}

// StartedChecker passes once the server listens with its certificate.
func (s *webhookServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		if !s.listening.Load() {
			return errors.New("webhook server not listening yet")
		}
		return nil
	}
}

// metricsServer serves controller-runtime's metrics registry on /metrics,
// over HTTPS with a self-signed certificate behind filter when secure, as
// controller-runtime's own metrics server would.
type metricsServer struct {
	addr        string
	secure      bool
	filter      metricsserver.Filter
	enableHTTP2 bool
	log         logr.Logger
}

func (s *metricsServer) NeedLeaderElection() bool { return false }

func (s *metricsServer) Start(ctx context.Context) error {
	var handler http.Handler = promhttp.HandlerFor(crmetrics.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
	if s.filter != nil {
		var err error
		if handler, err = s.filter(s.log, handler); err != nil {
			return fmt.Errorf("metrics server: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler)
	var ln net.Listener
	var err error
	if s.secure {
		ln, err = s.listenTLS()
	} else {
		ln, err = net.Listen("tcp", s.addr)
	}
	if err != nil {
		return fmt.Errorf("metrics server: %w", err)
	}
	return serveHTTP(ctx, ln, mux, s.enableHTTP2, s.log)
}

func (s *metricsServer) listenTLS() (net.Listener, error) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{{127, 0, 0, 1}}, nil)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	cfg := tlsConfig(s.enableHTTP2)
	cfg.Certificates = []tls.Certificate{cert}
	return tls.Listen("tcp", s.addr, cfg)
}
