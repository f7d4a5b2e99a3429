package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/internal/report"
)

// WriteReport is the verify path's report write, for a test of its
// fallbacks against a real API server: it stores obj over c, given what
// Vigil holds of it (nil: nothing), and returns the stored version.
func WriteReport(ctx context.Context, c client.Client, obj client.Object, held *report.Held) (string, error) {
	r := &PodReconciler{Client: c, own: newOwnWrites()}
	return r.write(ctx, obj, held)
}
