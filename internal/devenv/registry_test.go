package devenv

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// The registry accepts a push with crane, serves the image back by tag and by
// digest, and refuses connections once stopped.
func TestRegistry(t *testing.T) {
	var log strings.Builder
	r, err := StartRegistry(&log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") || strings.HasSuffix(r.Addr(), ":0") {
		t.Fatalf("Addr = %q, want 127.0.0.1 and a port", r.Addr())
	}

	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := r.Addr() + "/demo/app:v1"
	if err := crane.Push(img, ref, crane.Insecure); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	got, err := crane.Digest(ref, crane.Insecure)
	if err != nil || got != want.String() {
		t.Fatalf("digest of %s = %q, %v; want %s", ref, got, err, want)
	}
	pulled, err := crane.Pull(r.Addr()+"/demo/app@"+want.String(), crane.Insecure)
	if err != nil {
		t.Fatalf("pull by digest: %v", err)
	}
	if layers, err := pulled.Layers(); err != nil || len(layers) != 2 {
		t.Fatalf("pulled image has %d layers (%v), want 2", len(layers), err)
	}
	if !strings.Contains(log.String(), "/v2/demo/app/manifests/v1") {
		t.Errorf("the request log does not show the push:\n%s", log.String())
	}

	if err := r.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatalf("Stop a second time: %v", err)
	}
	if _, err := crane.Digest(ref, crane.Insecure); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("digest after Stop = %v, want connection refused", err)
	}
}
