package verify

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// keylessFixture is a registry with one image signed keyless (legacy).
func keylessFixture(t *testing.T) (*testRegistry, *Authority, name.Digest) {
	t.Helper()
	vs, reg := newVirtualSigstore(t), newTestRegistry(t)
	d := reg.pushImage(t, "app")
	signKeylessLegacy(t, vs, d, ciSubject, ciIssuer)
	return reg, mustCompile(t, keylessSpec(vs, FormatLegacy, Identity{Issuer: ciIssuer, Subject: ciSubject})), d
}

// Registry failures are errors with their class, never verdicts.
func TestRegistryFailures(t *testing.T) {
	t.Run("429", func(t *testing.T) {
		reg, a, d := keylessFixture(t)
		reg.mode.Store("429")
		_, err := New(Options{}).Verify(context.Background(), a, Request{Image: d.String()})
		expectReason(t, err, ReasonRateLimited, a, d, "rate limited (429)")
		if ReasonOf(err).Verdict() {
			t.Error("429 is a verdict")
		}
	})
	t.Run("registry down", func(t *testing.T) {
		reg, a, d := keylessFixture(t)
		reg.Server.Close()
		_, err := New(Options{}).Verify(context.Background(), a, Request{Image: d.String()})
		expectReason(t, err, ReasonRegistryUnreachable, a, d, "registry "+reg.host+": unreachable")
	})
	t.Run("timeout", func(t *testing.T) {
		reg, a, d := keylessFixture(t)
		defer reg.hold()()
		_, err := New(Options{Timeout: 50 * time.Millisecond}).Verify(context.Background(), a, Request{Image: d.String()})
		expectReason(t, err, ReasonTimeout, a, d, "timed out")
	})
	t.Run("caller gives up", func(t *testing.T) {
		reg, a, d := keylessFixture(t)
		defer reg.hold()()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := New(Options{}).Verify(ctx, a, Request{Image: d.String()})
		expectReason(t, err, ReasonTimeout, a, d, "did not finish in time")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%v does not wrap the deadline", err)
		}
	})
	t.Run("unsigned image", func(t *testing.T) {
		reg, a, _ := keylessFixture(t)
		unsigned := reg.pushImage(t, "unsigned")
		_, err := New(Options{}).Verify(context.Background(), a, Request{Image: unsigned.String()})
		expectReason(t, err, ReasonNoSignatures, a, unsigned, "no signatures found")
		if !ReasonOf(err).Verdict() {
			t.Error("no signatures is a verdict")
		}
	})
	t.Run("image not found", func(t *testing.T) {
		reg, a, _ := keylessFixture(t)
		_, err := New(Options{}).Verify(context.Background(), a, Request{Image: reg.host + "/nothing:here"})
		if ReasonOf(err) != ReasonNotFound {
			t.Fatalf("reason %q: %v", ReasonOf(err), err)
		}
	})
}

// Tags resolve to the digest that was pushed, by HEAD, or by GET where
// the registry refuses HEAD.
func TestResolve(t *testing.T) {
	reg, a, d := keylessFixture(t)
	tag := d.Context().Tag("latest").String()
	for _, mode := range []string{"", "nohead"} {
		reg.mode.Store(mode)
		v := New(Options{})
		got, err := v.Resolve(context.Background(), tag, nil, LaneAdmission)
		if err != nil {
			t.Fatalf("mode %q: %v", mode, err)
		}
		if got.String() != d.String() {
			t.Fatalf("mode %q: resolved %s, want %s", mode, got, d)
		}
		ev, err := v.Verify(context.Background(), a, Request{Image: tag})
		if err != nil || ev.Image.String() != d.String() {
			t.Fatalf("mode %q: verify by tag: %v %v", mode, ev, err)
		}
	}
	if _, err := New(Options{}).Resolve(context.Background(), "in@valid", nil, LaneAdmission); ReasonOf(err) != ReasonInvalidReference {
		t.Fatalf("invalid reference: %v", err)
	}
}
