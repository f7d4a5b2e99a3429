package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-dev/vigil/internal/metrics"
)

// tally counts the current result of every judged pod per policy: the
// vigil_policy_results gauge and the pod counts in ClusterImagePolicy status
// come from it, so they agree with the reports by construction.
type tally struct {
	mu          sync.Mutex
	pods        map[types.NamespacedName]map[string]string // pod -> policy -> result
	counts      map[string]map[string]int                  // policy -> result -> pods
	byNamespace map[namespacedCount]int
	// seeded is set once the reports found at start are counted.
	seeded bool
}

func newTally() *tally {
	return &tally{
		pods:        map[types.NamespacedName]map[string]string{},
		counts:      map[string]map[string]int{},
		byNamespace: map[namespacedCount]int{},
	}
}

// set records pod's results (nil: the pod is no longer judged) and returns the
// policies whose counts changed.
func (t *tally) set(pod types.NamespacedName, results map[string]string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.setLocked(pod, results)
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
	for policy, r := range old {
		if results[policy] != r {
			t.addLocked(pod.Namespace, policy, r, -1)
			changed = append(changed, policy)
		}
	}
	for policy, r := range results {
		if old[policy] != r {
			t.addLocked(pod.Namespace, policy, r, +1)
			if _, had := old[policy]; !had {
				changed = append(changed, policy)
			}
		}
	}
	if len(results) == 0 {
		delete(t.pods, pod)
	} else {
		t.pods[pod] = results
	}
	return changed
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
// vigil_policy_results, kept only when that label is on.
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
	for k := range t.byNamespace {
		if k.policy == policy {
			delete(t.byNamespace, k)
		}
	}
}
