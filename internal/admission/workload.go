// Package admission holds Vigil's validating webhooks: pods and pod-owning
// workloads are judged by the same decision function as the reconcilers,
// and ClusterImagePolicies are checked before they are stored.
package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unicode"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
	"github.com/vigil-dev/vigil/internal/verify"
)

// Webhook paths, as policy-controller names them.
const (
	WorkloadPath = "/validations"
	PolicyPath   = "/validating"
)

// syncWait bounds how long a request waits for the policies at start-up.
const syncWait = 5 * time.Second

// NoMatchSource tells the current no-match-policy.
type NoMatchSource interface {
	NoMatchPolicy() policy.NoMatchPolicy
}

// WorkloadValidator judges pods and pod-owning workloads at CREATE and UPDATE.
type WorkloadValidator struct {
	Policies *policystore.Store
	NoMatch  NoMatchSource
	// PolicyTimeout bounds each policy's evaluation (policy.Options).
	PolicyTimeout time.Duration
	// Verifier verifies signatures, shared with the verify path; nil: key
	// and keyless authorities give error results.
	Verifier policy.Verifier
	// Keychains give the registry credentials of the objects judged; nil:
	// anonymous.
	Keychains *verify.Keychains
}

// Handle implements admission.Handler.
func (v *WorkloadValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	kind := req.Kind.Kind
	resp := v.handle(ctx, req)
	decision := metrics.DecisionAllowed
	switch {
	case resp.Result != nil && resp.Result.Code >= http.StatusInternalServerError:
		decision = metrics.DecisionError
	case !resp.Allowed:
		decision = metrics.DecisionDenied
	case len(resp.Warnings) > 0:
		decision = metrics.DecisionWarned
	}
	kind = metrics.Known(kind, metricKinds)
	metrics.AdmissionRequests.WithLabelValues(kind, metrics.Known(string(req.Operation), metricOperations), decision).Inc()
	metrics.AdmissionDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	return resp
}

// The label values of the admission metrics: the kinds Vigil judges and the
// operations its webhook configuration registers. Anything else a client
// sends counts as metrics.Other.
var (
	metricKinds      = policy.SupportedKinds()
	metricOperations = []string{string(admissionv1.Create), string(admissionv1.Update)}
)

func (v *WorkloadValidator) handle(ctx context.Context, req admission.Request) admission.Response {
	if err := knownOperation(req); err != nil {
		return badRequest(err)
	}
	shape := readShape(req.Object.Raw)
	if skip, why := skipRequest(req, shape); skip {
		return admission.Allowed(why)
	}
	if err := shape.checkContainers(); err != nil {
		return badRequest(fmt.Errorf("%s %s: %w", req.Kind.Kind, objectName(req), err))
	}
	gv := schema.GroupVersion{Group: req.Kind.Group, Version: req.Kind.Version}
	obj, err := policy.DecodeAdmittedObject(req.Object.Raw, gv.String(), req.Kind.Kind)
	if err != nil {
		return badRequest(fmt.Errorf("%s %s: %w", req.Kind.Kind, objectName(req), err))
	}
	if err := v.waitSynced(ctx); err != nil {
		return admission.Errored(http.StatusServiceUnavailable, err)
	}
	d := v.Policies.Set().Decide(ctx, obj, policy.Options{
		NoMatchPolicy: v.NoMatch.NoMatchPolicy(), PolicyTimeout: v.PolicyTimeout, Observer: metrics.EvaluationObserver{},
		Verification: v.verification(ctx, req),
	})
	for _, r := range d.Results {
		metrics.Evaluations.WithLabelValues(metrics.TriggerAdmission, r.Result).Inc()
	}
	if !d.Allowed {
		resp := badRequest(fmt.Errorf("%s", d.DenialReason()))
		resp.Warnings = warningLines(d.Warnings)
		return resp
	}
	resp := admission.Allowed("")
	resp.Warnings = warningLines(d.Warnings)
	return resp
}

// warningLines makes admission warnings that kube-apiserver passes on.
// It silently drops a warning that holds a control character, a newline
// included (k8s.io/apimachinery/pkg/util/net.NewWarningHeader), and
// policy-controller's messages put the image and the details on a second
// line. So each line becomes a warning of its own, as knative does since
// knative/pkg#2582: kubectl prints "Warning: failed policy: NAME:
// spec.containers[0].image", then "Warning: IMAGE DETAILS". Other control
// characters (a tab in a compiler message) become spaces.
func warningLines(warnings []string) []string {
	var out []string
	for _, w := range warnings {
		for line := range strings.SplitSeq(w, "\n") {
			line = strings.Map(func(r rune) rune {
				if unicode.IsControl(r) {
					return ' '
				}
				return r
			}, line)
			if strings.TrimSpace(line) != "" {
				out = append(out, line)
			}
		}
	}
	return out
}

// waitSynced waits, at most syncWait, for the policies at start-up; once
// they are loaded it costs no timer.
func (v *WorkloadValidator) waitSynced(ctx context.Context) error {
	return waitSynced(ctx, v.Policies)
}

func waitSynced(ctx context.Context, policies *policystore.Store) error {
	select {
	case <-policies.Synced():
		return nil
	default:
	}
	waitCtx, cancel := context.WithTimeout(ctx, syncWait)
	defer cancel()
	return policies.WaitSynced(waitCtx)
}

// skipRequest tells the requests policy-controller lets through unjudged:
// deletions, objects being deleted, and scale-downs of scalable workloads
// (which must never be blocked by a policy). shape is req.Object's.
func skipRequest(req admission.Request, shape *objectShape) (bool, string) {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return true, "only CREATE and UPDATE are judged"
	}
	if req.SubResource != "" && req.SubResource != "ephemeralcontainers" {
		return true, "subresource " + req.SubResource + " is not judged"
	}
	if shape.Metadata.DeletionTimestamp != nil {
		return true, "the object is being deleted"
	}
	if req.Operation == admissionv1.Update && onlyScaledDown(req.OldObject.Raw, req.Object.Raw) {
		return true, "scaling down is never blocked"
	}
	return false, ""
}

// onlyScaledDown says whether an update lowers spec.replicas and changes
// nothing else a policy could read (the rest of the spec, the labels):
// policy-controller skips every update that scales down, which lets a
// template change ride along unjudged.
func onlyScaledDown(oldRaw, newRaw []byte) bool {
	type scalable struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec map[string]any `json:"spec"`
	}
	var old, cur scalable
	if len(oldRaw) == 0 || json.Unmarshal(oldRaw, &old) != nil || json.Unmarshal(newRaw, &cur) != nil {
		return false
	}
	was, okOld := old.Spec["replicas"].(float64)
	now, okNew := cur.Spec["replicas"].(float64)
	if !okOld || !okNew || now >= was {
		return false
	}
	delete(old.Spec, "replicas")
	delete(cur.Spec, "replicas")
	return reflect.DeepEqual(old.Spec, cur.Spec) && reflect.DeepEqual(old.Metadata.Labels, cur.Metadata.Labels)
}

// knownOperation refuses a request whose operation kube-apiserver never
// sends, such as an AdmissionReview without a request: only what is known to
// need no judgement is let through unjudged, never what is merely unknown.
func knownOperation(req admission.Request) error {
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
		return nil
	}
	return fmt.Errorf("%s %s: unknown operation %q", req.Kind.Kind, objectName(req), req.Operation)
}

// badRequest denies with HTTP 400, as policy-controller does, so that kubectl
// prints "Error from server (BadRequest)".
func badRequest(err error) admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusBadRequest,
			Reason: metav1.StatusReasonBadRequest, Message: err.Error(),
		},
	}}
}

func objectName(req admission.Request) string {
	if req.Namespace != "" {
		return fmt.Sprintf("%q in namespace %q", req.Name, req.Namespace)
	}
	return fmt.Sprintf("%q", req.Name)
}
