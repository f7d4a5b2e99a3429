package controllers

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// staleReports remembers, per pod, the names of reports that may not be
// the report of the pod as it is now: every report the watch shows, and the
// report of every pod seen deleted (a report is named after its pod's UID).
// The pod reconciler deletes those that are not, and forgets them all.
//
// It stands in for an index of the cached reports by pod, which client-go
// would keep as two sets per pod, about a tenth of Vigil's memory per pod,
// for the rare report that outlives its pod. An entry lives from an event
// to the reconciliation that event queues.
type staleReports struct {
	mu    sync.Mutex
	names map[types.NamespacedName][]string
}

func newStaleReports() *staleReports {
	return &staleReports{names: map[types.NamespacedName][]string{}}
}

// add notes that report may be a report of an earlier pod named pod.
func (s *staleReports) add(pod types.NamespacedName, report string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.names[pod], report) {
		s.names[pod] = append(s.names[pod], report)
	}
}

// get returns the names noted for pod.
func (s *staleReports) get(pod types.NamespacedName) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.names[pod])
}

// pods are the pods that have names noted.
func (s *staleReports) pods() []types.NamespacedName {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]types.NamespacedName, 0, len(s.names))
	for pod := range s.names {
		out = append(out, pod)
	}
	return out
}

// done forgets the names of pod that were handled; names noted meanwhile
// stay for the reconciliation their event queued.
func (s *staleReports) done(pod types.NamespacedName, handled []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	left := slices.DeleteFunc(s.names[pod], func(n string) bool { return slices.Contains(handled, n) })
	if len(left) == 0 {
		delete(s.names, pod)
		return
	}
	s.names[pod] = left
}
