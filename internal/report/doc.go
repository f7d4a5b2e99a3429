// Package report owns what a Vigil report is: the report that states a
// decision for a pod (Desired), the two APIs it may be stored in
// (wgpolicyk8s.io PolicyReports and openreports.io Reports), the compact form
// Vigil's cache keeps and the content identity it rests on (Compact,
// Fingerprint), and the rules for what a new decision means against the
// report that stands: which results changed, which of those are drift, and
// whether anything needs writing (Plan).
//
// Everything here is pure: no client, no clock of its own, no metrics. The
// reconcilers fetch, call Plan, apply what it returns and announce its
// transitions.
package report
