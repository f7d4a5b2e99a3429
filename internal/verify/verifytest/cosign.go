// Package verifytest builds signed and attested images offline for tests:
// the real cosign CLI (built by `make tools`) signs and attests with a key,
// into any registry a test runs (go-containerregistry's in-memory one).
// Tests of the decision reuse it to judge the catalog's supply-chain
// policies against fixtures that make them pass and fail.
package verifytest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Cosign is the real cosign CLI, run offline: no transparency log, no
// signing config, plain-HTTP registries allowed.
type Cosign struct {
	Bin string
	// Username and Password log in to the registry, when set.
	Username, Password string
}

// FindCosign returns the cosign CLI ($COSIGN, bin/cosign of the repository
// or /work/main/bin/cosign), or skips the test with a message.
func FindCosign(t testing.TB) *Cosign {
	t.Helper()
	bin := os.Getenv("COSIGN")
	if bin == "" {
		for _, c := range []string{"../../bin/cosign", "../../../bin/cosign", "/work/main/bin/cosign"} {
			if _, err := os.Stat(c); err == nil {
				bin = c
				break
			}
		}
	}
	if bin == "" {
		t.Skip("no cosign binary: run `make tools` (or set COSIGN) to test against signatures written by the real cosign CLI")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	return &Cosign{Bin: abs}
}

// GenerateKey makes a key pair (no password) and returns the private key's
// path and the public key's PEM.
func (c *Cosign) GenerateKey(t testing.TB) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(c.Bin, "generate-key-pair") // #nosec G204 -- test support: the cosign CLI the tests found
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "cosign.pub")) // #nosec G304 -- the key cosign just wrote in the test's own directory
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "cosign.key"), pub
}

// Sign signs d with key: a sigstore bundle referrer when bundle is set,
// else the legacy .sig tag. env adds variables (COSIGN_REPOSITORY).
func (c *Cosign) Sign(t testing.TB, key string, d name.Digest, bundle bool, env ...string) {
	t.Helper()
	c.run(t, []string{"sign"}, key, d, bundle, env...)
}

// Attest attests d with key: `cosign attest --type typ` with predicate
// (marshalled to JSON), as a bundle referrer or the legacy .att tag.
func (c *Cosign) Attest(t testing.TB, key string, d name.Digest, bundle bool, typ string, predicate any, env ...string) {
	t.Helper()
	raw, err := json.Marshal(predicate)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "predicate.json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	c.run(t, []string{"attest", "--type", typ, "--predicate", file}, key, d, bundle, env...)
}

func (c *Cosign) run(t testing.TB, command []string, key string, d name.Digest, bundle bool, env ...string) {
	t.Helper()
	args := append(command, "--key", key, "--yes", "--tlog-upload=false", "--use-signing-config=false",
		"--allow-insecure-registry", "--allow-http-registry", "--new-bundle-format="+fmt.Sprint(bundle))
	if c.Username != "" {
		args = append(args, "--registry-username", c.Username, "--registry-password", c.Password)
	}
	args = append(args, d.String())
	cmd := exec.Command(c.Bin, args...) // #nosec G204 -- test support: the cosign CLI the tests found, with their own arguments
	cmd.Env = append(append(os.Environ(), "COSIGN_PASSWORD=", "TUF_ROOT="+t.TempDir()), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// VulnPredicate is a cosign vulnerability report (`--type vuln`, what
// `trivy --format cosign-vuln` writes) finished at scanned, with high and
// critical findings: the input of the catalog's vuln-* policies.
func VulnPredicate(scanned time.Time, high, critical int) map[string]any {
	var results []map[string]any
	for i := range high + critical {
		sev := "HIGH"
		if i >= high {
			sev = "CRITICAL"
		}
		results = append(results, map[string]any{"VulnerabilityID": fmt.Sprintf("CVE-2026-%04d", i), "Severity": sev})
	}
	return map[string]any{
		"scanner": map[string]any{"uri": "pkg:github/aquasecurity/trivy@v0.50.0", "version": "0.50.0",
			"result": map[string]any{"Results": []map[string]any{{"Vulnerabilities": results}}}},
		"metadata": map[string]any{"scanStartedOn": scanned.Add(-time.Minute).Format(time.RFC3339),
			"scanFinishedOn": scanned.Format(time.RFC3339)},
	}
}
