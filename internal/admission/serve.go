package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// MaxReviewBytes bounds the body of one AdmissionReview, as
// controller-runtime's webhook does: kube-apiserver's own request limit is
// 3 MiB, and the review carries the object twice at most.
const MaxReviewBytes = 7 << 20

// preallocBytes: a body announced at most this long is read into a buffer
// of its length at once (real reviews are a few KiB).
const preallocBytes = 1 << 20

// Serve returns the HTTP handler of an admission webhook that answers with h.
//
// It does what controller-runtime's admission.Webhook.ServeHTTP does (body
// bound, content type, AdmissionReview v1 or v1beta1 in, the same version
// out) and hands the request to its Webhook.Handle, which sets the answer's
// uid and turns a panic into an error answer. It differs in cost only: the
// body is read into one buffer of the request's length, and the review is
// decoded once, where the generic decoder parses it a second time to find
// its kind. Those were a fifth of the webhook's CPU and allocations per
// request (BENCHMARKS.md, benchmark 2), and at 500 requests/s the garbage
// collector's cycles are what the latency tail is made of.
func Serve(h admission.Handler) http.Handler {
	return &server{wh: &admission.Webhook{Handler: h}}
}

type server struct {
	wh *admission.Webhook
}

var (
	reviewV1      = admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")
	reviewV1beta1 = admissionv1beta1.SchemeGroupVersion.WithKind("AdmissionReview")
)

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, status, err := readBody(r)
	if err != nil {
		writeReview(w, reviewV1, admission.Errored(status, err))
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		writeReview(w, reviewV1, admission.Errored(http.StatusBadRequest, fmt.Errorf("decode the AdmissionReview: %w", err)))
		return
	}
	gvk := review.GroupVersionKind()
	if gvk != reviewV1 && gvk != reviewV1beta1 {
		writeReview(w, reviewV1, admission.Errored(http.StatusBadRequest,
			fmt.Errorf("expected an AdmissionReview of %s or %s, got apiVersion %q kind %q",
				reviewV1.GroupVersion(), reviewV1beta1.GroupVersion(), review.APIVersion, review.Kind)))
		return
	}
	var req admission.Request
	if review.Request != nil {
		req.AdmissionRequest = *review.Request
	}
	writeReview(w, gvk, s.wh.Handle(r.Context(), req))
}

// readBody reads a JSON body of at most MaxReviewBytes; on error it says
// which HTTP status the answer carries.
func readBody(r *http.Request) ([]byte, int32, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, http.StatusBadRequest, errors.New("request body is empty")
	}
	defer func() { _ = r.Body.Close() }()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return nil, http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct)
	}
	tooLarge := fmt.Errorf("request entity is too large; limit is %d bytes", MaxReviewBytes)
	if r.ContentLength > MaxReviewBytes {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	if r.ContentLength > 0 && r.ContentLength <= preallocBytes {
		// One buffer of the announced length; a body that ends early is an
		// error, one that goes on past it is cut by net/http.
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("read the request body: %w", err)
		}
		return body, 0, nil
	}
	// A larger or unannounced body grows with what arrives: a client that
	// announces 7 MiB and sends nothing costs no 7 MiB.
	lr := &io.LimitedReader{R: r.Body, N: MaxReviewBytes + 1}
	body, err := io.ReadAll(lr)
	switch {
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("read the request body: %w", err)
	case len(body) > MaxReviewBytes:
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	return body, 0, nil
}

// writeReview writes resp as an AdmissionReview of gvk, the request's.
func writeReview(w http.ResponseWriter, gvk schema.GroupVersionKind, resp admission.Response) {
	out := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	out.SetGroupVersionKind(gvk)
	w.Header().Set("Content-Type", "application/json")
	// An error here is a connection gone: nothing more can be said on it.
	_ = json.NewEncoder(w).Encode(out)
}
