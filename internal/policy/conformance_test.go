package policy

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConformancePolicyCatalog runs every row of the policy-catalog
// expectations: the pod-security policies real users write for
// policy-controller. Every policy there is mode warn, so a failure is a
// warn result whose message contains every expected text.
func TestConformancePolicyCatalog(t *testing.T) {
	dir := sharedDir(t, "conformance", "policy-catalog")
	f, err := os.Open(filepath.Join(dir, "expectations.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	compiled := map[string]*CompiledPolicy{}
	rows := 0
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if line == 1 || strings.TrimSpace(sc.Text()) == "" {
			continue // header
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 4 {
			t.Fatalf("expectations.tsv:%d: want at least 4 columns, got %q", line, sc.Text())
		}
		name, policyFile, resource, expect := cols[0], cols[1], cols[2], cols[3]
		var contains []string
		if len(cols) > 4 && cols[4] != "" {
			contains = strings.Split(cols[4], " || ")
		}
		rows++
		t.Run(name+"/"+policyFile, func(t *testing.T) {
			p, ok := compiled[policyFile]
			if !ok {
				p = mustCompile(t, readCIP(t, filepath.Join(dir, "policies", policyFile)))
				compiled[policyFile] = p
			}
			obj := readObject(t, filepath.Join(dir, "testdata", resource))
			d := NewSet([]*CompiledPolicy{p}, nil).Decide(t.Context(), obj, Options{})
			if len(d.Results) != 1 || d.Results[0].Policy != p.Name {
				t.Fatalf("results = %+v, want one result of %s", d.Results, p.Name)
			}
			r := d.Results[0]
			switch expect {
			case "pass":
				if r.Result != ResultPass || len(d.Warnings) != 0 || !d.Allowed {
					t.Fatalf("result %s, warnings %q, want pass:\n%s", r.Result, d.Warnings, r.Message)
				}
			case "fail":
				if r.Result != ResultWarn || !d.Allowed || len(d.Warnings) == 0 {
					t.Fatalf("result %s (allowed %v, warnings %q), want warn", r.Result, d.Allowed, d.Warnings)
				}
				for _, c := range contains {
					if !strings.Contains(r.Message, c) {
						t.Errorf("message does not contain %q:\n%s", c, r.Message)
					}
				}
				if r.Explanation == "" {
					t.Error("no explanation")
				}
				t.Logf("explanation: %s", r.Explanation)
			default:
				t.Fatalf("expectations.tsv:%d: unknown expectation %q", line, expect)
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rows != 81 {
		t.Errorf("ran %d rows, the corpus has 81", rows)
	}
}
