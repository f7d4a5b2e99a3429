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
//
// A write that landed also leaves the version the API server stored it at,
// until its event comes: a report judged again in that moment is updated at
// that version, not at the older one the report watch still shows.
type ownWrites struct {
	mu      sync.Mutex
	pending map[types.NamespacedName]ownWrite
}

// ownWrite is one write in flight.
type ownWrite struct {
	fingerprint string // what was written; "" for a deletion
	version     string // the version it landed at; "" until then
}

func newOwnWrites() *ownWrites {
	return &ownWrites{pending: map[types.NamespacedName]ownWrite{}}
}

// expect notes that Vigil is about to write the report key with fingerprint.
func (o *ownWrites) expect(key types.NamespacedName, fingerprint string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.pending[key]
	w.fingerprint = fingerprint
	o.pending[key] = w
}

// landed notes the version the write of the report key was stored at.
func (o *ownWrites) landed(key types.NamespacedName, version string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w, ok := o.pending[key]; ok {
		w.version = version
		o.pending[key] = w
	}
}

// version is the version of the report key that Vigil's last write landed
// at, when the report watch has not shown it yet; else held, the version
// the watch showed.
func (o *ownWrites) version(key types.NamespacedName, held string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w := o.pending[key]; w.version != "" {
		return w.version
	}
	return held
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
	if !ok || want.fingerprint == "" || want.fingerprint != fingerprint {
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
	return ok && want.fingerprint == ""
}
