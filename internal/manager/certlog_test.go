package manager

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestQuietCertRotation(t *testing.T) {
	var lines []string
	base := funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{})
	log := QuietCertRotation(base)
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, "vigil-webhook-server-cert", errors.New("the object has been modified"))
	notYet := errors.New("Cert secret is not well-formed, missing ca.crt")
	real := errors.New("secrets \"vigil-webhook-server-cert\" is forbidden")

	rot := log.WithName(certRotationLogger).WithValues("k", "v")
	rot.Error(conflict, "could not refresh CA and server certs")
	rot.Error(notYet, "secret is not well-formed, cannot update webhook configurations")
	rot.Error(real, "could not refresh CA and server certs")
	log.WithName("other").Error(conflict, "a conflict elsewhere")

	want := []struct{ level, text string }{
		{`"level"=0`, "could not refresh CA and server certs (retrying)"},
		{`"level"=0`, "secret is not well-formed, cannot update webhook configurations (retrying)"},
		{`"error"=`, "forbidden"},
		{`"error"=`, "a conflict elsewhere"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w.level) || !strings.Contains(lines[i], w.text) {
			t.Errorf("line %d: %s\nwant %s and %q", i, lines[i], w.level, w.text)
		}
	}
	for _, l := range lines[:2] {
		if !strings.Contains(l, `"k"="v"`) || !strings.Contains(l, "cert-rotation") {
			t.Errorf("quieted line lost the logger's name or values: %s", l)
		}
	}
}
