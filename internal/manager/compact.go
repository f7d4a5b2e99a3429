package manager

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openreportsv1alpha1 "github.com/vigil-dev/vigil/apis/openreports/v1alpha1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
)

// digestPrefix starts the description of a result in Vigil's cache, where
// it is the digest of the whole result as stored, timestamp aside.
const digestPrefix = "vigil-digest:"

// CompactReport is the form Vigil's reports take in its cache. The
// reconcilers read back, of each result, only its policy, result and
// timestamp, and whether anything else changed; the description,
// properties and subjects, which are most of a report, give way to a digest
// of the whole result, kept as its description. The labels, when they are
// only Vigil's own, become one map shared by every cached report. A report
// holds as many results as policies match its pod, and the cache holds one
// report per pod, so this is most of what Vigil keeps per pod. It returns
// obj, changed in place; objects of other types are returned as they are.
// A result compacted already is left alone, so compacting twice changes
// nothing, as client-go asks of a transform.
func CompactReport(obj any) (any, error) {
	switch r := obj.(type) {
	case *reportsv1alpha2.PolicyReport:
		r.ManagedFields = nil
		r.Labels = sharedLabels(r.Labels)
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
		r.Labels = sharedLabels(r.Labels)
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

// compacted says whether a result with this description and these
// properties is compacted already.
func compacted(description string, properties map[string]string) bool {
	return strings.HasPrefix(description, digestPrefix) && len(properties) == 0
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

// digest is the SHA-256 of result's JSON with its timestamp (which ts
// points into) zeroed for the moment.
func digest(result any, ts *metav1.Timestamp) string {
	saved := *ts
	*ts = metav1.Timestamp{}
	data, err := json.Marshal(result)
	*ts = saved
	if err != nil {
		// Results are plain data; should one ever fail to encode, this
		// digest never equals a real one, so the report is rewritten.
		return digestPrefix
	}
	sum := sha256.Sum256(data)
	return digestPrefix + hex.EncodeToString(sum[:16])
}
