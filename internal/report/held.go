package report

import (
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
)

// Held is what Vigil keeps in memory of one stored report: enough to plan
// the pod's next report (MakePlan), to tell its own writes from anyone
// else's (the fingerprint), to find the pod (its name) and to count the
// pod's results after a restart. A whole report object, even compacted, was
// about 1,500 bytes and most of what Vigil held per pod at 30,000 pods;
// Held of a report of one result is about 170 (BenchmarkHeldReport).
type Held struct {
	// Pod is the name of the pod the report states, "" when its scope is
	// not a pod.
	Pod string
	// Fingerprint is the report's as stored (Fingerprint of its compacted
	// form): any change to it, by Vigil or anyone else, changes it.
	Fingerprint string
	// Results are the report's results, in its order.
	Results []HeldResult
	// ResourceVersion is the stored report's: Vigil updates the report at
	// this version.
	ResourceVersion string
}

// HeldResult is one result of a held report.
type HeldResult struct {
	Policy string
	Result reportsv1alpha2.Result
	// Digest is the digest of the whole result, timestamp aside (Compact).
	Digest    string
	Timestamp metav1.Timestamp
}

// Hold is what Vigil keeps of obj, a report stored in api, which it
// compacts in place; false for an object of another type.
func Hold(api API, obj client.Object) (Held, bool) {
	_, _ = Compact(obj)
	rep, ok := api.FromStored(obj)
	if !ok {
		return Held{}, false
	}
	return holdCompacted(rep), true
}

// holdCompacted is what Vigil keeps of a compacted report.
func holdCompacted(rep *reportsv1alpha2.PolicyReport) Held {
	h := Held{Fingerprint: Fingerprint(rep), Results: make([]HeldResult, 0, len(rep.Results)), ResourceVersion: rep.ResourceVersion}
	if rep.Scope != nil && rep.Scope.Kind == "Pod" {
		h.Pod = rep.Scope.Name
	}
	for _, r := range rep.Results {
		h.Results = append(h.Results, HeldResult{Policy: intern(r.Policy), Result: intern(r.Result), Digest: r.Description, Timestamp: r.Timestamp})
	}
	return h
}

// intern is the one copy of s that every held report shares.
func intern[S ~string](s S) S { return S(unique.Make(string(s)).Value()) }

// ResultWords are the held report's result words by policy.
func (h *Held) ResultWords() map[string]string {
	out := make(map[string]string, len(h.Results))
	for _, r := range h.Results {
		out[r.Policy] = string(r.Result)
	}
	return out
}
