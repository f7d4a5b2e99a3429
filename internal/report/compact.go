package report

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openreportsv1alpha1 "github.com/vigil-dev/vigil/apis/openreports/v1alpha1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
)

// digestPrefix starts the description of a compacted result: the digest of
// the whole result as stored, timestamp aside.
const digestPrefix = "vigil-digest:"

// Compact turns a stored report into the form Hold reads, and whose
// fingerprint Vigil compares. Of each result it keeps the policy, the result
// word and the timestamp, which MakePlan reads, and in place of the
// description, properties and subjects, which are most of a report, a
// digest of the whole result as stored, so that any change to it, by Vigil
// or anyone else, still shows (Fingerprint). Compacted descriptions exist
// only in Vigil's memory; nothing compacted is ever written.
//
// It returns obj, changed in place; objects of other types are returned as
// they are. A compacted result is left alone, so compacting twice changes
// nothing.
func Compact(obj any) (any, error) {
	switch r := obj.(type) {
	case *reportsv1alpha2.PolicyReport:
		r.ManagedFields = nil
		for i := range r.Results {
			res := &r.Results[i]
			if compacted(res.Description, res.Properties) {
				continue
			}
			*res = reportsv1alpha2.PolicyReportResult{
				Policy: res.Policy, Result: res.Result, Timestamp: res.Timestamp,
				Description: digest(res, &res.Timestamp),
			}
		}
	case *openreportsv1alpha1.Report:
		r.ManagedFields = nil
		for i := range r.Results {
			res := &r.Results[i]
			if compacted(res.Description, res.Properties) {
				continue
			}
			*res = openreportsv1alpha1.ReportResult{
				Policy: res.Policy, Result: res.Result, Timestamp: res.Timestamp,
				Description: digest(res, &res.Timestamp),
			}
		}
	}
	return obj, nil
}

// Compacted is rep compacted as Vigil reads it once stored in api.
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
