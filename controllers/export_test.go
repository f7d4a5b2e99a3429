package controllers

import (
	"context"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/internal/report"
)

// WriteReport is the verify path's report write, for a test of its
// fallbacks against a real API server: it stores obj over c (the API
// server of cfg), given what Vigil holds of it (nil: nothing), and returns
// the stored version.
func WriteReport(ctx context.Context, cfg *rest.Config, c client.Client, obj client.Object, held *report.Held) (string, error) {
	w, err := newReportWriter(cfg, nil, c.RESTMapper(), c.Scheme())
	if err != nil {
		return "", err
	}
	r := &PodReconciler{Client: c, own: newOwnWrites(), writer: w}
	return r.write(ctx, obj, held)
}
