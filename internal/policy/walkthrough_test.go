package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestWalkthrough replays the reference walkthrough (shared/seed): the guide's
// policy denies the NET_ADMIN pod with policy-controller's message, admits the
// fixed pod, and with no policy at all the no-match denial appears.
func TestWalkthrough(t *testing.T) {
	seed := sharedDir(t, "seed")
	cip := readCIP(t, filepath.Join(seed, "cip.yaml"))

	t.Run("net-admin is denied", func(t *testing.T) {
		d := decide(t, readObject(t, filepath.Join(seed, "pod-net-admin.yaml")), Options{}, cip)
		if d.Allowed {
			t.Fatal("allowed, want denied")
		}
		want := "failed policy: non-default-capabilities-cue: spec.containers[0].image\n" +
			"docker.io/ubuntu failed evaluating cue policy for ClusterImagePolicy: failed to evaluate the policy with error: " +
			"spec.containers.0.securityContext.capabilities.add.0: 13 errors in empty disjunction: (and 13 more errors)"
		if d.DenyMessage != want {
			t.Errorf("DenyMessage:\n%s\nwant:\n%s", d.DenyMessage, want)
		}
		if got := d.DenialReason(); got != "validation failed: "+want {
			t.Errorf("DenialReason = %q", got)
		}
		if len(d.Results) != 1 || d.Results[0].Result != ResultFail || d.Results[0].Message != want {
			t.Fatalf("Results = %+v", d.Results)
		}
		wantExpl := `container "app" (docker.io/ubuntu) adds capability NET_ADMIN, which non-default-capabilities-cue does not allow`
		if d.Results[0].Explanation != wantExpl {
			t.Errorf("Explanation = %q, want %q", d.Results[0].Explanation, wantExpl)
		}
	})

	t.Run("fixed pod is admitted", func(t *testing.T) {
		d := decide(t, readObject(t, filepath.Join(seed, "pod-fixed.yaml")), Options{}, cip)
		if !d.Allowed || d.DenyMessage != "" || len(d.Warnings) != 0 {
			t.Fatalf("decision = %+v, want allowed without warnings", d)
		}
		if len(d.Results) != 1 || d.Results[0].Result != ResultPass {
			t.Fatalf("Results = %+v", d.Results)
		}
	})

	t.Run("no policy denies", func(t *testing.T) {
		obj, err := DecodeObject([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"nginx"},
			"spec":{"containers":[{"name":"nginx","image":"cgr.dev/chainguard/nginx:latest"}]}}`))
		if err != nil {
			t.Fatal(err)
		}
		d := NewSet(nil, nil).Decide(t.Context(), obj, Options{})
		want := "no matching policies: spec.containers[0].image\ncgr.dev/chainguard/nginx:latest"
		if d.Allowed || d.DenyMessage != want {
			t.Fatalf("decision = %+v, want denied with %q", d, want)
		}
		if len(d.Results) != 1 || d.Results[0].Policy != NoMatchingPolicies || d.Results[0].Result != ResultFail {
			t.Fatalf("Results = %+v", d.Results)
		}
		if !strings.Contains(d.Results[0].Explanation, "not covered") {
			t.Errorf("Explanation = %q", d.Results[0].Explanation)
		}
	})
}
