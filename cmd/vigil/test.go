package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1alpha1"
	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/admission"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/verify"
)

// testOptions are the flags of `vigil test`.
type testOptions struct {
	policies      []string
	resources     []string
	output        string
	noMatchPolicy string
	policyTimeout time.Duration
	trustRoots    []string
}

func newTestCommand() *cobra.Command {
	o := &testOptions{}
	cmd := &cobra.Command{
		Use:   "test --policy PATH... --resource PATH...",
		Short: "Judge resources in YAML files against policies offline, without a cluster",
		Long: `Judge Pods and pod-carrying workloads (Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, CronJob) against ClusterImagePolicies, offline, with the same
decision code as the admission webhook and the PolicyReports.

PATH is a file (multi-document YAML or JSON) or a directory, read recursively
for *.yaml, *.yml and *.json. Both flags may be repeated or take a
comma-separated list. Documents are numbered from 1 in error messages.

Images are judged as written by static, CUE and Rego policies, which need no
network. Key and keyless authorities verify signatures in the registries
(a tag is resolved to its digest first) with the credentials of the local
Docker configuration (~/.docker/config.json and its credential helpers);
keyless ones, and ctlog and rfc3161timestamp (a log entry or a timestamp
that every signature must carry, verified offline), trust the TrustRoots
given by --trust-root (named by trustRootRef) or, without a trustRootRef,
the keyless authority's TrustRoot or else the public-good Sigstore root,
fetched from its TUF mirror on first use. A verification that cannot be
done (registry unreachable, access denied, rate limited, a trustRootRef
that no --trust-root file defines) is an error result, never a pass, as it
is at admission and in the PolicyReports. key.secretRef cannot be read
offline: such a policy is bad input.

Only regular files are read (a symlink to one is followed), each at most
16 MiB; a file with no document (empty, or only comments) is bad input. A
resource's apiVersion must be its kind's: v1 for Pods, apps/v1 for
Deployments, ReplicaSets, StatefulSets and DaemonSets, batch/v1 for Jobs and
CronJobs.

Exit status: 0 when admission would allow every resource (warnings allowed),
1 when it would deny one, 2 for bad input or usage, 3 when vigil test itself
crashed (a bug to report, never a verdict).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return o.run(ctx, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&o.policies, "policy", "p", nil, "ClusterImagePolicy file or directory (v1alpha1 or v1beta1)")
	f.StringSliceVarP(&o.resources, "resource", "r", nil, "file or directory of resources to judge")
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	f.StringVar(&o.noMatchPolicy, "no-match-policy", string(policy.NoMatchDeny), "for images no policy covers: deny, warn or allow")
	f.StringSliceVar(&o.trustRoots, "trust-root", nil, "TrustRoot file or directory (policy.sigstore.dev/v1alpha1) that a trustRootRef (keyless, ctlog, rfc3161timestamp) names; sigstoreKeys and repository roots are read offline")
	f.DurationVar(&o.policyTimeout, "policy-timeout", policy.DefaultPolicyTimeout, "bound on evaluating one policy for one resource; past it the result is error")
	return cmd
}

func badInput(format string, args ...any) error {
	return &exitError{code: exitBadInput, err: fmt.Errorf(format, args...)}
}

func (o *testOptions) run(ctx context.Context, out io.Writer) error {
	if len(o.policies) == 0 || len(o.resources) == 0 {
		return badInput("both --policy and --resource are required")
	}
	if o.output != "table" && o.output != "json" {
		return badInput("invalid --output %q: want table or json", o.output)
	}
	noMatch, err := policy.ParseNoMatchPolicy(o.noMatchPolicy)
	if err != nil {
		return badInput("invalid --no-match-policy: %v", err)
	}
	compiler, err := testCompiler(o.trustRoots)
	if err != nil {
		return err
	}
	set, err := loadPolicies(compiler, o.policies)
	if err != nil {
		return err
	}
	// One verifier for the run, as one per process in the controller.
	verification := policy.Verification{Verifier: verify.New(verify.Options{}), Keychain: authn.DefaultKeychain, Lane: verify.LaneAdmission}
	resources, err := loadResources(o.resources)
	if err != nil {
		return err
	}

	report := testReport{Results: []testResult{}}
	denied := 0
	for _, r := range resources {
		d := set.Decide(ctx, r.obj, policy.Options{NoMatchPolicy: noMatch, PolicyTimeout: o.policyTimeout, Verification: verification})
		if !d.Allowed {
			denied++
		}
		for _, res := range d.Results {
			report.add(testResult{
				File: r.file, Kind: r.obj.Kind, Namespace: r.obj.Namespace, Name: r.obj.Name,
				Policy: res.Policy, Result: res.Result, Message: res.Message, Explanation: res.Explanation,
			})
		}
	}
	if o.output == "json" {
		err = writeJSON(out, report)
	} else {
		err = writeTable(out, report, denied, len(resources))
	}
	if err != nil {
		return err
	}
	if denied > 0 {
		return &exitError{code: exitDenied, err: fmt.Errorf("admission would deny %d of %d resources", denied, len(resources))}
	}
	return nil
}

// testResult is one line of `vigil test -o json`.
type testResult struct {
	File        string `json:"file"`
	Kind        string `json:"kind"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Policy      string `json:"policy"`
	Result      string `json:"result"`
	Message     string `json:"message"`
	Explanation string `json:"explanation"`
}

type testSummary struct {
	Pass  int `json:"pass"`
	Fail  int `json:"fail"`
	Warn  int `json:"warn"`
	Error int `json:"error"`
	Skip  int `json:"skip"`
}

type testReport struct {
	Results []testResult `json:"results"`
	Summary testSummary  `json:"summary"`
}

func (r *testReport) add(res testResult) {
	r.Results = append(r.Results, res)
	switch res.Result {
	case policy.ResultPass:
		r.Summary.Pass++
	case policy.ResultFail:
		r.Summary.Fail++
	case policy.ResultWarn:
		r.Summary.Warn++
	case policy.ResultError:
		r.Summary.Error++
	case policy.ResultSkip:
		r.Summary.Skip++
	}
}

func writeJSON(out io.Writer, report testReport) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(report)
}

func writeTable(out io.Writer, report testReport, denied, resources int) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tKIND\tNAME\tPOLICY\tRESULT\tMESSAGE")
	for _, r := range report.Results {
		name := r.Name
		if r.Namespace != "" {
			name = r.Namespace + "/" + name
		}
		msg := r.Explanation
		if msg == "" {
			msg, _, _ = strings.Cut(r.Message, "\n")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.File, r.Kind, name, r.Policy, r.Result, msg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := report.Summary
	verdict := fmt.Sprintf("admission would allow all %d resources", resources)
	if denied > 0 {
		verdict = fmt.Sprintf("admission would deny %d of %d resources", denied, resources)
	}
	_, err := fmt.Fprintf(out, "\n%d pass, %d fail, %d warn, %d error, %d skip: %s\n",
		s.Pass, s.Fail, s.Warn, s.Error, s.Skip, verdict)
	return err
}

// document is one YAML or JSON document of an input file, as JSON.
type document struct {
	file  string
	index int // 1-based
	json  []byte
	// apiVersion and kind of the document.
	apiVersion, kind string
}

func (d document) errorf(format string, args ...any) error {
	return badInput("%s: document %d: %s", d.file, d.index, fmt.Sprintf(format, args...))
}

// evaluationWorkers evaluate CUE and Rego bodies, as in the controller, so
// that a resource that makes a policy explode gets an `error` result (and
// exit 1) instead of crashing `vigil test`. They start only if a decision
// needs CUE or Rego, and stop with the process.
var evaluationWorkers = policy.NewWorkerPool(policy.WorkerPoolOptions{})

func loadPolicies(compiler policy.Compiler, paths []string) (*policy.Set, error) {
	docs, err := readDocuments(paths)
	if err != nil {
		return nil, err
	}
	var compiled []*policy.CompiledPolicy
	var broken []*policy.BrokenPolicy
	seen := map[string]document{}
	for _, d := range docs {
		cip, err := decodePolicy(d)
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[cip.Name]; ok {
			return nil, d.errorf("ClusterImagePolicy %q is also defined in %s, document %d", cip.Name, prev.file, prev.index)
		}
		seen[cip.Name] = d
		p, err := compiler.Compile(cip)
		switch {
		case err == nil:
			compiled = append(compiled, p)
		case missingTrustRoot(err):
			// As in a cluster without that TrustRoot, where the webhook
			// denies and the report says error: the policy is kept, not
			// ready, and its results are error.
			broken = append(broken, policy.NewBrokenPolicy(cip, err))
		default:
			return nil, d.errorf("ClusterImagePolicy %q is invalid: %v", cip.Name, err)
		}
	}
	return policy.NewSet(compiled, broken), nil
}

// missingTrustRoot: err is a trustRootRef (of keyless, ctlog or
// rfc3161timestamp) that names no TrustRoot of the --trust-root files. (A
// key.secretRef, which cannot be read offline at all, stays bad input.)
func missingTrustRoot(err error) bool {
	var invalid *policy.InvalidPolicyError
	return errors.As(err, &invalid) && invalid.Reason == policy.ReasonReferenceUnavailable &&
		strings.HasSuffix(invalid.Field, ".trustRootRef")
}

// testCompiler compiles policies for vigil test: bodies in the evaluation
// workers, trustRootRef resolved from the TrustRoot files, the public-good
// root loaded at the first keyless authority that needs it.
func testCompiler(trustRootPaths []string) (policy.Compiler, error) {
	roots := map[string]*verify.TrustRoot{}
	if len(trustRootPaths) > 0 {
		docs, err := readDocuments(trustRootPaths)
		if err != nil {
			return policy.Compiler{}, err
		}
		for _, d := range docs {
			tr, err := decodeTrustRoot(d)
			if err != nil {
				return policy.Compiler{}, err
			}
			if _, dup := roots[tr.Name]; dup {
				return policy.Compiler{}, d.errorf("TrustRoot %q is defined twice", tr.Name)
			}
			loaded, err := verify.LoadTrustRoot(tr, verify.TrustRootOptions{})
			if err != nil {
				return policy.Compiler{}, d.errorf("%v", err)
			}
			roots[tr.Name] = loaded
		}
	}
	publicGood := sync.OnceValues(func() (*verify.TrustRoot, error) {
		return verify.PublicGoodTrustRoot(verify.TrustRootOptions{})
	})
	return policy.Compiler{
		Workers: evaluationWorkers,
		TrustRoot: func(name string) (*verify.TrustRoot, error) {
			if tr, ok := roots[name]; ok {
				return tr, nil
			}
			return nil, fmt.Errorf("trustroot %q is not among the --trust-root files", name)
		},
		PublicGoodTrustRoot: publicGood,
	}, nil
}

// decodeTrustRoot decodes a TrustRoot strictly.
func decodeTrustRoot(d document) (*v1alpha1.TrustRoot, error) {
	var tr v1alpha1.TrustRoot
	if err := decodeStrict(d, "TrustRoot", []string{"policy.sigstore.dev/v1alpha1"}, &tr, &tr.ObjectMeta); err != nil {
		return nil, err
	}
	return &tr, nil
}

// decodeStrict decodes d into obj, a kind of one of apiVersions with a
// name: an unknown field is an error.
func decodeStrict(d document, kind string, apiVersions []string, obj any, meta *metav1.ObjectMeta) error {
	if d.kind != kind || !slices.Contains(apiVersions, d.apiVersion) {
		return d.errorf("expected a %s (%s), got %s", kind, strings.Join(apiVersions, " or "), describeKind(d))
	}
	strict, err := sigsjson.UnmarshalStrict(d.json, obj)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return d.errorf("%s: %s", kind, plainError(err))
	}
	if meta.Name == "" {
		return d.errorf("%s has no metadata.name", kind)
	}
	return nil
}

var policyAPIVersions = []string{"policy.sigstore.dev/v1alpha1", "policy.sigstore.dev/v1beta1"}

// decodePolicy decodes a ClusterImagePolicy strictly, as policy-controller's
// webhook and policy-tester do: an unknown field is an error. v1alpha1 and
// v1beta1 have the same schema.
func decodePolicy(d document) (*v1beta1.ClusterImagePolicy, error) {
	var cip v1beta1.ClusterImagePolicy
	if err := decodeStrict(d, "ClusterImagePolicy", policyAPIVersions, &cip, &cip.ObjectMeta); err != nil {
		return nil, err
	}
	return &cip, nil
}

type resource struct {
	file string
	obj  *policy.Object
}

func loadResources(paths []string) ([]resource, error) {
	docs, err := readDocuments(paths)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, badInput("no resources found in %s", strings.Join(paths, ", "))
	}
	out := make([]resource, 0, len(docs))
	for _, d := range docs {
		if err := checkResourceVersion(d); err != nil {
			return nil, err
		}
		if err := admission.CheckContainers(d.json); err != nil {
			return nil, d.errorf("%s: %v", describeKind(d), err)
		}
		obj, err := policy.DecodeObject(d.json)
		var unsupported *policy.UnsupportedKindError
		switch {
		case errors.As(err, &unsupported):
			return nil, d.errorf("unsupported kind %s: vigil test judges %s", describeKind(d), strings.Join(policy.SupportedKinds(), ", "))
		case err != nil:
			return nil, d.errorf("%s: %s", describeKind(d), plainError(err))
		}
		out = append(out, resource{file: d.file, obj: obj})
	}
	return out, nil
}

// resourceAPIVersions is the one apiVersion Kubernetes serves for each kind
// vigil test judges. Policies match kinds by version, so a Pod written as
// apiVersion v2 would be skipped by a policy that matches v1 Pods, and pass.
var resourceAPIVersions = map[string]string{
	"Pod":         "v1",
	"Deployment":  "apps/v1",
	"ReplicaSet":  "apps/v1",
	"StatefulSet": "apps/v1",
	"DaemonSet":   "apps/v1",
	"Job":         "batch/v1",
	"CronJob":     "batch/v1",
}

// checkResourceVersion refuses a resource without a kind, or whose
// apiVersion is not its kind's.
func checkResourceVersion(d document) error {
	kinds := strings.Join(policy.SupportedKinds(), ", ")
	if d.kind == "" {
		return d.errorf("%s: a resource needs a kind, one of %s", describeKind(d), kinds)
	}
	want, ok := resourceAPIVersions[d.kind]
	switch {
	case !ok || d.apiVersion == want:
		return nil // an unsupported kind is reported by loadResources
	case d.apiVersion == "":
		return d.errorf("%s has no apiVersion: a %s is %s", d.kind, d.kind, want)
	}
	return d.errorf("%s has apiVersion %s, which Kubernetes does not serve: a %s is %s", d.kind, d.apiVersion, d.kind, want)
}

func describeKind(d document) string {
	switch {
	case d.kind == "" && d.apiVersion == "":
		return "a document without apiVersion and kind"
	case d.kind == "":
		return "a document of apiVersion " + d.apiVersion + " without a kind"
	case d.apiVersion == "":
		return d.kind
	}
	return d.apiVersion + " " + d.kind
}

// readDocuments reads every non-empty document of the files under paths.
func readDocuments(paths []string) ([]document, error) {
	var docs []document
	for _, p := range paths {
		files, err := expandPath(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			fd, err := readFile(f)
			if err != nil {
				return nil, err
			}
			docs = append(docs, fd...)
		}
	}
	return docs, nil
}

var inputExtensions = []string{".yaml", ".yml", ".json"}

// expandPath lists a file, or the YAML and JSON files under a directory in
// lexical order.
func expandPath(p string) ([]string, error) {
	info, err := os.Stat(p)
	if err != nil {
		return nil, badInput("%v", err)
	}
	if !info.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && slices.Contains(inputExtensions, strings.ToLower(filepath.Ext(path))) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, badInput("%v", err)
	}
	if len(files) == 0 {
		return nil, badInput("%s: no .yaml, .yml or .json files", p)
	}
	return files, nil
}

// readFile reads the documents of file; a file without any is bad input
// (an empty policy file must not mean "no policies" to a CI gate).
func readFile(file string) ([]document, error) {
	data, err := readInput(file)
	if err != nil {
		return nil, err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []document
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			if len(docs) == 0 {
				return nil, badInput("%s: no document: the file is empty or holds only comments", file)
			}
			return docs, nil
		}
		d := document{file: file, index: i}
		if err != nil {
			return nil, d.errorf("%v", err)
		}
		// YAML would refuse a byte that is not UTF-8 without saying where.
		if err := policy.CheckUTF8(raw); err != nil {
			return nil, d.errorf("%v", err)
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return nil, d.errorf("malformed YAML: %v", err)
		}
		if t := bytes.TrimSpace(js); bytes.Equal(t, []byte("null")) || len(t) == 0 {
			continue // an empty document, e.g. after a leading ---
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, d.errorf("not a Kubernetes object: %s", plainError(err))
		}
		d.json, d.apiVersion, d.kind = js, tm.APIVersion, tm.Kind
		docs = append(docs, d)
	}
}

// maxInputFile bounds each file `vigil test` reads: a manifest of 16 MiB
// holds thousands of objects, and kube-apiserver takes at most 3 MiB at once.
const maxInputFile = 16 << 20

// readInput reads file if it is a regular file (or a symlink to one) of at
// most maxInputFile bytes. Devices, FIFOs and sockets are refused without
// being read: /dev/zero never ends and a FIFO blocks until someone writes.
func readInput(file string) ([]byte, error) {
	info, err := os.Stat(file)
	if err != nil {
		return nil, badInput("%v", err)
	}
	if err := regularFile(file, info); err != nil {
		return nil, err
	}
	// O_NONBLOCK: should file have become a FIFO since Stat, opening it does
	// not wait for a writer, and the check below refuses it.
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0) // #nosec G304 -- `vigil test` reads the files its user names, by design
	if err != nil {
		return nil, badInput("%v", err)
	}
	defer func() { _ = f.Close() }()
	if info, err = f.Stat(); err != nil {
		return nil, badInput("%v", err)
	}
	if err := regularFile(file, info); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxInputFile+1))
	if err != nil {
		return nil, badInput("%v", err)
	}
	if len(data) > maxInputFile {
		return nil, badInput("%s: larger than %d MiB, the most vigil test reads from one file: split it", file, maxInputFile>>20)
	}
	return data, nil
}

// regularFile refuses what is not a regular file of at most maxInputFile bytes.
func regularFile(file string, info os.FileInfo) error {
	m := info.Mode()
	what := ""
	switch {
	case m.IsRegular():
		if info.Size() > maxInputFile {
			return badInput("%s: %d bytes, more than %d MiB, the most vigil test reads from one file: split it", file, info.Size(), maxInputFile>>20)
		}
		return nil
	case m.IsDir():
		what = "a directory"
	case m&os.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		what = "a socket"
	case m&os.ModeDevice != 0:
		what = "a device"
	default:
		what = "not a regular file"
	}
	if l, err := os.Lstat(file); err == nil && l.Mode()&os.ModeSymlink != 0 {
		what += " (through a symlink)"
	}
	return badInput("%s is %s: vigil test reads only regular files", file, what)
}

// plainError says what a JSON decoding error says without Go's type names:
// "spec.hostNetwork: expected a boolean, got a string".
func plainError(err error) string {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	field := te.Field
	if field == "" {
		field = "the document"
	}
	got := te.Value
	switch {
	case got == "bool":
		got = "a boolean"
	case got == "array":
		got = "a list"
	case got == "object":
		got = "an object"
	case strings.HasPrefix(got, "number "):
		got = "the number " + strings.TrimPrefix(got, "number ")
	default:
		got = "a " + got
	}
	return fmt.Sprintf("%s: expected %s, got %s", field, jsonType(te.Type), got)
}

// jsonType names the JSON value a Go type decodes from.
func jsonType(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonType(t.Elem())
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another value"
}
