package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// ownWrites tells the report events that Vigil's own writes caused from the
// others, so that a report Vigil just wrote does not queue its pod to be
// judged again, while a report someone else changed or deleted does (and is
// put right).
//
// Before writing a report, the pod reconciler notes the fingerprint of what
// it writes (report.Fingerprint); an event whose report has that
// fingerprint says what Vigil wants it to say, whoever wrote it, and needs
// nothing. An entry lives from a write to the event that shows it, or to the
// write's failure, so the map holds the writes in flight, not one entry per
// report.
type ownWrites struct {
	mu      sync.Mutex
	pending map[types.NamespacedName]string // report -> fingerprint written; "" for a deletion
}

func newOwnWrites() *ownWrites {
	return &ownWrites{pending: map[types.NamespacedName]string{}}
}

// expect notes that Vigil is about to write the report key with fingerprint.
func (o *ownWrites) expect(key types.NamespacedName, fingerprint string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending[key] = fingerprint
}

// expectDeletion notes that Vigil is about to delete the report key.
func (o *ownWrites) expectDeletion(key types.NamespacedName) { o.expect(key, "") }

// cancel forgets a write that failed: no event of it will come.
func (o *ownWrites) cancel(key types.NamespacedName) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.pending, key)
}

// written says whether an event showing the report key with fingerprint
// is Vigil's own write landing, and forgets the write if so. A report that
// differs was written by someone else, or is an older state arriving first;
// Vigil's own write is still expected then.
func (o *ownWrites) written(key types.NamespacedName, fingerprint string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	want, ok := o.pending[key]
	if !ok || want == "" || want != fingerprint {
		return false
	}
	delete(o.pending, key)
	return true
}

// deleted says whether the deletion of the report key is Vigil's own, and
// forgets it either way: nothing more of that report will come.
func (o *ownWrites) deleted(key types.NamespacedName) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	want, ok := o.pending[key]
	delete(o.pending, key)
	return ok && want == ""
}
