package admission

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestServeEnvelope checks what Serve does around the validator: the
// content type, the review's version echoed back, the uid, the status code.
func TestServeEnvelope(t *testing.T) {
	vs := newValidators(t)
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	valid := review(podKind, admissionv1.Create, sample(t, "pod-fixed.yaml"))
	post := func(contentType string, body []byte) (*http.Response, admissionv1.AdmissionReview) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, WorkloadPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		Serve(vs.walkthrough).ServeHTTP(rec, req)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("no AdmissionReview response (%v): %.300s", err, rec.Body.String())
		}
		return rec.Result(), out
	}

	resp, out := post("application/json", valid)
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response.UID != "42" || !out.Response.Allowed {
		t.Errorf("v1 review answered as %s %s, uid %q, allowed %v", out.APIVersion, out.Kind, out.Response.UID, out.Response.Allowed)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("answer's Content-Type = %q", ct)
	}

	beta := bytes.Replace(valid, []byte(`"admission.k8s.io/v1"`), []byte(`"admission.k8s.io/v1beta1"`), 1)
	if _, out := post("application/json", beta); out.APIVersion != "admission.k8s.io/v1beta1" || out.Response.UID != "42" || !out.Response.Allowed {
		t.Errorf("v1beta1 review answered as %s, uid %q, allowed %v", out.APIVersion, out.Response.UID, out.Response.Allowed)
	}

	if _, out := post("text/plain", valid); out.Response.Allowed || out.Response.Result == nil ||
		out.Response.Result.Code != http.StatusBadRequest || !strings.Contains(out.Response.Result.Message, "expected application/json") {
		t.Errorf("a review sent as text/plain was answered %+v", out.Response)
	}
}

// A client that announces a large body and sends little costs what it
// sends, not what it announces: Serve preallocates only small bodies.
func TestServeAnnouncedLengthIsNotTrusted(t *testing.T) {
	vs := newValidators(t)
	h := Serve(vs.walkthrough)
	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"`) // cut short
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const tries = 8
	for range tries {
		req := httptest.NewRequest(http.MethodPost, WorkloadPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = 6 << 20
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.Response.Allowed ||
			out.Response.Result == nil || out.Response.Result.Code != http.StatusBadRequest {
			t.Fatalf("a body shorter than announced was answered %.300s", rec.Body.String())
		}
	}
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > tries<<20 {
		t.Errorf("%d requests announcing 6 MiB and sending %d bytes allocated %.1f MiB", tries, len(body), float64(grown)/(1<<20))
	}
}
