package report

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openreportsv1alpha1 "github.com/vigil-dev/vigil/apis/openreports/v1alpha1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
)

// digestPrefix starts the description of a compacted result: the digest of
// the whole result as stored, timestamp aside.
const digestPrefix = "vigil-digest:"

// Compact turns a stored report into the form Vigil's cache keeps (it is the
// cache's transform). Of each result it keeps the policy, the result word and
// the timestamp, which Plan reads, and in place of the description,
// properties and subjects, which are most of a report, a digest of the whole
// result as stored, so that any change to it, by Vigil or anyone else, still
// shows (Fingerprint). Compacted descriptions exist only in Vigil's memory;
// nothing compacted is ever written. The labels, when they are only Vigil's
// own, become one map shared by every cached report. A report holds a result
// per policy matching its pod, and the cache one report per pod, so this is
// most of what Vigil keeps per pod.
//
// It returns obj, changed in place; objects of other types are returned as
// they are. A compacted result is left alone, so compacting twice changes
// nothing, as client-go asks of a transform.
func Compact(obj any) (any, error) {
	switch r := obj.(type) {
	case *reportsv1alpha2.PolicyReport:
		shareStrings(&r.TypeMeta, &r.ObjectMeta, r.Scope)
		for i := range r.Results {
			res := &r.Results[i]
			if !compacted(res.Description, res.Properties) {
				*res = reportsv1alpha2.PolicyReportResult{
					Policy: res.Policy, Result: res.Result, Timestamp: res.Timestamp,
					Description: digest(res, &res.Timestamp),
				}
			}
			res.Policy, res.Result = intern(res.Policy), intern(res.Result)
		}
	case *openreportsv1alpha1.Report:
		shareStrings(&r.TypeMeta, &r.ObjectMeta, r.Scope)
		for i := range r.Results {
			res := &r.Results[i]
			if !compacted(res.Description, res.Properties) {
				*res = openreportsv1alpha1.ReportResult{
					Policy: res.Policy, Result: res.Result, Timestamp: res.Timestamp,
					Description: digest(res, &res.Timestamp),
				}
			}
			res.Policy, res.Result = intern(res.Policy), intern(res.Result)
		}
	}
	return obj, nil
}

// shareStrings drops a cached report's managed fields and makes its strings
// share memory where their values are shared: the words every report holds
// (API version, kind, namespace, labels) are one copy for all reports, and
// the pod's name and UID, which the report's name, owner and scope each
// repeat, one copy per report. Decoding gives every field its own copy;
// this halves what a compacted report of one result keeps (TestCompactedSize).
func shareStrings(tm *metav1.TypeMeta, m *metav1.ObjectMeta, scope *corev1.ObjectReference) {
	m.ManagedFields = nil
	m.Labels = sharedLabels(m.Labels)
	tm.APIVersion, tm.Kind = intern(tm.APIVersion), intern(tm.Kind)
	m.Namespace = intern(m.Namespace)
	uid, name := m.Name, ""
	for i := range m.OwnerReferences {
		o := &m.OwnerReferences[i]
		o.APIVersion, o.Kind = intern(o.APIVersion), intern(o.Kind)
		o.UID = sameString(o.UID, uid)
		name = o.Name
	}
	if scope != nil {
		scope.APIVersion, scope.Kind, scope.Namespace = intern(scope.APIVersion), intern(scope.Kind), intern(scope.Namespace)
		scope.UID = sameString(scope.UID, uid)
		scope.Name = sameString(scope.Name, name)
	}
}

// Compacted is rep as Vigil's cache would hold it once stored in api.
func Compacted(api API, rep *reportsv1alpha2.PolicyReport) *reportsv1alpha2.PolicyReport {
	stored := api.ToStored(rep.DeepCopy())
	_, _ = Compact(stored)
	out, _ := api.FromStored(stored)
	return out
}

// Fingerprint identifies the content of a compacted report, timestamps
// aside: two reports with the same fingerprint say the same thing about the
// same pod, so writing one over the other would change nothing a reader sees.
func Fingerprint(compact *reportsv1alpha2.PolicyReport) string {
	type result struct{ Policy, Result, Digest string }
	content := struct {
		ManagedBy string
		Owners    []metav1.OwnerReference
		Scope     any
		Summary   reportsv1alpha2.PolicyReportSummary
		Results   []result
	}{
		ManagedBy: compact.Labels[ManagedByLabel],
		Owners:    compact.OwnerReferences,
		Scope:     compact.Scope,
		Summary:   compact.Summary,
		Results:   make([]result, 0, len(compact.Results)),
	}
	for _, r := range compact.Results {
		content.Results = append(content.Results, result{r.Policy, string(r.Result), r.Description})
	}
	return hashJSON(content)
}

// compacted says whether a result with this description and these
// properties is compacted already.
func compacted(description string, properties map[string]string) bool {
	return strings.HasPrefix(description, digestPrefix) && len(properties) == 0
}

// intern is the one copy of s that every cached report shares.
func intern[S ~string](s S) S { return S(unique.Make(string(s)).Value()) }

// sameString is s, held in like's memory when their values are equal.
func sameString[S, L ~string](s S, like L) S {
	if string(s) == string(like) {
		return S(like)
	}
	return s
}

// vigilLabels is the labels map of every cached report labelled only as
// Vigil's. Nothing writes to a cached object (reads deep-copy it), so one
// map serves them all.
var vigilLabels = map[string]string{ManagedByLabel: ManagedByValue}

func sharedLabels(l map[string]string) map[string]string {
	if len(l) == 1 && l[ManagedByLabel] == ManagedByValue {
		return vigilLabels
	}
	return l
}

// digest is the digest of result with its timestamp (which ts points into)
// zeroed for the moment.
func digest(result any, ts *metav1.Timestamp) string {
	saved := *ts
	*ts = metav1.Timestamp{}
	d := hashJSON(result)
	*ts = saved
	return digestPrefix + d
}

// hashJSON is the SHA-256 of v's JSON, 128 bits of it in hex. Reports are
// plain data; should one ever fail to encode, the empty digest never equals
// a real one, so the report is rewritten.
func hashJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}
