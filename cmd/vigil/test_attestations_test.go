package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// vigil test judges attestations and fetchConfigFile with the catalog's
// policies (pointed at the fixture by verifytest.CatalogPolicy): a cosign
// vulnerability attestation signed with a key, a keyless scan-age
// attestation from a VirtualSigstore against a --trust-root file, and an
// image's config file.
func TestVigilTestAttestations(t *testing.T) {
	corpus := filepath.Join("..", "..", "..", "shared", "conformance", "supply-chain", "policies")
	if _, err := os.Stat(corpus); err != nil {
		t.Skipf("the third-party corpus in ../shared/conformance/supply-chain is not present: %v", err)
	}
	cosign := verifytest.FindCosign(t)
	reg := verifytest.NewRegistry(t)
	key, pub := cosign.GenerateKey(t)
	vs := verifytest.NewVirtualSigstore(t)
	now := time.Now()
	clean, vulnerable := reg.PushImage(t, "app/clean"), reg.PushImage(t, "app/vulnerable")
	cosign.Attest(t, key, clean, false, "vuln", verifytest.VulnPredicate(now, 0, 0))
	cosign.Attest(t, key, vulnerable, false, "vuln", verifytest.VulnPredicate(now, 9, 1))
	fresh, stale := reg.PushImage(t, "app/fresh"), reg.PushImage(t, "app/stale")
	const scanType = "cosign.sigstore.dev/attestation/vuln/v1"
	verifytest.AttestKeylessBundle(t, vs, fresh, "scanner@example.com", "https://accounts.google.com", scanType, verifytest.VulnPredicate(now.Add(-time.Hour), 0, 0))
	verifytest.AttestKeylessBundle(t, vs, stale, "scanner@example.com", "https://accounts.google.com", scanType, verifytest.VulnPredicate(now.Add(-20*24*time.Hour), 0, 0))
	recent := reg.PushCreated(t, "app/recent", now.Add(-time.Hour))
	old := reg.PushCreated(t, "app/old", now.Add(-40*24*time.Hour))
	t.Setenv("DOCKER_CONFIG", t.TempDir())

	dir := t.TempDir()
	policy := func(file string) string {
		cip := verifytest.CatalogPolicy(t, filepath.Join(corpus, file), reg.Host, pub, "ci-root")
		out, err := yaml.Marshal(cip)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, dir, file, string(out))
	}
	trustRoot := trustRootFile(t, dir, vs)
	vulns, scanAge, imageAge := policy("vuln-no-high-or-critical-rego.yaml"), policy("vuln-maximum-scan-age-rego.yaml"), policy("maximum-image-age-rego.yaml")
	for _, tc := range []struct {
		name, policy, image string
		code                int
		result, message     string
	}{
		{"no high or critical vulnerabilities", vulns, clean.String(), exitOK, "pass", ""},
		{"high and critical vulnerabilities", vulns, vulnerable.String(), exitDenied, "fail", "Found HIGH '9' and CRITICAL '1' vulnerabilities"},
		{"a recent scan", scanAge, fresh.String(), exitOK, "pass", ""},
		{"a scan too old", scanAge, stale.String(), exitDenied, "fail", "Scan exceeds maximum allowed age."},
		{"a recent image", imageAge, recent.String(), exitOK, "pass", ""},
		{"an image too old (warn mode)", imageAge, old.String(), exitOK, "warn", "Image exceeds maximum allowed age."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml",
				"apiVersion: v1\nkind: Pod\nmetadata: {name: app}\nspec:\n  containers:\n  - {name: app, image: "+tc.image+"}\n")
			checkOneResult(t, []string{"--policy", tc.policy, "--trust-root", trustRoot, "--resource", pod}, tc.code, tc.result, tc.message)
		})
	}
}
