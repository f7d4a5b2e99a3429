package controllers_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/controllers"
	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/report"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// The verify path creates a report it does not hold and updates one it holds
// at the held version. When the report is in another state, whoever put it
// there, the write is sent again as a server-side apply and the report ends
// as Vigil wants it: each case against the real API server.
func TestReportWriteFallbacks(t *testing.T) {
	testenv.Integration(t)
	ctx := context.Background()
	ns := newNamespace("write", false)
	create(t, ns)
	desired := func(description string) *reportsv1alpha2.PolicyReport {
		r := staleReport(ns.Name, "web")
		r.Results[0].Description = description
		return r
	}
	retries := func() float64 { return testutil.ToFloat64(metrics.ReportWriteRetries) }
	stored := func(t *testing.T) *reportsv1alpha2.PolicyReport {
		t.Helper()
		var got reportsv1alpha2.PolicyReport
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(desired("")), &got); err != nil {
			t.Fatalf("read the report: %v", err)
		}
		return &got
	}
	// The answers to creates and updates, as the API server sent them.
	answers := &answerTypes{}
	cfg := rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return answers.record(rt) })
	// write stores r given held and checks the result: what is stored,
	// the version returned, and whether it took a second request.
	write := func(t *testing.T, r *reportsv1alpha2.PolicyReport, held *report.Held, wantRetry bool) string {
		t.Helper()
		before := retries()
		version, err := controllers.WriteReport(ctx, cfg, k8s, r, held)
		if err != nil {
			t.Fatalf("write: %v", err)
		}
		got := stored(t)
		if got.Results[0].Description != r.Results[0].Description {
			t.Errorf("stored description %q, want %q", got.Results[0].Description, r.Results[0].Description)
		}
		if version != got.ResourceVersion {
			t.Errorf("write returned version %q, the report is at %q", version, got.ResourceVersion)
		}
		if retried := retries() - before; retried != map[bool]float64{true: 1, false: 0}[wantRetry] {
			t.Errorf("%v retries, want a retry: %v", retried, wantRetry)
		}
		return version
	}
	held := func(version string) *report.Held { return &report.Held{ResourceVersion: version} }

	v1 := write(t, desired("one"), nil, false)      // a create
	v2 := write(t, desired("two"), held(v1), false) // an update at the held version

	// Someone else edits the report; Vigil, still holding v2, puts it
	// back: the update conflicts, the apply lands.
	theirs := stored(t)
	theirs.Results[0].Description = "edited by hand"
	if err := k8s.Update(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	v3 := write(t, desired("three"), held(v2), true)
	if v3 == v2 || v3 == theirs.ResourceVersion {
		t.Errorf("the report was not written again: version %s after %s and %s", v3, v2, theirs.ResourceVersion)
	}

	// The report exists although Vigil holds none (its watch is behind).
	write(t, desired("four"), nil, true)

	// Someone deletes the report Vigil holds: it is created again.
	if err := k8s.Delete(ctx, desired("")); err != nil {
		t.Fatal(err)
	}
	write(t, desired("five"), held(v3), true)

	// Any other failure is returned as it is, with no second try.
	before := retries()
	bad := desired("six")
	bad.Results[0].Result = "not-a-result"
	if _, err := controllers.WriteReport(ctx, cfg, k8s, bad, held(stored(t).ResourceVersion)); !apierrors.IsInvalid(err) {
		t.Errorf("a report the API server refuses: %v, want the server's Invalid error", err)
	}
	if retries() != before {
		t.Errorf("a refused report was sent again")
	}

	// Every create and update that landed was answered with the stored
	// report's metadata alone, not with the whole report: in protobuf,
	// which a custom resource has no encoding in, only its metadata.
	answers.mu.Lock()
	defer answers.mu.Unlock()
	if len(answers.types) != 2 { // one and two; the others went on to an apply
		t.Fatalf("%d creates and updates landed through the writer, want 2", len(answers.types))
	}
	for _, ct := range answers.types {
		if !strings.HasPrefix(ct, "application/vnd.kubernetes.protobuf") {
			t.Errorf("a write was answered as %q, want protobuf (PartialObjectMetadata)", ct)
		}
	}
}

// answerTypes records the content types of the successful answers to
// POSTs and PUTs through a round tripper.
type answerTypes struct {
	mu    sync.Mutex
	types []string
}

func (a *answerTypes) record(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		if err == nil && (req.Method == http.MethodPost || req.Method == http.MethodPut) && resp.StatusCode < 300 {
			a.mu.Lock()
			a.types = append(a.types, resp.Header.Get("Content-Type"))
			a.mu.Unlock()
		}
		return resp, err
	})
}
