package manager

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/go-logr/logr"
	certutil "k8s.io/client-go/util/cert"
)

// TestServeHTTPProtocols: serveHTTP speaks HTTP/2 only when asked to, and
// HTTP/1.1 always. (The manager's servers, off by default, are tested in
// security_test.go.)
func TestServeHTTPProtocols(t *testing.T) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, enable := range []bool{false, true} {
		cfg := tlsConfig(enable)
		cfg.Certificates = []tls.Certificate{cert}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			done <- serveHTTP(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, r.Proto)
			}), enable, logr.Discard())
		}()
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		}}
		resp, err := c.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[enable]
		if resp.Proto != want || string(body) != want {
			t.Errorf("enableHTTP2=%v: answered over %s (the server saw %s), want %s", enable, resp.Proto, body, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("enableHTTP2=%v: serveHTTP: %v", enable, err)
		}
	}
}
