package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is an OCI registry served in-process on a loopback port: the
// go-containerregistry registry, which keeps everything in memory, with the
// OCI 1.1 referrers API, so that cosign can push signatures and bundles to
// it. kwok's nodes never pull, so pods may name its images by its address.
type Registry struct {
	srv  *http.Server
	addr string
	done chan error

	stopOnce sync.Once
	stopErr  error
}

// StartRegistry serves a new, empty registry on a free port of 127.0.0.1.
// Its request log goes to logTo (nil discards it).
func StartRegistry(logTo io.Writer) (*Registry, error) {
	if logTo == nil {
		logTo = io.Discard
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the registry on loopback: %w", err)
	}
	r := &Registry{
		srv: &http.Server{
			Handler:           registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(logTo, "", log.LstdFlags))),
			ReadHeaderTimeout: 10 * time.Second,
		},
		addr: ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() {
		err := r.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		r.done <- err
	}()
	return r, nil
}

// Addr is the registry's host:port (127.0.0.1 and its port), the registry
// part of image references such as 127.0.0.1:5000/app:v1. It speaks plain
// HTTP: cosign needs --allow-http-registry, crane --insecure.
func (r *Registry) Addr() string { return r.addr }

// Stop closes the listener, waits for requests in flight up to ctx, then
// closes every connection, and drops what the registry held. Further calls
// return the first result.
func (r *Registry) Stop(ctx context.Context) error {
	r.stopOnce.Do(func() {
		err := r.srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, r.srv.Close())
		}
		if serveErr := <-r.done; serveErr != nil {
			err = errors.Join(err, fmt.Errorf("registry at %s: %w", r.addr, serveErr))
		}
		r.stopErr = err
	})
	return r.stopErr
}
