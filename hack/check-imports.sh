#!/usr/bin/env bash
# Checks the import rules of DESIGN.md's layout on the production code (tests
# may import what they need): what a package may not depend on, directly or
# through others. Prints every broken rule and fails if there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=github.com/vigil-dev/vigil

# Every package of the module with all it depends on, one line each.
deps=$(go list -f '{{.ImportPath}} {{join .Deps " "}}' ./... | sed "s|$mod/||g")

# forbid PACKAGES DEPENDENCY WHY [EXCEPT]: no package matching the regexp
# PACKAGES, but those matching EXCEPT, depends on one matching DEPENDENCY.
failed=0
forbid() {
  local bad
  bad=$(awk -v p="^($1)\$" -v d="^($2)\$" -v why="$3" -v x="^(${4:-})\$" '
    $1 ~ p && $1 !~ x { for (i = 2; i <= NF; i++) if ($i ~ d) { printf "import rule broken: %s depends on %s (%s)\n", $1, $i, why } }' <<<"$deps")
  if [[ -n $bad ]]; then echo "$bad"; failed=1; fi
}

forbid 'internal/policy' 'sigs\.k8s\.io/controller-runtime/.*|internal/metrics|github\.com/prometheus/.*' \
  "the decision is pure: it reports through interfaces its callers supply"
forbid 'controllers' 'internal/admission' "the two adapters share only the policy engine"
forbid 'internal/admission' 'controllers' "the two adapters share only the policy engine"
forbid '.*' 'internal/manager' "only cmd/ wires the manager" 'cmd/.*|hack/.*|internal/manager'
forbid '.*' 'internal/devenv' "vigil dev's control plane is no part of the manager" 'cmd/vigil|internal/devenv'
exit $failed
