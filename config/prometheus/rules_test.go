package prometheus_test

// These tests keep Vigil's Prometheus integration honest:
//
//   - promtool (bin/promtool, built by `make tools`) checks rules.yaml and runs
//     the unit tests in tests/, which make every alert fire and not fire;
//   - prometheusrule.yaml's spec.groups is exactly rules.yaml's groups;
//   - every metric an alert or a test series names exists: defined in
//     internal/metrics/metrics.go, or one of a few known metrics of
//     Prometheus, kube-apiserver and controller-runtime, with the labels used;
//   - every alert has a severity, a summary, a description and a runbook_url
//     that points at its section of docs/alerts.md, and a test that fires it
//     and one that does not;
//   - docs/metrics.md documents every metric and its labels.

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite prometheusrule.yaml's spec from rules.yaml")

const (
	rulesFile          = "config/prometheus/rules.yaml"
	prometheusRuleFile = "config/prometheus/prometheusrule.yaml"
	testsGlob          = "config/prometheus/tests/*.yaml"
	kustomizationFile  = "config/prometheus/kustomization.yaml"
	metricsGoFile      = "internal/metrics/metrics.go"
	alertsDoc          = "docs/alerts.md"
	metricsDoc         = "docs/metrics.md"
	runbookBase        = "https://github.com/vigil-dev/vigil/blob/main/docs/alerts.md#"
)

// targetLabels are the labels Prometheus (and prometheus-operator's
// ServiceMonitor relabelling) attaches to every scraped series.
var targetLabels = []string{"job", "instance", "namespace", "service", "pod", "container", "endpoint"}

// externalMetrics are the metrics not defined by Vigil that rules may use,
// with their labels (besides targetLabels).
var externalMetrics = map[string]metricDef{
	// Prometheus: 1 when the last scrape of a target succeeded.
	"up": {Type: "gauge"},
	// kube-apiserver (k8s.io/apiserver/pkg/admission/metrics): every call to
	// an admission webhook, with the HTTP code of its answer or of the failure
	// (0 when kube-apiserver itself failed).
	"apiserver_admission_webhook_request_total": {Type: "counter", Labels: []string{"name", "type", "operation", "code", "rejected"}},
	// controller-runtime (pkg/webhook/internal/metrics). Its code label is the
	// HTTP status of the webhook server's answer, which is 200 even when the
	// AdmissionReview reports an error, so it cannot measure errors.
	"controller_runtime_webhook_requests_total": {Type: "counter", Labels: []string{"webhook", "code"}},
}

// metricDef is one metric: its type and its own labels.
type metricDef struct {
	Type   string // counter, gauge, histogram or summary
	Labels []string
	Help   string
}

// ruleFile is a Prometheus rule file, as much of it as these tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert         string            `json:"alert"`
	Record        string            `json:"record"`
	Expr          string            `json:"expr"`
	For           string            `json:"for"`
	KeepFiringFor string            `json:"keep_firing_for"`
	Labels        map[string]string `json:"labels"`
	Annotations   map[string]string `json:"annotations"`
}

// unitTestFile is a promtool unit-test file, as much of it as these tests read.
type unitTestFile struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name        string `json:"name"`
		InputSeries []struct {
			Series string `json:"series"`
		} `json:"input_series"`
		AlertRuleTests []struct {
			Alertname string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// repoRoot is the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func promtool(t *testing.T, root string) string {
	t.Helper()
	p := filepath.Join(root, "bin", "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `make tools`, which builds the pinned promtool into bin/ (%v)", p, err)
	}
	return p
}

func runPromtool(t *testing.T, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t, root), args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func readFile(t *testing.T, root, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadRules(t *testing.T, root string) ruleFile {
	t.Helper()
	var rf ruleFile
	if err := yaml.UnmarshalStrict(readFile(t, root, rulesFile), &rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	if len(rf.Groups) == 0 {
		t.Fatalf("%s has no groups", rulesFile)
	}
	return rf
}

func alerts(rf ruleFile) []rule {
	var out []rule
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

func testFiles(t *testing.T, root string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, testsGlob))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no promtool unit tests match %s", testsGlob)
	}
	return files
}

func TestPromtoolCheckRules(t *testing.T) {
	testenv.Integration(t)
	root := repoRoot(t)
	out := runPromtool(t, root, "check", "rules", rulesFile)
	t.Log(strings.TrimSpace(out))
}

func TestPromtoolTestRules(t *testing.T) {
	testenv.Integration(t)
	root := repoRoot(t)
	args := []string{"test", "rules"}
	for _, f := range testFiles(t, root) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, rel)
	}
	out := runPromtool(t, root, args...)
	t.Log(strings.TrimSpace(out))
}

// TestPrometheusRuleMatchesRules checks that the PrometheusRule carries
// exactly rules.yaml's groups; with -update it rewrites its spec first.
func TestPrometheusRuleMatchesRules(t *testing.T) {
	root := repoRoot(t)
	if *update {
		b, err := renderPrometheusRule(readFile(t, root, prometheusRuleFile), readFile(t, root, rulesFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, prometheusRuleFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var plain map[string]any
	if err := yaml.Unmarshal(readFile(t, root, rulesFile), &plain); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var pr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       map[string]any
	}
	if err := yaml.Unmarshal(readFile(t, root, prometheusRuleFile), &pr); err != nil {
		t.Fatalf("%s: %v", prometheusRuleFile, err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("%s is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", prometheusRuleFile, pr.APIVersion, pr.Kind)
	}
	if len(pr.Spec) != 1 || pr.Spec["groups"] == nil {
		t.Errorf("%s: spec must hold groups and nothing else", prometheusRuleFile)
	}
	if !reflect.DeepEqual(pr.Spec["groups"], plain["groups"]) {
		t.Errorf("%s's spec.groups differ from %s (%s); rules.yaml is the source: run\n"+
			"  go test ./config/prometheus -run TestPrometheusRuleMatchesRules -update",
			prometheusRuleFile, rulesFile, firstDifference(pr.Spec["groups"], plain["groups"]))
	}
}

// renderPrometheusRule keeps the PrometheusRule's lines up to and including
// `spec:` and puts rules.yaml's groups, from its `groups:` line on, under it.
func renderPrometheusRule(current, rules []byte) ([]byte, error) {
	var out bytes.Buffer
	lines := strings.SplitAfter(string(current), "\n")
	found := false
	for _, l := range lines {
		out.WriteString(l)
		if strings.TrimRight(l, "\r\n") == "spec:" {
			found = true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%s has no top-level `spec:` line", prometheusRuleFile)
	}
	started := false
	for _, l := range strings.SplitAfter(string(rules), "\n") {
		if !started && strings.HasPrefix(l, "groups:") {
			started = true
		}
		if !started || l == "" {
			continue
		}
		if strings.TrimSpace(l) == "" {
			out.WriteString("\n")
			continue
		}
		out.WriteString("  " + l)
	}
	if !started {
		return nil, fmt.Errorf("%s has no top-level `groups:` line", rulesFile)
	}
	return out.Bytes(), nil
}

// firstDifference names the first group or rule where a and b differ.
func firstDifference(a, b any) string {
	ga, _ := a.([]any)
	gb, _ := b.([]any)
	if len(ga) != len(gb) {
		return fmt.Sprintf("%d groups against %d", len(ga), len(gb))
	}
	for i := range ga {
		if reflect.DeepEqual(ga[i], gb[i]) {
			continue
		}
		ma, _ := ga[i].(map[string]any)
		mb, _ := gb[i].(map[string]any)
		ra, _ := ma["rules"].([]any)
		rb, _ := mb["rules"].([]any)
		if len(ra) != len(rb) {
			return fmt.Sprintf("group %v: %d rules against %d", mb["name"], len(ra), len(rb))
		}
		for j := range ra {
			if !reflect.DeepEqual(ra[j], rb[j]) {
				r, _ := rb[j].(map[string]any)
				return fmt.Sprintf("group %v, rule %d (%v)", mb["name"], j, r["alert"])
			}
		}
		return fmt.Sprintf("group %d (%v)", i, mb["name"])
	}
	return "no difference found"
}

// vigilMetrics reads the metric definitions of internal/metrics/metrics.go:
// every prometheus.NewX(prometheus.XOpts{Name: ...}, []string{labels...}).
func vigilMetrics(t *testing.T, root string) map[string]metricDef {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(root, metricsGoFile), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	constructors := map[string]string{
		"NewCounter": "counter", "NewCounterVec": "counter",
		"NewGauge": "gauge", "NewGaugeVec": "gauge",
		"NewHistogram": "histogram", "NewHistogramVec": "histogram",
		"NewSummary": "summary", "NewSummaryVec": "summary",
	}
	defs := map[string]metricDef{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		pkg, ok := sel.X.(*ast.Ident)
		typ, known := constructors[sel.Sel.Name]
		if !ok || pkg.Name != "prometheus" || !known || len(call.Args) == 0 {
			return true
		}
		pos := fset.Position(call.Pos())
		opts, ok := call.Args[0].(*ast.CompositeLit)
		if !ok {
			t.Errorf("%s: the options of %s are not a literal; this test cannot read them", pos, sel.Sel.Name)
			return true
		}
		var def metricDef
		def.Type = typ
		var name string
		for _, e := range opts.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, _ := kv.Key.(*ast.Ident)
			if key == nil {
				continue
			}
			switch key.Name {
			case "Name", "Help":
				s, err := stringLit(kv.Value)
				if err != nil {
					t.Errorf("%s: %s: %v", pos, key.Name, err)
					continue
				}
				if key.Name == "Name" {
					name = s
				} else {
					def.Help = s
				}
			case "Namespace", "Subsystem", "ConstLabels":
				t.Errorf("%s: %s is set; this test only understands the full name in Name", pos, key.Name)
			}
		}
		if name == "" {
			t.Errorf("%s: a metric without a literal Name", pos)
			return true
		}
		if len(call.Args) > 1 {
			arg := call.Args[1]
			// withNamespace(labels, ...) adds the optional namespace label
			// (--metrics-namespace-label); the rules rely on the others only.
			if c, ok := arg.(*ast.CallExpr); ok && len(c.Args) > 0 {
				if fn, ok := c.Fun.(*ast.Ident); ok && fn.Name == "withNamespace" {
					arg = c.Args[0]
				}
			}
			labels, ok := arg.(*ast.CompositeLit)
			if !ok {
				t.Errorf("%s: the labels of %s are not a literal", pos, name)
				return true
			}
			for _, e := range labels.Elts {
				s, err := stringLit(e)
				if err != nil {
					t.Errorf("%s: a label of %s: %v", pos, name, err)
					continue
				}
				def.Labels = append(def.Labels, s)
			}
		}
		if _, dup := defs[name]; dup {
			t.Errorf("%s: %s is defined twice", pos, name)
		}
		defs[name] = def
		return true
	})
	if len(defs) == 0 {
		t.Fatalf("found no metric definitions in %s", metricsGoFile)
	}
	for name := range defs {
		if !strings.HasPrefix(name, "vigil_") {
			t.Errorf("%s: metric %s lacks the vigil_ prefix", metricsGoFile, name)
		}
	}
	return defs
}

func stringLit(e ast.Expr) (string, error) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", fmt.Errorf("not a string literal")
	}
	return strconv.Unquote(lit.Value)
}

// selector is a metric name with the label names of its matchers.
type selector struct {
	Name   string
	Labels []string
}

// promqlWords are the PromQL keywords and aggregation operators that are not
// followed by "(" directly, so that they cannot be told from metric names
// that way.
var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"atan2": true, "inf": true, "nan": true, "Inf": true, "NaN": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
	"quantile": true, "limitk": true, "limit_ratio": true,
}

// groupingWords are followed by a parenthesised list of label names.
var groupingWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// selectors finds the metric names in a PromQL expression (or a promtool
// series like `name{a="b"}`), with the label names their matchers use. It is
// a scanner, not a parser: enough for the expressions of rules.yaml, and it
// errs on the side of reporting unknown words as metrics.
func selectors(expr string) ([]selector, error) {
	var out []selector
	i, n := 0, len(expr)
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(j int) int {
		for j < n && (expr[j] == ' ' || expr[j] == '\t' || expr[j] == '\n' || expr[j] == '\r') {
			j++
		}
		return j
	}
	skipString := func(j int) (int, error) { // expr[j] is the opening quote
		q := expr[j]
		for j++; j < n; j++ {
			if expr[j] == '\\' && q != '`' {
				j++
				continue
			}
			if expr[j] == q {
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("unterminated string in %q", expr)
	}
	// matchers reads {a="b", c=~"d"} from expr[j] == '{' and returns the
	// label names and the metric name given by __name__, if any.
	matchers := func(j int) ([]string, string, int, error) {
		var labels []string
		var name string
		j++
		for {
			j = skipSpace(j)
			if j >= n {
				return nil, "", 0, fmt.Errorf("unterminated {} in %q", expr)
			}
			if expr[j] == '}' {
				return labels, name, j + 1, nil
			}
			if expr[j] == ',' {
				j++
				continue
			}
			var label string
			if expr[j] == '"' {
				end, err := skipString(j)
				if err != nil {
					return nil, "", 0, err
				}
				label, _ = strconv.Unquote(expr[j:end])
				j = end
			} else {
				k := j
				for k < n && isIdent(expr[k]) {
					k++
				}
				if k == j {
					return nil, "", 0, fmt.Errorf("unexpected %q in matchers of %q", expr[j], expr)
				}
				label, j = expr[j:k], k
			}
			j = skipSpace(j)
			k := j
			for k < n && strings.IndexByte("=!~", expr[k]) >= 0 {
				k++
			}
			op := expr[j:k]
			j = skipSpace(k)
			if j >= n || strings.IndexByte("\"'`", expr[j]) < 0 {
				return nil, "", 0, fmt.Errorf("label %s in %q has no quoted value", label, expr)
			}
			end, err := skipString(j)
			if err != nil {
				return nil, "", 0, err
			}
			if label == "__name__" {
				if op != "=" {
					return nil, "", 0, fmt.Errorf("%q: a __name__ matcher other than = hides which metrics are used", expr)
				}
				name, _ = strconv.Unquote(expr[j:end])
			} else {
				labels = append(labels, label)
			}
			j = end
		}
	}
	for i < n {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '#': // a comment runs to the end of the line
			for i < n && expr[i] != '\n' {
				i++
			}
		case c == '[': // a range or subquery
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unterminated [] in %q", expr)
			}
			i += end + 1
		case c >= '0' && c <= '9' || c == '.': // a number or a duration
			for i < n && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case c == '{': // a selector without a name: {__name__="..."}
			labels, name, end, err := matchers(i)
			if err != nil {
				return nil, err
			}
			if name == "" {
				return nil, fmt.Errorf("%q: a selector without a metric name", expr)
			}
			out = append(out, selector{Name: name, Labels: labels})
			i = end
		case isIdentStart(c):
			j := i
			for j < n && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := skipSpace(j)
			switch {
			case groupingWords[word]:
				if k < n && expr[k] == '(' {
					end := strings.IndexByte(expr[k:], ')')
					if end < 0 {
						return nil, fmt.Errorf("unterminated %s(...) in %q", word, expr)
					}
					j = k + end + 1
				}
			case promqlWords[word] || k < n && expr[k] == '(':
				// a keyword, an aggregation or a function call
			default:
				s := selector{Name: word}
				if k < n && expr[k] == '{' {
					labels, name, end, err := matchers(k)
					if err != nil {
						return nil, err
					}
					if name != "" && name != word {
						return nil, fmt.Errorf("%q: %s{__name__=%q}", expr, word, name)
					}
					s.Labels, j = labels, end
				}
				out = append(out, s)
			}
			i = j
		default:
			i++
		}
	}
	return out, nil
}

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []selector
	}{
		{`up`, []selector{{Name: "up"}}},
		{`absent(up{job=~".*vigil.*"} == 1)`, []selector{{Name: "up", Labels: []string{"job"}}}},
		{`histogram_quantile(0.99, sum by (le) (rate(a_bucket{kind="Pod"}[5m]))) > 0.5`,
			[]selector{{Name: "a_bucket", Labels: []string{"kind"}}}},
		{`sum(x) by (policy) / on (policy) group_left (mode) y offset 10m and bool z`,
			[]selector{{Name: "x"}, {Name: "y"}, {Name: "z"}}},
		{"time() - max(t) > 3600 and on () sum(r{result=\"a,b}\"}) > 0 # r2 in a comment",
			[]selector{{Name: "t"}, {Name: "r", Labels: []string{"result"}}}},
		{`{__name__="m", "quoted"="v"} * 1e-3 + inf`, []selector{{Name: "m", Labels: []string{"quoted"}}}},
		{`count_values("v", m) - topk(3, n) - sum without (a, b) (o)`, []selector{{Name: "m"}, {Name: "n"}, {Name: "o"}}},
		{`vigil_policy_results{policy="p", result="fail", job="j"}`,
			[]selector{{Name: "vigil_policy_results", Labels: []string{"policy", "result", "job"}}}},
	} {
		got, err := selectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`up{job="x"`, `up{job}`, `{job="x"}`, `{__name__=~"vigil_.*"}`, `rate(x[5m)`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// checkSelector tells what is wrong with a selector: an unknown metric, or a
// label the metric does not have.
func checkSelector(s selector, vigil map[string]metricDef) error {
	def, ok := vigil[s.Name]
	if !ok {
		def, ok = externalMetrics[s.Name]
	}
	var extra []string // labels of the series a histogram or summary adds
	switch {
	case ok && def.Type == "summary":
		extra = []string{"quantile"}
	case ok:
	default:
		for suffix, types := range map[string][]string{
			"_bucket": {"histogram"}, "_sum": {"histogram", "summary"}, "_count": {"histogram", "summary"},
		} {
			base, cut := strings.CutSuffix(s.Name, suffix)
			if d, found := vigil[base]; cut && found && slices.Contains(types, d.Type) {
				def, ok = d, true
				if suffix == "_bucket" {
					extra = []string{"le"}
				}
			}
		}
	}
	if !ok {
		return fmt.Errorf("metric %s is neither defined in %s nor a known external metric", s.Name, metricsGoFile)
	}
	for _, l := range s.Labels {
		if !slices.Contains(def.Labels, l) && !slices.Contains(targetLabels, l) && !slices.Contains(extra, l) {
			return fmt.Errorf("metric %s has no label %s (its labels: %s; target labels: %s)",
				s.Name, l, strings.Join(append(slices.Clone(def.Labels), extra...), ", "), strings.Join(targetLabels, ", "))
		}
	}
	return nil
}

func TestRulesUseExistingMetrics(t *testing.T) {
	root := repoRoot(t)
	vigil := vigilMetrics(t, root)
	rf := loadRules(t, root)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			sels, err := selectors(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if len(sels) == 0 {
				t.Errorf("%s: found no metric in its expression", name)
			}
			for _, s := range sels {
				if err := checkSelector(s, vigil); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
	}
}

func TestRuleTestSeriesUseExistingMetrics(t *testing.T) {
	root := repoRoot(t)
	vigil := vigilMetrics(t, root)
	for _, f := range testFiles(t, root) {
		var tf unitTestFile
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range tf.Tests {
			for _, in := range tc.InputSeries {
				sels, err := selectors(in.Series)
				if err != nil || len(sels) != 1 {
					t.Errorf("%s: %q: want one series (%v)", filepath.Base(f), in.Series, err)
					continue
				}
				if err := checkSelector(sels[0], vigil); err != nil {
					t.Errorf("%s, test %q: %v", filepath.Base(f), tc.Name, err)
				}
			}
		}
	}
}

// headingAnchors are the GitHub anchors of the Markdown headings of doc, with
// the heading text.
func headings(doc string) map[string]string {
	out := map[string]string{}
	inFence := false
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(l, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(l, "#"))
		out[githubAnchor(text)] = text
	}
	return out
}

var anchorDrop = regexp.MustCompile("[^a-z0-9 _-]")

// githubAnchor is the id GitHub gives a heading: lower case, punctuation
// dropped, spaces as dashes.
func githubAnchor(heading string) string {
	a := anchorDrop.ReplaceAllString(strings.ToLower(heading), "")
	return strings.ReplaceAll(a, " ", "-")
}

func TestAlertsAreDocumentedAndTested(t *testing.T) {
	root := repoRoot(t)
	rf := loadRules(t, root)
	doc := headings(string(readFile(t, root, alertsDoc)))

	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, f := range testFiles(t, root) {
		var tf unitTestFile
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range tf.Tests {
			for _, at := range tc.AlertRuleTests {
				if len(at.ExpAlerts) > 0 {
					fires[at.Alertname] = true
				} else {
					quiet[at.Alertname] = true
				}
			}
		}
	}

	seen := map[string]bool{}
	for _, a := range alerts(rf) {
		if seen[a.Alert] {
			t.Errorf("alert %s is defined twice", a.Alert)
		}
		seen[a.Alert] = true
		if s := a.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", a.Alert, s)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("%s: no %s annotation", a.Alert, k)
			}
		}
		anchor := strings.ToLower(a.Alert)
		if want := runbookBase + anchor; a.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", a.Alert, a.Annotations["runbook_url"], want)
		}
		if doc[anchor] != a.Alert {
			t.Errorf("%s: %s has no section headed %q", a.Alert, alertsDoc, a.Alert)
		}
		if !fires[a.Alert] {
			t.Errorf("%s: no test in %s expects it to fire", a.Alert, testsGlob)
		}
		if !quiet[a.Alert] {
			t.Errorf("%s: no test in %s expects it not to fire", a.Alert, testsGlob)
		}
	}
	for _, text := range doc {
		if strings.HasPrefix(text, "Vigil") && !strings.Contains(text, " ") && !seen[text] {
			t.Errorf("%s documents alert %s, which rules.yaml does not define", alertsDoc, text)
		}
	}
	for name := range fires {
		if !seen[name] {
			t.Errorf("a test expects unknown alert %s to fire", name)
		}
	}
}

func TestMetricsAreDocumented(t *testing.T) {
	root := repoRoot(t)
	vigil := vigilMetrics(t, root)
	doc := string(readFile(t, root, metricsDoc))
	sections := map[string]string{} // metric name -> its section
	var current string
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "#") {
			current = ""
			if text := strings.Trim(strings.TrimSpace(strings.TrimLeft(l, "#")), "`"); strings.HasPrefix(text, "vigil_") {
				current = text
				if _, dup := sections[current]; dup {
					t.Errorf("%s: two sections for %s", metricsDoc, current)
				}
				sections[current] = ""
			}
			continue
		}
		if current != "" {
			sections[current] += l + "\n"
		}
	}
	names := make([]string, 0, len(vigil))
	for name := range vigil {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		def := vigil[name]
		section, ok := sections[name]
		if !ok {
			t.Errorf("%s has no section headed %s", metricsDoc, name)
			continue
		}
		if !strings.Contains(section, def.Type) {
			t.Errorf("%s, %s: does not say it is a %s", metricsDoc, name, def.Type)
		}
		for _, l := range def.Labels {
			if !strings.Contains(section, "`"+l+"`") {
				t.Errorf("%s, %s: label `%s` is not documented", metricsDoc, name, l)
			}
		}
	}
	for name := range sections {
		if _, ok := vigil[name]; !ok {
			t.Errorf("%s documents %s, which %s does not define", metricsDoc, name, metricsGoFile)
		}
	}
}

func TestKustomization(t *testing.T) {
	root := repoRoot(t)
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(readFile(t, root, kustomizationFile), &k); err != nil {
		t.Fatal(err)
	}
	want := []string{"prometheusrule.yaml", "servicemonitor.yaml"}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("%s resources: %v, want %v", kustomizationFile, got, want)
	}
	for _, r := range k.Resources {
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(readFile(t, root, filepath.Join(filepath.Dir(kustomizationFile), r)), &obj); err != nil {
			t.Errorf("%s: %v", r, err)
			continue
		}
		if obj.APIVersion != "monitoring.coreos.com/v1" || obj.Metadata.Name == "" || obj.Metadata.Namespace != "vigil-system" {
			t.Errorf("%s: %s %s %s/%s, want a monitoring.coreos.com/v1 object in vigil-system",
				r, obj.APIVersion, obj.Kind, obj.Metadata.Namespace, obj.Metadata.Name)
		}
	}
}
