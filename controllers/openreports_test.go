package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openreportsv1alpha1 "github.com/vigil-dev/vigil/apis/openreports/v1alpha1"
	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	reportsv1alpha2 "github.com/vigil-dev/vigil/apis/wgpolicyk8s/v1alpha2"
	"github.com/vigil-dev/vigil/controllers"
	"github.com/vigil-dev/vigil/internal/report"
	"github.com/vigil-dev/vigil/internal/testenv"
)

// With --report-api=openreports.io/v1alpha1 Vigil writes one Report per pod
// with the content the PolicyReport of the default mode has (source: vigil at
// the top besides), writes no PolicyReport, and deletes the Report when the
// pod goes. The same pods are judged in one mode, then the other.
func TestOpenReports(t *testing.T) {
	testenv.Integration(t)
	ns := newNamespace("openreports", true)
	create(t, ns)
	// Pass, fail and warn: one policy passes every pod of the test, two of
	// different modes fail the bad one.
	badImage := image("openreports", "bad")
	create(t, newPolicy("openreports-all", glob("openreports")))
	create(t, newPolicy("openreports-enforce", []string{badImage}, disallowing(badImage+" is not signed")))
	create(t, newPolicy("openreports-warn", []string{badImage}, inMode(v1beta1.ModeWarn), disallowing(badImage+" will need an SBOM")))
	pods := map[string]*corev1.Pod{
		"good": newPod(ns.Name, "good", image("openreports", "good")),
		"bad":  newPod(ns.Name, "bad", badImage),
	}
	for _, p := range pods {
		create(t, p)
	}
	want := map[string]results{
		"good": {"openreports-all": pass},
		"bad":  {"openreports-all": pass, "openreports-enforce": fail, "openreports-warn": warn},
	}

	// The default mode first: the PolicyReports to compare with.
	v := startVigil(t, controllers.DefaultOptions())
	policyReports := map[string]*reportsv1alpha2.PolicyReport{}
	for name, p := range pods {
		policyReports[name] = waitForResults(t, p, want[name])
	}
	v.stop(t)
	// The openreports mode neither reads nor deletes PolicyReports: remove
	// them, so that any found later was written by that mode.
	for _, rep := range policyReports {
		deleteObject(t, rep)
		waitForGone(t, rep.DeepCopy())
	}

	startVigilReporting(t, report.OpenReports, controllers.DefaultOptions(), nil)
	for name, p := range pods {
		var rep *openreportsv1alpha1.Report
		eventually(t, settleTimeout, func() error {
			var err error
			rep, err = openReportOf(p)
			return err
		})
		if err := sameAsPolicyReport(rep, policyReports[name]); err != nil {
			t.Errorf("pod %s: %v", name, err)
		}
	}

	rows := kubectlRows(t, "get", "reps", "-n", ns.Name, "--sort-by=.scope.name")
	wantRows := [][]string{
		{"NAME", "KIND", "NAME", "PASS", "FAIL", "WARN", "ERROR", "SKIP", "AGE"},
		{string(pods["bad"].UID), "Pod", "bad", "1", "1", "1", "0", "0"},
		{string(pods["good"].UID), "Pod", "good", "1", "0", "0", "0", "0"},
	}
	for i, want := range wantRows {
		if i >= len(rows) || len(rows[i]) != 9 || !reflect.DeepEqual(rows[i][:len(want)], want) {
			t.Errorf("kubectl get reps: line %d = %v, want %v (then an age)", i, rows[min(i, len(rows)-1)], want)
		}
	}

	// A Report looking like Vigil's, of a pod that does not exist, goes.
	ghost := &openreportsv1alpha1.Report{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns.Name, Name: "stale-ghost",
			Labels: map[string]string{report.ManagedByLabel: report.ManagedByValue},
		},
		Scope: &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns.Name, Name: "ghost"},
	}
	create(t, ghost)
	waitForGone(t, ghost)

	// The pod goes, its Report goes.
	deleteObject(t, pods["bad"])
	eventually(t, settleTimeout, func() error {
		_, err := openReportOf(pods["bad"])
		if err == nil {
			return fmt.Errorf("pod %s is deleted and still has its Report", pods["bad"].Name)
		}
		if len(openReportsOf(t, ns.Name, "bad")) > 0 {
			return err
		}
		return nil
	})
	if _, err := openReportOf(pods["good"]); err != nil {
		t.Errorf("the pod that stays lost its Report: %v", err)
	}

	var written reportsv1alpha2.PolicyReportList
	if err := k8s.List(context.Background(), &written, client.InNamespace(ns.Name)); err != nil {
		t.Fatal(err)
	}
	if len(written.Items) > 0 {
		t.Errorf("with --report-api=%s Vigil wrote %d PolicyReport(s), want none", report.OpenReports, len(written.Items))
	}
}

// openReportsOf lists Vigil's Reports about the pod named name in namespace.
func openReportsOf(t *testing.T, namespace, name string) []openreportsv1alpha1.Report {
	t.Helper()
	var list openreportsv1alpha1.ReportList
	if err := k8s.List(context.Background(), &list, client.InNamespace(namespace),
		client.MatchingLabels{report.ManagedByLabel: report.ManagedByValue}); err != nil {
		t.Fatalf("list Reports: %v", err)
	}
	var out []openreportsv1alpha1.Report
	for _, r := range list.Items {
		if r.Scope != nil && r.Scope.Kind == "Pod" && r.Scope.Name == name {
			out = append(out, r)
		}
	}
	return out
}

// openReportOf reads the one Report of pod, named by its UID.
func openReportOf(pod *corev1.Pod) (*openreportsv1alpha1.Report, error) {
	var rep openreportsv1alpha1.Report
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: pod.Namespace, Name: string(pod.UID)}, &rep); err != nil {
		return nil, fmt.Errorf("Report of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return &rep, nil
}

// sameAsPolicyReport says how rep differs from polr, timestamps and the
// objects' own metadata (UID, resourceVersion, ...) aside. The results and
// the summary are compared as JSON, the form readers see.
func sameAsPolicyReport(rep *openreportsv1alpha1.Report, polr *reportsv1alpha2.PolicyReport) error {
	if rep.Source != report.Source {
		return fmt.Errorf("source %q, want %q", rep.Source, report.Source)
	}
	if rep.Name != polr.Name || !reflect.DeepEqual(rep.Labels, polr.Labels) {
		return fmt.Errorf("name %s labels %v, want %s %v", rep.Name, rep.Labels, polr.Name, polr.Labels)
	}
	if !reflect.DeepEqual(rep.OwnerReferences, polr.OwnerReferences) || !reflect.DeepEqual(rep.Scope, polr.Scope) {
		return fmt.Errorf("owners %+v scope %+v, want %+v %+v", rep.OwnerReferences, rep.Scope, polr.OwnerReferences, polr.Scope)
	}
	if got, want := asJSON(rep.Summary), asJSON(polr.Summary); !reflect.DeepEqual(got, want) {
		return fmt.Errorf("summary %v, want %v", got, want)
	}
	got, want := asJSON(rep.Results), asJSON(polr.Results)
	for _, rs := range []any{got, want} {
		for _, r := range rs.([]any) {
			delete(r.(map[string]any), "timestamp")
		}
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("results\n  %v\nwant\n  %v", got, want)
	}
	return nil
}

func asJSON(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		panic(err)
	}
	return out
}
