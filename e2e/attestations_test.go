package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/testenv"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// The timing of TestScanAge: the policy allows scans scanMaxAge old, long
// enough for the pod to be admitted and reported on a shared machine;
// vigil dev runs with --clock-recheck scanClockRecheck and
// --verification-pass-ttl scanPassTTL, far below their defaults (5 minutes
// and an hour), so that only the flags can make the waits below, which
// allow scanMargin beyond each bound for a shared machine.
const (
	scanMaxAge       = 30 * time.Second
	scanClockRecheck = 5 * time.Second
	scanPassTTL      = 10 * time.Second
	scanMargin       = 30 * time.Second
)

// TestScanAge is issue 18's end-to-end proof against `vigil dev`, with an
// image attested by the real cosign CLI with a vulnerability scan, under
// the catalog's maximum-scan-age policy (its Rego, with a maximum age of
// seconds instead of 15 days): the pod is admitted and its report passes;
// with nothing changed in the cluster, the report turns fail once the scan
// is too old, not before, with a PolicyViolation event that says time
// passed, drift, and a fail counted under trigger "time"; a fresh scan,
// attested again, turns it pass within the pass TTL.
//
// The pass TTL governs the fresh scan, not the failure TTL (left at its
// default of 10 minutes): the verifier's answer is a pass, the verified
// statements, which it caches for the pass TTL; it is the attestation
// policy that fails them, at every judgement, and it sees the new
// statement once that pass has expired.
func TestScanAge(t *testing.T) {
	testenv.EndToEnd(t)
	tools := newSigningTools(t)
	d := startDev(t, "--clock-recheck", scanClockRecheck.String(), "--verification-pass-ttl", scanPassTTL.String())
	reg := devRegistry(t, d)
	key, pub := tools.cosign.GenerateKey(t)
	const ns, policy = "scan-age", "scan-age"
	d.namespace(t, ns, true)
	d.deleteCIPsAtCleanup(t, policy)
	img := tools.push(t, reg+"/scan-age/app:1", "scanned")
	d.apply(t, scanAgePolicy(policy, reg+"/scan-age/**", pub, scanMaxAge))

	scanned := attestScan(t, tools, key, img)
	limit := scanned.Add(scanMaxAge)
	uid := runPassingPod(t, d, ns, "app", img.String(), policy)
	t.Logf("the pod's report passed %s after the scan finished (maximum age %s)", time.Since(scanned).Round(100*time.Millisecond), scanMaxAge)
	timeFails := map[string]string{"trigger": "time", "result": "fail"}
	if n := metricValue(t, d, "vigil_evaluations_total", timeFails); n != 0 {
		t.Fatalf("vigil_evaluations_total%v = %v before the scan aged, want 0", timeFails, n)
	}
	driftBefore := metricValue(t, d, "vigil_drift_total", map[string]string{"policy": policy})

	rep := waitReportWithin(t, d, ns, uid, time.Until(limit)+scanClockRecheck+scanMargin, "the report to turn fail as the scan ages",
		func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, policy) == reportsv1alpha2.ResultFail
		})
	failed := time.Now()
	t.Logf("the report turned fail %s after the scan reached its maximum age (--clock-recheck %s; seen within %s by polling)",
		failed.Sub(limit).Round(100*time.Millisecond), scanClockRecheck, pollInterval)
	if failed.Before(limit) {
		t.Errorf("the report turned fail at %s, before the scan reached its maximum age at %s",
			failed.Format(time.RFC3339Nano), limit.Format(time.RFC3339Nano))
	}
	if msg := findResult(rep, policy).Description; !strings.Contains(msg, "Scan exceeds maximum allowed age.") || !strings.Contains(msg, img.String()) {
		t.Errorf("result message %q: want the image and the policy's \"Scan exceeds maximum allowed age.\"", msg)
	}
	ev := waitEvent(t, d, ns, uid, "Warning", "PolicyViolation")
	if !strings.Contains(ev.Message, policy) || !strings.Contains(ev.Message, "judged again as time passed") {
		t.Errorf("PolicyViolation event %q: want the policy and that the pod was judged again as time passed", ev.Message)
	}
	waitMetric(t, d, "vigil_drift_total", map[string]string{"policy": policy}, fmt.Sprintf("> %v", driftBefore),
		func(v float64, _ bool) bool { return v > driftBefore })
	waitMetric(t, d, "vigil_evaluations_total", timeFails, "> 0", func(v float64, _ bool) bool { return v > 0 })

	rescanned := attestScan(t, tools, key, img)
	waitReportWithin(t, d, ns, uid, scanPassTTL+scanMargin, "the report to turn pass after a fresh scan",
		func(rep *reportsv1alpha2.PolicyReport) bool {
			return resultOf(rep, policy) == reportsv1alpha2.ResultPass
		})
	t.Logf("the report turned pass %s after a fresh scan was attested (--verification-pass-ttl %s)",
		time.Since(rescanned).Round(100*time.Millisecond), scanPassTTL)
	ev = waitEvent(t, d, ns, uid, "Normal", "PolicyCompliant")
	if !strings.Contains(ev.Message, policy) {
		t.Errorf("PolicyCompliant event %q does not name %s", ev.Message, policy)
	}
}

// attestScan attests img with a vulnerability scan (no findings) finished
// now, to the second as the predicate states it, and returns that time.
func attestScan(t testing.TB, tools *signingTools, key string, img name.Digest) time.Time {
	t.Helper()
	scanned := time.Now().Truncate(time.Second)
	tools.cosign.Attest(t, key, img, false, "vuln", verifytest.VulnPredicate(scanned, 0, 0))
	return scanned
}

// scanAgePolicy requires glob's images to carry a vulnerability scan
// attested with the key pub and at most maxAge old (whole seconds): the
// catalog's vuln-maximum-scan-age-rego, whose Rego allows 15 days, with a
// key authority instead of its keyless one.
func scanAgePolicy(policy, glob string, pub []byte, maxAge time.Duration) string {
	return fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: %s
spec:
  images: [glob: '%s']
  authorities:
  - name: scanner
    key:
      data: |
%s    attestations:
    - name: vuln-report-scan-max-age
      predicateType: vuln
      policy:
        type: rego
        data: |
          package sigstore
          nanosecs_per_second = 1000 * 1000 * 1000
          maximum_age = %d * nanosecs_per_second

          isCompliant[response] {
            created := time.parse_rfc3339_ns(input.predicate.metadata.scanFinishedOn)
            response := {
              "result" : time.now_ns() < created + maximum_age,
              "error" : "Scan exceeds maximum allowed age."
            }
          }
`, policy, glob, indentLines(pub, "        "), int64(maxAge/time.Second))
}
