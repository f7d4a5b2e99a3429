package e2e

import (
	"fmt"
	"strings"
	"testing"

	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// TestWebhookDown takes Vigil's pod webhook away from kube-apiserver by
// pointing its configuration at a closed port, as when every replica is
// down. With failurePolicy Fail, pods of opted-in namespaces are refused
// with a message that says why, and other namespaces carry on; with Ignore,
// a violating pod gets in, and the verify path flags it all the same.
func TestWebhookDown(t *testing.T) {
	testenv.EndToEnd(t)
	d := startDev(t)
	const vwc = "vigil-validating-webhook-configuration"
	d.namespace(t, "down-in", true)
	d.namespace(t, "down-out", false)
	d.deleteCIPsAtCleanup(t, "down-caps")
	d.apply(t, capsPolicy("down-caps", "example.com/down/**"))
	pod := func(ns, name, capability string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  containers:
  - name: app
    image: example.com/down/app:1
    securityContext: {capabilities: {add: [%s]}}
`, name, ns, capability)
	}
	url := d.MustKubectl(t, "get", "validatingwebhookconfiguration", vwc, "-o", "jsonpath={.webhooks[0].clientConfig.url}")
	patch := func(op string) {
		d.run(t, "", "patch", "validatingwebhookconfiguration", vwc, "--type=json", "-p", op).mustSucceed(t)
	}
	patch(`[{"op":"replace","path":"/webhooks/0/clientConfig/url","value":"https://127.0.0.1:1/validations"}]`)

	// failurePolicy Fail: refused, with the webhook's name and the reason.
	var refused kubectlResult
	waitFor(t, waitTimeout, "kube-apiserver to call the unreachable webhook", func() (bool, string) {
		refused = d.run(t, pod("down-in", "refused", "CHOWN"), "create", "--dry-run=server", "-f", "-")
		return refused.Code != 0 && strings.Contains(refused.Stderr, "failed calling webhook"), refused.String()
	})
	for _, want := range []string{`Internal error occurred: failed calling webhook "policy.sigstore.dev"`, "127.0.0.1:1", "connection refused"} {
		if !strings.Contains(refused.Stderr, want) {
			t.Errorf("refusal %q does not say %q", refused.Stderr, want)
		}
	}
	d.run(t, pod("down-out", "other", "NET_ADMIN"), "create", "-f", "-").mustSucceed(t)

	// failurePolicy Ignore: the violating pod is admitted unjudged...
	patch(`[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]`)
	var admitted kubectlResult
	waitFor(t, waitTimeout, "kube-apiserver to ignore the unreachable webhook", func() (bool, string) {
		admitted = d.run(t, pod("down-in", "slipped", "NET_ADMIN"), "create", "-f", "-")
		return admitted.Code == 0, admitted.String()
	})

	// ...and the verify path, which does not depend on the webhook, flags it.
	uid := podUID(t, d, "down-in", "slipped")
	rep := waitReport(t, d, "down-in", uid, "the slipped pod's report to fail down-caps", func(r *reportsv1alpha2.PolicyReport) bool {
		return resultOf(r, "down-caps") == reportsv1alpha2.ResultFail
	})
	if msg := findResult(rep, "down-caps").Description; !strings.Contains(msg, "NET_ADMIN") {
		t.Errorf("result message %q does not name NET_ADMIN", msg)
	}
	waitEvent(t, d, "down-in", uid, "Warning", "PolicyViolation")

	// The webhook back: the same pod is denied again.
	patch(fmt.Sprintf(`[{"op":"replace","path":"/webhooks/0/clientConfig/url","value":%q},{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Fail"}]`, url))
	waitFor(t, waitTimeout, "the webhook to judge again", func() (bool, string) {
		r := d.run(t, pod("down-in", "again", "NET_ADMIN"), "create", "--dry-run=server", "-f", "-")
		return r.Code != 0 && strings.Contains(r.Stderr, "failed policy: down-caps"), r.String()
	})
}
