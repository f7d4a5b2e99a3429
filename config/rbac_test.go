package config_test

// Least privilege (issue 9): what config/rbac grants Vigil's manager, as
// controller-gen writes it from the +kubebuilder:rbac markers, is compared
// with the explicit lists below. A new marker fails this test until its grant
// is added here too, deliberately and in review.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/internal/manager"
)

// grant is one verb on one resource of one API group ("" is core), on the
// object of that name only, or on every object when name is "".
type grant struct{ group, resource, verb, name string }

func (g grant) String() string {
	group := g.group
	if group == "" {
		group = "core"
	}
	if g.name != "" {
		return fmt.Sprintf("%s %s %s (only %s)", group, g.resource, g.verb, g.name)
	}
	return fmt.Sprintf("%s %s %s", group, g.resource, g.verb)
}

func grants(group string, resources []string, verbs ...string) []grant {
	return namedGrants(group, resources, nil, verbs...)
}

// namedGrants are grants on the objects names only (every object when names
// is empty).
func namedGrants(group string, resources, names []string, verbs ...string) []grant {
	if len(names) == 0 {
		names = []string{""}
	}
	var out []grant
	for _, r := range resources {
		for _, v := range verbs {
			for _, n := range names {
				out = append(out, grant{group, r, v, n})
			}
		}
	}
	return out
}

var (
	readVerbs   = []string{"get", "list", "watch"}
	reportVerbs = []string{"create", "delete", "get", "list", "patch", "update", "watch"}
)

// expectedClusterGrants is everything the ClusterRole may grant, cluster-wide.
var expectedClusterGrants = slices.Concat(
	// The verify path judges running pods, and namespaces say which are opted in.
	grants("", []string{"pods", "namespaces"}, readVerbs...),
	grants("policy.sigstore.dev", []string{"clusterimagepolicies"}, readVerbs...),
	// keyless.trustRootRef names a TrustRoot (cluster-scoped); the policy
	// store compiles its policies again when it changes.
	grants("policy.sigstore.dev", []string{"trustroots"}, readVerbs...),
	grants("policy.sigstore.dev", []string{"clusterimagepolicies/status"}, "get", "patch", "update"),
	grants("events.k8s.io", []string{"events"}, "create", "patch"),
	// cert-controller keeps the caBundle of Vigil's webhook configuration,
	// and may write no other (list and watch take no resourceNames).
	grants("admissionregistration.k8s.io", []string{"validatingwebhookconfigurations"}, "get", "list", "watch"),
	namedGrants("admissionregistration.k8s.io", []string{"validatingwebhookconfigurations"}, []string{manager.DefaultWebhookConfigName}, "update", "patch"),
	// The same for the digest-pinning webhook's configuration.
	grants("admissionregistration.k8s.io", []string{"mutatingwebhookconfigurations"}, "get", "list", "watch"),
	namedGrants("admissionregistration.k8s.io", []string{"mutatingwebhookconfigurations"}, []string{manager.DefaultMutatingWebhookConfigName}, "update", "patch"),
	// Signature verification pulls with the pod's credentials, as the
	// kubelet does (authn/kubernetes): its service account and the Secrets
	// it names, by name. get only: no Secret can be listed or watched.
	grants("", []string{"serviceaccounts"}, "get"),
	podPullSecrets,
	// The metrics endpoint authenticates and authorizes each scrape.
	grants("authentication.k8s.io", []string{"tokenreviews"}, "create"),
	grants("authorization.k8s.io", []string{"subjectaccessreviews"}, "create"),
)

// podPullSecrets is the one cluster-wide grant on Secrets: get by name, for
// the pull secrets of the pods whose signatures are verified.
var podPullSecrets = []grant{{"", "secrets", "get", ""}}

// reportGrants is everything ClusterRole vigil-manager-reports grants, by the
// file controller-gen generates it into: the reports of one API, the one in use.
var reportGrants = map[string][]grant{
	"config/rbac/reports/role.yaml":              grants("wgpolicyk8s.io", []string{"policyreports"}, reportVerbs...),
	"config/overlays/openreports/rbac/role.yaml": grants("openreports.io", []string{"reports"}, reportVerbs...),
}

// expectedNamespaceGrants is everything the Role grants in Vigil's namespace:
// its settings, its certificate and its leader-election Lease. No Secret or
// ConfigMap is readable anywhere else.
var expectedNamespaceGrants = slices.Concat(
	grants("", []string{"configmaps"}, readVerbs...),
	grants("", []string{"secrets"}, "get", "list", "watch", "update"),
	grants("coordination.k8s.io", []string{"leases"}, "get", "list", "watch", "create", "update", "patch"),
)

// rulesOf reads the rules of the object of kind and name in objs as grants,
// and fails on a wildcard, a nonResourceURL or a rule without verbs.
func rulesOf(t *testing.T, objs []map[string]any, kind, name string) (namespace string, out []grant) {
	t.Helper()
	var obj map[string]any
	for _, o := range objs {
		if o["kind"] == kind && dig(o, "metadata", "name") == name {
			obj = o
		}
	}
	if obj == nil {
		t.Fatalf("no %s %s", kind, name)
	}
	ns, _ := dig(obj, "metadata", "namespace").(string)
	for i, rule := range asSlice(obj["rules"]) {
		if urls := stringSlice(dig(rule, "nonResourceURLs")); len(urls) > 0 {
			t.Errorf("%s rule %d grants nonResourceURLs %q: the manager needs none", kind, i, urls)
		}
		groups, resources, verbs := stringSlice(dig(rule, "apiGroups")), stringSlice(dig(rule, "resources")), stringSlice(dig(rule, "verbs"))
		names := stringSlice(dig(rule, "resourceNames"))
		for _, s := range slices.Concat(groups, resources, verbs) {
			if strings.Contains(s, "*") {
				t.Errorf("%s rule %d has the wildcard %q: grant exact groups, resources and verbs", kind, i, s)
			}
		}
		for _, g := range groups {
			out = append(out, namedGrants(g, resources, names, verbs...)...)
		}
	}
	return ns, out
}

// compareGrants fails for every grant not in want or optional, and for every
// grant of want missing from got.
func compareGrants(t *testing.T, what string, got, want, optional []grant) {
	t.Helper()
	allowed := map[grant]bool{}
	for _, g := range slices.Concat(want, optional) {
		allowed[g] = true
	}
	have := map[grant]bool{}
	var extra, missing []string
	for _, g := range got {
		have[g] = true
		if !allowed[g] {
			extra = append(extra, g.String())
		}
	}
	for _, g := range want {
		if !have[g] {
			missing = append(missing, g.String())
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	if len(extra) > 0 {
		t.Errorf("%s grants more than expected:\n  %s\nIf Vigil really needs it, add it deliberately to the expected list in config/rbac_test.go (least privilege, issue 9).",
			what, strings.Join(slices.Compact(extra), "\n  "))
	}
	if len(missing) > 0 {
		t.Errorf("%s no longer grants:\n  %s\nRemove it from the expected list in config/rbac_test.go if that is intended.",
			what, strings.Join(slices.Compact(missing), "\n  "))
	}
}

func TestRBACLeastPrivilege(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeAll(t, data)

	_, cluster := rulesOf(t, objs, "ClusterRole", "vigil-manager-role")
	compareGrants(t, "ClusterRole vigil-manager-role", cluster, expectedClusterGrants, nil)

	ns, namespaced := rulesOf(t, objs, "Role", "vigil-manager-role")
	if ns != manager.DefaultNamespace {
		t.Errorf("Role vigil-manager-role is in namespace %q, want %q", ns, manager.DefaultNamespace)
	}
	compareGrants(t, "Role vigil-manager-role in "+ns, namespaced, expectedNamespaceGrants, nil)

	// Secrets and ConfigMaps are never granted cluster-wide, but for reading
	// a pod's pull secrets by name.
	for _, g := range cluster {
		if g.group == "" && (g.resource == "secrets" || g.resource == "configmaps") && !slices.Contains(podPullSecrets, g) {
			t.Errorf("the ClusterRole grants %s: Secrets and ConfigMaps are only for Vigil's namespace", g)
		}
	}
	for _, o := range objs {
		if k := o["kind"]; k != "ClusterRole" && k != "Role" {
			t.Errorf("config/rbac/role.yaml holds a %v: expected only the generated ClusterRole and Role", k)
		}
	}
}

// TestRBACReportRoles: ClusterRole vigil-manager-reports grants the reports
// of one API, as generated for each: wgpolicyk8s.io in config/rbac, and
// openreports.io for config/overlays/openreports (TestOpenReportsOverlay
// checks what that overlay renders).
func TestRBACReportRoles(t *testing.T) {
	for file, want := range reportGrants {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(repoRoot(t), file))
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeAll(t, data)
			if len(objs) != 1 {
				t.Fatalf("%s holds %d objects, want ClusterRole vigil-manager-reports only", file, len(objs))
			}
			_, got := rulesOf(t, objs, "ClusterRole", "vigil-manager-reports")
			compareGrants(t, "ClusterRole vigil-manager-reports of "+file, got, want, nil)
		})
	}
}

// TestRBACMetricsReader: the ClusterRole for scrapers grants reading /metrics
// and nothing else, and the manager's role is bound to its ServiceAccount only.
func TestRBACMetricsReader(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "metrics_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeAll(t, data)
	if len(objs) != 1 {
		t.Fatalf("metrics_reader_role.yaml holds %d objects, want 1", len(objs))
	}
	rules := asSlice(objs[0]["rules"])
	if len(rules) != 1 || !slices.Equal(stringSlice(dig(rules[0], "nonResourceURLs")), []string{"/metrics"}) ||
		!slices.Equal(stringSlice(dig(rules[0], "verbs")), []string{"get"}) || dig(rules[0], "resources") != nil {
		t.Errorf("vigil-metrics-reader rules = %v, want only get on /metrics", rules)
	}

	data, err = os.ReadFile(filepath.Join(root, "config", "rbac", "role_binding.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range decodeAll(t, data) {
		for _, s := range asSlice(b["subjects"]) {
			if dig(s, "kind") != "ServiceAccount" || dig(s, "name") != "vigil-controller" {
				t.Errorf("%v %v binds %v: want only the ServiceAccount vigil-controller", b["kind"], dig(b, "metadata", "name"), s)
			}
		}
	}
}
