// Tests of what platform teams install: config/default (kustomize), the
// overlay beside policy-controller and the Helm chart render, agree with each
// other, are accepted by a real kube-apiserver, and run Vigil's manager with a
// pod spec that passes the restricted Pod Security policies Vigil itself enforces.
package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	apiyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/report"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// What config/default installs: the contract that docs/install.md, the chart
// and the manager's flag defaults share.
var defaultObjects = []objectKey{
	{"Namespace", "", manager.DefaultNamespace},
	{"CustomResourceDefinition", "", "clusterimagepolicies.policy.sigstore.dev"},
	{"CustomResourceDefinition", "", "trustroots.policy.sigstore.dev"},
	{"CustomResourceDefinition", "", "policyreports.wgpolicyk8s.io"},
	{"CustomResourceDefinition", "", "clusterpolicyreports.wgpolicyk8s.io"},
	{"ServiceAccount", manager.DefaultNamespace, "vigil-controller"},
	{"ClusterRole", "", "vigil-manager-role"},
	{"Role", manager.DefaultNamespace, "vigil-manager-role"},
	{"ClusterRoleBinding", "", "vigil-manager-rolebinding"},
	{"RoleBinding", manager.DefaultNamespace, "vigil-manager-rolebinding"},
	{"ClusterRole", "", "vigil-manager-reports"},
	{"ClusterRoleBinding", "", "vigil-manager-reports"},
	{"ClusterRole", "", "vigil-metrics-reader"},
	{"ConfigMap", manager.DefaultNamespace, "config-policy-controller"},
	{"Deployment", manager.DefaultNamespace, "vigil-controller"},
	{"PodDisruptionBudget", manager.DefaultNamespace, "vigil-controller"},
	{"Service", manager.DefaultNamespace, "vigil-controller-metrics-service"},
	{"Service", manager.DefaultNamespace, manager.DefaultServiceName},
	{"Secret", manager.DefaultNamespace, manager.DefaultCertSecretName},
	{"ValidatingWebhookConfiguration", "", manager.DefaultWebhookConfigName},
	{"MutatingWebhookConfiguration", "", manager.DefaultMutatingWebhookConfigName},
	// API priority and fairness for Vigil's requests (docs/scale.md).
	{"PriorityLevelConfiguration", "", "vigil"},
	{"FlowSchema", "", "vigil"},
	{"FlowSchema", "", "vigil-leader-election"},
}

// What the overlay beside policy-controller leaves out of config/default.
var webhookObjects = []objectKey{
	{"ValidatingWebhookConfiguration", "", manager.DefaultWebhookConfigName},
	{"MutatingWebhookConfiguration", "", manager.DefaultMutatingWebhookConfigName},
	{"Service", manager.DefaultNamespace, manager.DefaultServiceName},
	{"Secret", manager.DefaultNamespace, manager.DefaultCertSecretName},
}

// The CRDs policy-controller owns too, which the overlay beside it leaves out.
var (
	clusterImagePolicyCRD = objectKey{"CustomResourceDefinition", "", "clusterimagepolicies.policy.sigstore.dev"}
	trustRootCRD          = objectKey{"CustomResourceDefinition", "", "trustroots.policy.sigstore.dev"}
)

// What the openreports overlay adds to config/default.
var openReportsCRDs = []objectKey{
	{"CustomResourceDefinition", "", "reports.openreports.io"},
	{"CustomResourceDefinition", "", "clusterreports.openreports.io"},
}

const (
	defaultDir     = "config/default"
	besideDir      = "config/overlays/beside-policy-controller"
	openReportsDir = "config/overlays/openreports"
	chartDir       = "charts/vigil"
	// The manager's --cert-dir default, where the certificate Secret is mounted.
	certDir = "/tmp/k8s-webhook-server/serving-certs"
)

func TestKustomizeDefaultRenders(t *testing.T) {
	testenv.Integration(t)
	objs := kustomize(t, defaultDir)
	assertKeys(t, objs, defaultObjects)
}

func TestDefaultManagerIsHighlyAvailable(t *testing.T) {
	testenv.Integration(t)
	objs := byKey(kustomize(t, defaultDir))
	dep := objs[objectKey{"Deployment", manager.DefaultNamespace, "vigil-controller"}]
	podLabels := stringMap(dig(dep, "spec", "template", "metadata", "labels"))

	if n, _ := dig(dep, "spec", "replicas").(float64); n < 2 {
		t.Errorf("Deployment replicas = %v, want at least 2 so that admission survives one restart", n)
	}
	if sel := stringMap(dig(dep, "spec", "selector", "matchLabels")); !selects(sel, podLabels) {
		t.Errorf("Deployment selector %v does not select its pods %v", sel, podLabels)
	}
	c := container(t, dep)
	args := stringSlice(c["args"])
	if len(args) == 0 || args[0] != "controller" || !slices.Contains(args, "--leader-elect") {
		t.Errorf("manager args = %q, want `controller --leader-elect ...`", args)
	}
	for _, probe := range []struct{ field, path string }{{"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}} {
		if got := dig(c, probe.field, "httpGet", "path"); got != probe.path {
			t.Errorf("%s path = %v, want %s", probe.field, got, probe.path)
		}
	}
	for _, r := range []string{"requests", "limits"} {
		for _, res := range []string{"cpu", "memory"} {
			if dig(c, "resources", r, res) == nil {
				t.Errorf("manager has no resources.%s.%s", r, res)
			}
		}
	}
	anti, _ := dig(dep, "spec", "template", "spec", "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution").([]any)
	if len(anti) == 0 || dig(anti[0], "podAffinityTerm", "topologyKey") != "kubernetes.io/hostname" ||
		!selects(stringMap(dig(anti[0], "podAffinityTerm", "labelSelector", "matchLabels")), podLabels) {
		t.Errorf("no preferred pod anti-affinity on kubernetes.io/hostname selecting the manager's pods: %v", anti)
	}
	pdb := objs[objectKey{"PodDisruptionBudget", manager.DefaultNamespace, "vigil-controller"}]
	if dig(pdb, "spec", "minAvailable") != float64(1) || !selects(stringMap(dig(pdb, "spec", "selector", "matchLabels")), podLabels) {
		t.Errorf("PodDisruptionBudget wants minAvailable 1 over the manager's pods: %v", pdb["spec"])
	}

	// Every Service selects the manager's pods and targets a port they declare.
	ports := map[string]bool{}
	for _, p := range asSlice(c["ports"]) {
		ports[fmt.Sprint(dig(p, "name"))] = true
	}
	for _, name := range []string{"vigil-controller-metrics-service", manager.DefaultServiceName} {
		svc := objs[objectKey{"Service", manager.DefaultNamespace, name}]
		if !selects(stringMap(dig(svc, "spec", "selector")), podLabels) {
			t.Errorf("Service %s selector %v does not select the manager's pods %v", name, dig(svc, "spec", "selector"), podLabels)
		}
		for _, p := range asSlice(dig(svc, "spec", "ports")) {
			if !ports[fmt.Sprint(dig(p, "targetPort"))] {
				t.Errorf("Service %s targets port %v, which the manager does not declare", name, dig(p, "targetPort"))
			}
		}
	}

	// cert-controller waits for the certificate in --cert-dir: the Secret
	// must be mounted there.
	certVolume := ""
	for _, v := range asSlice(dig(dep, "spec", "template", "spec", "volumes")) {
		if dig(v, "secret", "secretName") == manager.DefaultCertSecretName {
			certVolume = fmt.Sprint(dig(v, "name"))
		}
	}
	mounted := false
	for _, m := range asSlice(c["volumeMounts"]) {
		if dig(m, "name") == certVolume && dig(m, "mountPath") == certDir {
			mounted = true
		}
	}
	if certVolume == "" || !mounted {
		t.Errorf("the Secret %s is not mounted at %s", manager.DefaultCertSecretName, certDir)
	}
}

func TestBesidePolicyControllerOverlay(t *testing.T) {
	testenv.Integration(t)
	objs := kustomize(t, besideDir)
	var want []objectKey
	for _, k := range defaultObjects {
		if k != clusterImagePolicyCRD && k != trustRootCRD && !slices.Contains(webhookObjects, k) {
			want = append(want, k)
		}
	}
	assertKeys(t, objs, want)

	dep := byKey(objs)[objectKey{"Deployment", manager.DefaultNamespace, "vigil-controller"}]
	c := container(t, dep)
	if args := stringSlice(c["args"]); !slices.Contains(args, "--webhook-port=-1") {
		t.Errorf("manager args = %q, want --webhook-port=-1", args)
	}
	for _, p := range asSlice(c["ports"]) {
		if dig(p, "containerPort") == float64(9443) {
			t.Errorf("the manager still declares the webhook port: %v", p)
		}
	}
	for _, v := range asSlice(dig(dep, "spec", "template", "spec", "volumes")) {
		if dig(v, "secret", "secretName") == manager.DefaultCertSecretName {
			t.Errorf("the manager still mounts the certificate Secret, which the overlay does not install: %v", v)
		}
	}
}

func TestOpenReportsOverlay(t *testing.T) {
	testenv.Integration(t)
	objs := kustomize(t, openReportsDir)
	assertKeys(t, objs, append(slices.Clone(defaultObjects), openReportsCRDs...))

	dep := byKey(objs)[objectKey{"Deployment", manager.DefaultNamespace, "vigil-controller"}]
	if args := stringSlice(container(t, dep)["args"]); !slices.Contains(args, "--report-api="+string(report.OpenReports)) {
		t.Errorf("manager args = %q, want --report-api=%s", args, report.OpenReports)
	}
}

// TestReportRBACFollowsTheReportAPI: Vigil may write the reports of the API
// it uses and no other, with config/default, the openreports overlay and the
// chart's reportAPI value alike.
func TestReportRBACFollowsTheReportAPI(t *testing.T) {
	testenv.Integration(t)
	key := objectKey{"ClusterRole", "", "vigil-manager-reports"}
	for _, c := range []struct {
		name    string
		objs    func(t *testing.T) []map[string]any
		allowed string
	}{
		{"config/default", func(t *testing.T) []map[string]any { return kustomize(t, defaultDir) }, "wgpolicyk8s.io"},
		{openReportsDir, func(t *testing.T) []map[string]any { return kustomize(t, openReportsDir) }, "openreports.io"},
		{"chart", func(t *testing.T) []map[string]any { return helmTemplate(t) }, "wgpolicyk8s.io"},
		{"chart with reportAPI=" + string(report.OpenReports), func(t *testing.T) []map[string]any {
			return helmTemplate(t, "--set", "reportAPI="+string(report.OpenReports))
		}, "openreports.io"},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := c.objs(t)
			var groups []string
			for _, o := range objs {
				if k := keyOf(o); k.Kind != "ClusterRole" && k.Kind != "Role" {
					continue
				}
				for _, r := range asSlice(o["rules"]) {
					for _, g := range stringSlice(dig(r, "apiGroups")) {
						if g == "wgpolicyk8s.io" || g == "openreports.io" {
							groups = append(groups, fmt.Sprintf("%s in %s", g, keyOf(o)))
						}
					}
				}
			}
			if want := []string{c.allowed + " in " + key.String()}; !slices.Equal(groups, want) {
				t.Errorf("report API rules: %q, want %q", groups, want)
			}
		})
	}
}

// TestManagerMemoryLimit: the manager learns its container's memory limit
// from the downward API, and Go's soft limit at the default percentage
// leaves room for the policy compile child within it.
func TestManagerMemoryLimit(t *testing.T) {
	testenv.Integration(t)
	for name, objs := range map[string]func(t *testing.T) []map[string]any{
		defaultDir: func(t *testing.T) []map[string]any { return kustomize(t, defaultDir) },
		chartDir:   func(t *testing.T) []map[string]any { return helmTemplate(t) },
	} {
		t.Run(name, func(t *testing.T) {
			dep := byKey(objs(t))[objectKey{"Deployment", manager.DefaultNamespace, "vigil-controller"}]
			c := container(t, dep)
			var ref any
			for _, e := range asSlice(c["env"]) {
				if dig(e, "name") == manager.MemoryLimitEnv {
					ref = dig(e, "valueFrom", "resourceFieldRef")
				}
			}
			if dig(ref, "resource") != "limits.memory" || dig(ref, "containerName") != c["name"] {
				t.Fatalf("$%s comes from %v, want resourceFieldRef limits.memory of container %v", manager.MemoryLimitEnv, ref, c["name"])
			}
			if d := dig(ref, "divisor"); d != nil && d != "1" {
				t.Errorf("resourceFieldRef divisor %v: Vigil reads bytes", d)
			}
			limit := resource.MustParse(fmt.Sprint(dig(c, "resources", "limits", "memory")))
			goLimit, err := manager.GoMemoryLimit(strconv.FormatInt(limit.Value(), 10), manager.DefaultMemoryLimitPercent)
			if err != nil {
				t.Fatal(err)
			}
			children := int64(policy.DefaultCompileMemoryLimit + policy.DefaultWorkers*policy.DefaultWorkerMemoryLimit)
			if room := limit.Value() - goLimit; room < children {
				t.Errorf("GOMEMLIMIT %d of a %s limit leaves %d bytes, less than the compile child's and the evaluation workers' %d", goLimit, limit.String(), room, children)
			}
		})
	}
}

// The chart's crds/ are config/crd/bases but the openreports.io CRDs, which
// the overlay config/overlays/openreports holds in its crds/; `make
// manifests` copies both.
func TestChartCRDsAreGenerated(t *testing.T) {
	testenv.Integration(t)
	root := repoRoot(t)
	list := func(dir string) []string {
		names, err := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range names {
			names[i] = filepath.Base(names[i])
		}
		return names
	}
	var forChart, forOverlay []string
	for _, name := range list("config/crd/bases") {
		if strings.HasPrefix(name, "openreports.io_") {
			forOverlay = append(forOverlay, name)
		} else {
			forChart = append(forChart, name)
		}
	}
	for _, copies := range []struct {
		dir  string
		want []string
	}{
		{chartDir + "/crds", forChart},
		{openReportsDir + "/crds", forOverlay},
	} {
		if got := list(copies.dir); !slices.Equal(got, copies.want) {
			t.Fatalf("%s holds %q, want %q of config/crd/bases: run `make manifests`", copies.dir, got, copies.want)
		}
		for _, name := range copies.want {
			want, err := os.ReadFile(filepath.Join(root, "config/crd/bases", name))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(root, copies.dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s/%s differs from config/crd/bases/%s: run `make manifests`", copies.dir, name, name)
			}
		}
	}
}

// The chart with default values renders config/default's objects, Helm's own
// labels aside, and with webhook.enabled=false the overlay's. The Namespace is
// the exception: Helm records the release in its namespace before it creates
// anything, so a chart cannot create its own namespace (`helm install
// --create-namespace` does).
func TestHelmChartMatchesKustomize(t *testing.T) {
	testenv.Integration(t)
	cases := []struct {
		name      string
		overlay   string
		helmFlags []string
		// CRDs Helm installs that the overlay leaves out: Helm skips CRDs
		// that exist, so policy-controller's stays its own.
		extraCRDs []objectKey
		// CRDs the overlay installs and the chart does not.
		missingCRDs []objectKey
	}{
		{name: "default", overlay: defaultDir},
		{name: "webhook disabled", overlay: besideDir, helmFlags: []string{"--set", "webhook.enabled=false"},
			extraCRDs: []objectKey{clusterImagePolicyCRD, trustRootCRD}},
		// The chart leaves the openreports.io CRDs to their own chart.
		{name: "openreports", overlay: openReportsDir, helmFlags: []string{"--set", "reportAPI=" + string(report.OpenReports)},
			missingCRDs: openReportsCRDs},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := byKey(kustomize(t, tc.overlay))
			delete(want, objectKey{"Namespace", "", manager.DefaultNamespace})
			for _, k := range tc.missingCRDs {
				delete(want, k)
			}
			got := byKey(helmTemplate(t, tc.helmFlags...))
			for _, k := range tc.extraCRDs {
				if _, ok := got[k]; !ok {
					t.Errorf("the chart does not install %s", k)
				}
				delete(got, k)
			}
			if gk, wk := sortedKeys(got), sortedKeys(want); !slices.Equal(gk, wk) {
				t.Fatalf("the chart renders\n  %v\nbut %s renders\n  %v", gk, tc.overlay, wk)
			}
			for k, w := range want {
				if clusterScopedKinds[k.Kind] {
					delete(w["metadata"].(map[string]any), "namespace") // see keyOf
				}
				g := withoutHelmLabels(got[k])
				if diffs := diff("", w, g); len(diffs) > 0 {
					t.Errorf("%s differs between %s (want) and the chart (got):\n  %s", k, tc.overlay, strings.Join(diffs, "\n  "))
				}
			}
		})
	}
}

// Installed elsewhere with another namespaceSelector, the chart puts every
// namespaced object, and every reference to one, in the release namespace,
// and the webhook and the verify path judge the same namespaces.
func TestHelmChartValues(t *testing.T) {
	testenv.Integration(t)
	const ns = "platform-vigil"
	objs := helmTemplate(t, "--namespace", ns, "--set-string", "namespaceSelector.team=payments",
		"--set", "webhook.name=vigil.example.com")
	for _, o := range objs {
		k := keyOf(o)
		if k.Kind == "CustomResourceDefinition" || strings.HasPrefix(k.Kind, "Cluster") || strings.HasSuffix(k.Kind, "WebhookConfiguration") || clusterScopedKinds[k.Kind] {
			continue
		}
		if k.Namespace != ns {
			t.Errorf("%s is not in the release namespace %s", k, ns)
		}
	}
	m := byKey(objs)
	for _, s := range asSlice(m[objectKey{"ClusterRoleBinding", "", "vigil-manager-rolebinding"}]["subjects"]) {
		if dig(s, "namespace") != ns {
			t.Errorf("ClusterRoleBinding subject %v is not in %s", s, ns)
		}
	}
	vwc := m[objectKey{"ValidatingWebhookConfiguration", "", manager.DefaultWebhookConfigName}]
	hooks := asSlice(vwc["webhooks"])
	if len(hooks) != 2 || dig(hooks[0], "name") != "vigil.example.com" {
		t.Fatalf("webhooks = %v, want vigil.example.com first, then the ClusterImagePolicy webhook", hooks)
	}
	for _, h := range hooks {
		if dig(h, "clientConfig", "service", "namespace") != ns {
			t.Errorf("webhook %v calls a Service outside %s", dig(h, "name"), ns)
		}
	}
	var in []string
	excluded := false
	for _, e := range asSlice(dig(hooks[0], "namespaceSelector", "matchExpressions")) {
		switch dig(e, "operator") {
		case "In":
			in = append(in, fmt.Sprintf("%v=%s", dig(e, "key"), strings.Join(stringSlice(dig(e, "values")), ",")))
		case "NotIn":
			excluded = slices.Equal(stringSlice(dig(e, "values")), []string{"kube-system", ns})
		}
	}
	if !excluded {
		t.Errorf("the workload webhook does not exclude kube-system and %s: %v", ns, dig(hooks[0], "namespaceSelector"))
	}
	const selector = "policy.sigstore.dev/include=true,team=payments"
	if got := strings.Join(in, ","); got != selector {
		t.Errorf("the workload webhook selects %s, want %s", got, selector)
	}
	dep := m[objectKey{"Deployment", ns, "vigil-controller"}]
	if args := stringSlice(container(t, dep)["args"]); !slices.Contains(args, "--namespace-selector="+selector) {
		t.Errorf("manager args = %q, want --namespace-selector=%s, as the webhook selects", args, selector)
	}
}

// kubectl apply --dry-run=server: a real kube-apiserver accepts every object,
// and Pod Security admission (restricted, from the namespace's labels) has
// nothing to say about the manager's pod template.
func TestKustomizeAcceptedByAPIServer(t *testing.T) {
	testenv.Integration(t)
	kubectl := tool(t, "kubectl")
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	// Install nothing first: the CRDs are among the objects applied.
	env.CRDDirectoryPaths = nil
	env.ErrorIfCRDPathMissing = false
	if _, err := env.Start(); err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfigPath := testenv.UserKubeconfig(t, env, "vigil-install-test", "system:masters")
	root := repoRoot(t)

	// Namespaced objects need their namespace to exist even in a dry run:
	// create it for real, with its Pod Security labels, from the output.
	var ns map[string]any
	for _, o := range kustomize(t, defaultDir) {
		if o["kind"] == "Namespace" {
			ns = o
		}
	}
	nsFile := filepath.Join(t.TempDir(), "namespace.yaml")
	writeYAML(t, nsFile, ns)
	runTool(t, kubectl, "--kubeconfig", kubeconfigPath, "apply", "--server-side", "-f", nsFile)

	for _, dir := range []string{defaultDir, besideDir, openReportsDir} {
		t.Run(dir, func(t *testing.T) {
			objs := kustomize(t, dir)
			cmd := exec.Command(kubectl, "--kubeconfig", kubeconfigPath,
				"apply", "--server-side", "--dry-run=server", "-k", filepath.Join(root, dir))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("kubectl apply --dry-run=server -k %s: %v\n%s%s", dir, err, stdout.String(), stderr.String())
			}
			if strings.Contains(stderr.String(), "Warning") {
				t.Errorf("kube-apiserver warned:\n%s", stderr.String())
			}
			applied := strings.Count(stdout.String(), "serverside-applied (server dry run)")
			if applied != len(objs) {
				t.Errorf("%d objects accepted, want all %d:\n%s", applied, len(objs), stdout.String())
			}
		})
	}
}

// Vigil passes its own checks: the manager's pod, as the Deployment creates
// it, against the Pod Security policies of the policy-controller catalog,
// judged by Vigil's decision engine.
func TestManagerPassesRestrictedPolicies(t *testing.T) {
	testenv.Integration(t)
	shared, err := testenv.SharedDir()
	if err != nil {
		t.Skip(err)
	}
	files, err := filepath.Glob(filepath.Join(shared, "conformance", "policy-catalog", "policies", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no policies in the catalog (%v)", err)
	}
	var compiled []*policy.CompiledPolicy
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cip v1beta1.ClusterImagePolicy
		if err := yaml.UnmarshalStrict(data, &cip); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		p, err := policy.Compile(&cip)
		if err != nil {
			t.Fatalf("compile %s: %v", f, err)
		}
		compiled = append(compiled, p)
	}
	set := policy.NewSet(compiled, nil)

	for _, dir := range []string{defaultDir, besideDir, openReportsDir} {
		t.Run(dir, func(t *testing.T) {
			dep := byKey(kustomize(t, dir))[objectKey{"Deployment", manager.DefaultNamespace, "vigil-controller"}]
			tmpl, _ := dig(dep, "spec", "template").(map[string]any)
			meta, _ := tmpl["metadata"].(map[string]any)
			meta["name"], meta["namespace"] = "vigil-controller-0", manager.DefaultNamespace
			pod, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl["spec"]})
			if err != nil {
				t.Fatal(err)
			}
			obj, err := policy.DecodeObject(pod)
			if err != nil {
				t.Fatalf("decode the manager's pod: %v\n%s", err, pod)
			}
			d := set.Decide(t.Context(), obj, policy.Options{NoMatchPolicy: policy.NoMatchAllow})
			if len(d.Results) != len(compiled) {
				t.Errorf("%d results, want one per policy (%d): %+v", len(d.Results), len(compiled), d.Results)
			}
			for _, r := range d.Results {
				if r.Result != policy.ResultPass {
					t.Errorf("%s: %s, want pass: %s", r.Policy, r.Result, r.Explanation)
				}
			}
			if !d.Allowed || len(d.Warnings) > 0 {
				t.Errorf("allowed %v, warnings %q; want allowed without warnings", d.Allowed, d.Warnings)
			}
		})
	}
}

// --- helpers ---

type objectKey struct{ Kind, Namespace, Name string }

func (k objectKey) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// tool returns bin/NAME, or fails naming `make tools`.
func tool(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(repoRoot(t), "bin", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: run `make tools` to build it", path)
	}
	return path
}

func runTool(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// kustomize renders a kustomization of the repository with bin/kubectl.
func kustomize(t *testing.T, dir string) []map[string]any {
	t.Helper()
	return decodeAll(t, runTool(t, tool(t, "kubectl"), "kustomize", dir))
}

// helmTemplate renders charts/vigil as `helm template` would for an install
// in Vigil's default namespace, CRDs included.
func helmTemplate(t *testing.T, flags ...string) []map[string]any {
	t.Helper()
	helm := tool(t, "helm")
	home := t.TempDir()
	// Keep Helm from reading or writing the user's configuration.
	t.Setenv("HELM_CACHE_HOME", filepath.Join(home, "cache"))
	t.Setenv("HELM_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("HELM_DATA_HOME", filepath.Join(home, "data"))
	args := append([]string{"template", "vigil", chartDir, "--namespace", manager.DefaultNamespace, "--include-crds"}, flags...)
	return decodeAll(t, runTool(t, helm, args...))
}

func decodeAll(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	dec := apiyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []map[string]any
	for {
		var o map[string]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("decode rendered manifests: %v", err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
}

func writeYAML(t *testing.T, path string, obj any) {
	t.Helper()
	data, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func keyOf(o map[string]any) objectKey {
	k := objectKey{
		Kind:      fmt.Sprint(o["kind"]),
		Namespace: stringOr(dig(o, "metadata", "namespace")),
		Name:      stringOr(dig(o, "metadata", "name")),
	}
	if clusterScopedKinds[k.Kind] {
		// kustomize does not know these kinds are cluster-scoped and
		// writes config/default's namespace on them; the API server
		// ignores it (TestKustomizeAcceptedByAPIServer).
		k.Namespace = ""
	}
	return k
}

// clusterScopedKinds are cluster-scoped kinds kustomize's schema lacks.
var clusterScopedKinds = map[string]bool{"FlowSchema": true, "PriorityLevelConfiguration": true}

func stringOr(v any) string {
	s, _ := v.(string)
	return s
}

func byKey(objs []map[string]any) map[objectKey]map[string]any {
	m := make(map[objectKey]map[string]any, len(objs))
	for _, o := range objs {
		m[keyOf(o)] = o
	}
	return m
}

func sortedKeys(m map[objectKey]map[string]any) []objectKey {
	keys := make([]objectKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortKeys(keys)
	return keys
}

func sortKeys(keys []objectKey) {
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
}

func assertKeys(t *testing.T, objs []map[string]any, want []objectKey) {
	t.Helper()
	var got []objectKey
	for _, o := range objs {
		got = append(got, keyOf(o))
	}
	want = slices.Clone(want)
	sortKeys(got)
	sortKeys(want)
	if !slices.Equal(got, want) {
		t.Errorf("rendered\n  %v\nwant\n  %v", got, want)
	}
}

// Labels Helm's chart adds to every object's metadata, and nowhere else.
var helmLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}

func withoutHelmLabels(o map[string]any) map[string]any {
	if labels, ok := dig(o, "metadata", "labels").(map[string]any); ok {
		for _, l := range helmLabels {
			delete(labels, l)
		}
	}
	return o
}

// diff lists the paths where got differs from want.
func diff(path string, want, got any) []string {
	wm, wok := want.(map[string]any)
	gm, gok := got.(map[string]any)
	if wok && gok {
		var out []string
		keys := map[string]bool{}
		for k := range wm {
			keys[k] = true
		}
		for k := range gm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			out = append(out, diff(path+"."+k, wm[k], gm[k])...)
		}
		return out
	}
	ws, wok := want.([]any)
	gs, gok := got.([]any)
	if wok && gok && len(ws) == len(gs) {
		var out []string
		for i := range ws {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), ws[i], gs[i])...)
		}
		return out
	}
	if reflect.DeepEqual(want, got) {
		return nil
	}
	return []string{fmt.Sprintf("%s: want %s, got %s", path, compact(want), compact(got))}
}

func compact(v any) string {
	if v == nil {
		return "nothing"
	}
	data, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(string(data))
}

// dig walks nested maps; nil when a key is missing.
func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func stringSlice(v any) []string {
	var out []string
	for _, x := range asSlice(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func stringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := make(map[string]string, len(m))
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

// selects says whether a non-empty equality selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// container returns the Deployment's only container, the manager.
func container(t *testing.T, dep map[string]any) map[string]any {
	t.Helper()
	cs := asSlice(dig(dep, "spec", "template", "spec", "containers"))
	if len(cs) != 1 {
		t.Fatalf("the Deployment has %d containers, want the manager only", len(cs))
	}
	c, _ := cs[0].(map[string]any)
	return c
}

// webhook.pinDigests=false leaves the digest-pinning webhook out and tells
// the manager not to serve it; the default installs and serves it.
func TestHelmChartPinDigests(t *testing.T) {
	testenv.Integration(t)
	mutating := objectKey{"MutatingWebhookConfiguration", "", manager.DefaultMutatingWebhookConfigName}
	for _, tc := range []struct {
		flags []string
		pin   bool
	}{
		{nil, true},
		{[]string{"--set", "webhook.pinDigests=false"}, false},
	} {
		m := byKey(helmTemplate(t, tc.flags...))
		if _, ok := m[mutating]; ok != tc.pin {
			t.Errorf("%v: MutatingWebhookConfiguration rendered = %v, want %v", tc.flags, ok, tc.pin)
		}
		args := stringSlice(container(t, m[objectKey{"Deployment", manager.DefaultNamespace, "vigil-controller"}])["args"])
		if slices.Contains(args, "--pin-digests=false") == tc.pin {
			t.Errorf("%v: manager args %q; --pin-digests=false should be there only when pinning is off", tc.flags, args)
		}
	}
}
