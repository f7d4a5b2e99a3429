package controllers

import (
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"unique"

	"k8s.io/apimachinery/pkg/types"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/metrics"
	"github.com/vigil-dev/vigil/internal/report"
)

// tally counts the current result of every judged pod per policy: the
// vigil_policy_results gauge and the pod counts in ClusterImagePolicy status
// come from it, so they agree with the reports by construction.
//
// It also counts the pods drifted out of each policy (vigil_drifted_pods):
// a pod is drifted from the drift on (report.IsDrift) for as long as its
// result stays fail or warn, so the count falls when the pod is fixed, the
// policy is, or the pod goes. Which pods drifted lives only in this process:
// after a restart or a leader handover the count starts again from zero.
type tally struct {
	mu          sync.Mutex
	pods        map[types.NamespacedName]resultSet // pod -> its results
	counts      map[string]map[string]int          // policy -> result -> pods
	byNamespace map[namespacedCount]int
	// drifted: pod -> policies it drifted out of and is still out of.
	drifted        map[types.NamespacedName]map[string]bool
	driftedCounts  map[string]int // policy -> drifted pods
	driftedByNames map[namespacedCount]int
	// seeded is set once the reports found at start are counted.
	seeded bool
}

func newTally() *tally {
	return &tally{
		pods:        map[types.NamespacedName]resultSet{},
		counts:      map[string]map[string]int{},
		byNamespace: map[namespacedCount]int{},

		drifted:        map[types.NamespacedName]map[string]bool{},
		driftedCounts:  map[string]int{},
		driftedByNames: map[namespacedCount]int{},
	}
}

// set records pod's results (nil: the pod is no longer judged) and the
// policies it has just drifted out of, and returns the policies whose result
// counts changed.
func (t *tally) set(pod types.NamespacedName, results map[string]string, drifted []string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := t.setLocked(pod, results)
	t.driftLocked(pod, results, drifted)
	return changed
}

// driftLocked marks pod drifted out of the policies named, and no longer
// drifted out of those it is now in (or no longer judged by).
func (t *tally) driftLocked(pod types.NamespacedName, results map[string]string, drifted []string) {
	marks := t.drifted[pod]
	for policy := range marks {
		if !report.Bad(reportsv1alpha2.Result(results[policy])) {
			delete(marks, policy)
			t.addDriftedLocked(pod.Namespace, policy, -1)
		}
	}
	for _, policy := range drifted {
		if marks[policy] || !report.Bad(reportsv1alpha2.Result(results[policy])) {
			continue
		}
		if marks == nil {
			marks = map[string]bool{}
			t.drifted[pod] = marks
		}
		marks[policy] = true
		t.addDriftedLocked(pod.Namespace, policy, +1)
	}
	if len(marks) == 0 {
		delete(t.drifted, pod)
	}
}

func (t *tally) addDriftedLocked(namespace, policy string, n int) {
	t.driftedCounts[policy] += n
	if !metrics.NamespaceLabel() {
		metrics.SetDriftedPods(policy, "", t.driftedCounts[policy])
		return
	}
	k := namespacedCount{policy: policy, namespace: namespace}
	t.driftedByNames[k] += n
	metrics.SetDriftedPods(policy, namespace, t.driftedByNames[k])
}

// driftedPods is the number of pods drifted out of policy and still out.
func (t *tally) driftedPods(policy string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.driftedCounts[policy]
}

// seed counts, once, the results of reports written before this process
// started, for the pods not judged yet: after a restart the counts keep
// saying what the reports say, rather than drop to zero until every pod has
// been judged again. Judging a pod corrects its entry, and forgetting it
// removes it, as for any other.
func (t *tally) seed(reports map[types.NamespacedName]map[string]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seeded {
		return
	}
	for pod, results := range reports {
		if _, judged := t.pods[pod]; !judged {
			t.setLocked(pod, results)
		}
	}
	t.seeded = true
}

func (t *tally) setLocked(pod types.NamespacedName, results map[string]string) []string {
	old := t.pods[pod]
	var changed []string
	for policy, r := range old.all() {
		if results[policy] != r {
			t.addLocked(pod.Namespace, policy, r, -1)
			changed = append(changed, policy)
		}
	}
	for policy, r := range results {
		was, found := old.get(policy)
		if was != r {
			t.addLocked(pod.Namespace, policy, r, +1)
			if !found {
				changed = append(changed, policy)
			}
		}
	}
	if len(results) == 0 {
		delete(t.pods, pod)
	} else {
		t.pods[pod] = internResults(results)
	}
	return changed
}

// resultSet is one pod's results, policy by policy, interned: the pods of
// a cluster share a few combinations of results, so the tally keeps one
// copy of each rather than a map per pod (a map per pod was 820 bytes of
// every pod's share of Vigil's heap; BENCHMARKS.md, benchmark 6). It holds
// "policy\x00result\x00" pairs sorted by policy; the names of Kubernetes
// objects and result words hold no NUL.
type resultSet struct{ h unique.Handle[string] }

func internResults(results map[string]string) resultSet {
	var b strings.Builder
	for _, policy := range slices.Sorted(maps.Keys(results)) {
		b.WriteString(policy)
		b.WriteByte(0)
		b.WriteString(results[policy])
		b.WriteByte(0)
	}
	return resultSet{unique.Make(b.String())}
}

// all yields the policies and results of s.
func (s resultSet) all() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		if s == (resultSet{}) { // no results; its handle cannot be read
			return
		}
		rest := s.h.Value()
		for rest != "" {
			policy, after, _ := strings.Cut(rest, "\x00")
			result, after, _ := strings.Cut(after, "\x00")
			if !yield(policy, result) {
				return
			}
			rest = after
		}
	}
}

// get is s's result for policy.
func (s resultSet) get(policy string) (result string, found bool) {
	for p, r := range s.all() {
		if p == policy {
			return r, true
		}
	}
	return "", false
}

func (t *tally) addLocked(namespace, policy, result string, n int) {
	c := t.counts[policy]
	if c == nil {
		c = map[string]int{}
		t.counts[policy] = c
	}
	c[result] += n
	if !metrics.NamespaceLabel() {
		metrics.SetPolicyResults(policy, result, "", c[result])
		return
	}
	k := namespacedCount{policy: policy, result: result, namespace: namespace}
	t.byNamespace[k] += n
	metrics.SetPolicyResults(policy, result, namespace, t.byNamespace[k])
}

// namespacedCount keys the counts behind the namespace label of
// vigil_policy_results and vigil_drifted_pods (result empty), kept only when
// that label is on.
type namespacedCount struct{ policy, result, namespace string }

// count is the number of pods with result for policy.
func (t *tally) count(policy, result string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[policy][result]
}

// forgetPolicy drops the gauge series of a deleted policy once no pod
// carries a result for it any more.
func (t *tally) forgetPolicy(policy string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.counts[policy] {
		if n != 0 {
			return
		}
	}
	metrics.ForgetPolicy(policy)
	delete(t.counts, policy)
	delete(t.driftedCounts, policy) // 0: drifted pods have a result
	for _, m := range []map[namespacedCount]int{t.byNamespace, t.driftedByNames} {
		for k := range m {
			if k.policy == policy {
				delete(m, k)
			}
		}
	}
}
