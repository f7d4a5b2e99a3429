package verify

import (
	"testing"
	"time"
)

// Background requests leave the reserve to admission; admission always
// gets a token (waiting when the bucket is empty) and holds background back
// while it waits.
func TestLimiterLanes(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	l := newLimiter(1000, 1000, 1, 4, 0.5) // the per-registry bucket binds: 1/s, burst 4, reserve 2
	for i := range 2 {
		if _, ok, _ := l.take(now, LaneBackground, "r.example"); !ok {
			t.Fatalf("background request %d was held with tokens to spare", i)
		}
	}
	wait, ok, _ := l.take(now, LaneBackground, "r.example")
	if ok || wait != time.Second {
		t.Fatalf("background took the admission reserve: ok=%v wait=%v", ok, wait)
	}
	for i := range 2 {
		if wait, ok, _ := l.take(now, LaneAdmission, "r.example"); !ok || wait != 0 {
			t.Fatalf("admission request %d waited %v with the reserve there", i, wait)
		}
	}
	wait, ok, _ = l.take(now, LaneAdmission, "r.example")
	if !ok || wait != time.Second {
		t.Fatalf("admission on an empty bucket: ok=%v wait=%v, want a token in 1s", ok, wait)
	}
	// Admission now owes a token: background waits for the reserve to refill.
	if wait, ok, _ := l.take(now.Add(time.Second), LaneBackground, "r.example"); ok || wait != 3*time.Second {
		t.Fatalf("background while admission is queued: ok=%v wait=%v", ok, wait)
	}
	// Another registry has its own bucket.
	if _, ok, _ := l.take(now, LaneBackground, "other.example"); !ok {
		t.Fatal("another registry shares the bucket")
	}
	// A cancelled admission reservation gives its token back.
	_, _, cancel := l.take(now, LaneAdmission, "third.example")
	cancel()
	for i := range 2 {
		if _, ok, _ := l.take(now, LaneBackground, "third.example"); !ok {
			t.Fatalf("background %d after a cancelled admission was held", i)
		}
	}
}
