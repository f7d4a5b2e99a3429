#!/usr/bin/env bash
# make demo: replays the reference walkthrough ("Disallowing Non-Default
# Capabilities", Sigstore policy-controller) with real kubectl against
# `vigil dev`, then goes on where the walkthrough stops: a pod that is already
# running is judged again when the policies change.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/bin:$PATH"
state=$(mktemp -d)
export KUBECONFIG="$state/kubeconfig"
metrics=127.0.0.1:8080

bold=$'\e[1m'; dim=$'\e[2m'; reset=$'\e[0m'
[[ -t 1 ]] || { bold=; dim=; reset=; }

say() { printf '\n%s# %s%s\n' "$bold" "$*" "$reset"; }
# run prints a command as a person would type it, then its output.
run() { printf '%s$ %s%s\n' "$bold" "$*" "$reset"; "$@" 2>&1; return 0; }

stop() {
  if [[ -n "${dev_pid:-}" ]] && kill -0 "$dev_pid" 2>/dev/null; then
    kill -INT "$dev_pid"; wait "$dev_pid"
  fi
  rm -rf "$state"
}
trap stop EXIT

say "Starting vigil dev: etcd, kube-apiserver, controller manager, scheduler, 3 kwok nodes, Vigil in-process"
vigil dev --kubeconfig-out "$KUBECONFIG" --metrics-bind-address "$metrics" >"$state/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 1 180); do
  [[ -f $KUBECONFIG ]] && break
  if ! kill -0 "$dev_pid" 2>/dev/null; then echo "vigil dev failed:"; cat "$state/dev.log"; exit 1; fi
  sleep 1
done
[[ -f $KUBECONFIG ]] || { echo "vigil dev was not ready after 180s:"; tail -20 "$state/dev.log"; exit 1; }
grep '^vigil dev:' "$state/dev.log"

# wait_for: poll a command until it succeeds, so the demo shows results as
# soon as the controller has written them.
wait_for() { for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
report_of() { kubectl get policyreport "$(kubectl get pod "$1" -o jsonpath='{.metadata.uid}')" -o jsonpath="$2"; }

say "The walkthrough, step 1: namespace default opts in to the policy webhook"
run kubectl get ns -l policy.sigstore.dev/include=true

say "Step 2: with no ClusterImagePolicy, every image is denied"
run kubectl run --image cgr.dev/chainguard/nginx:latest nginx

say "Step 3: the policy that allows only the default Linux capabilities"
run kubectl apply -f config/samples/cip.yaml

say "Step 4: a pod that adds NET_ADMIN is denied"
run kubectl apply -f config/samples/pod-net-admin.yaml

say "Step 5: the same pod without the added capability is admitted"
run kubectl apply -f config/samples/pod-fixed.yaml

say "Step 6: clean up"
run kubectl delete pod yolo

say "Beyond the walkthrough: continuous verification. Replace the policy with a permissive one..."
run kubectl delete -f config/samples/cip.yaml
run kubectl apply -f config/samples/cip-permissive.yaml
say "...so the NET_ADMIN pod is admitted and runs"
run kubectl apply -f config/samples/pod-net-admin.yaml
wait_for kubectl wait --for=jsonpath='{.status.phase}'=Running pod/yolo --timeout=1s
wait_for test "$(report_of yolo '{.summary.pass}')" = 1
run kubectl get pods
run kubectl get policyreports

say "The stricter policy arrives: the running pod is judged again and its report turns fail"
run kubectl apply -f config/samples/cip.yaml
wait_for test "$(report_of yolo '{.summary.fail}')" = 1
run kubectl get policyreports
run kubectl get cip
printf '%s$ kubectl get policyreport <uid of pod yolo> -o jsonpath=...%s\n' "$bold" "$reset"
report_of yolo '{range .results[*]}{.policy}{": "}{.result}{" - "}{.message}{"\n"}{end}'
run kubectl get events --field-selector reason=PolicyViolation

say "The policy is edited to allow NET_ADMIN: the report turns pass"
run kubectl apply -f config/samples/cip-allow-net-admin.yaml
wait_for test "$(report_of yolo '{.summary.fail}')" = 0
run kubectl get policyreports
run kubectl get events --field-selector reason=PolicyCompliant

say "The pod is deleted: its report goes with it"
run kubectl delete pod yolo
wait_for test -z "$(kubectl get policyreports -o name)"
run kubectl get policyreports

say "Metrics at http://$metrics/metrics (what a Prometheus alert on drift reads)"
printf '%s$ curl -s http://%s/metrics | grep -E "^vigil_(policy_results|drift_total|admission_requests_total|report_writes_total)"%s\n' "$bold" "$metrics" "$reset"
if command -v curl >/dev/null; then fetch() { curl -s "$1"; } else fetch() { wget -qO- "$1"; }; fi
fetch "http://$metrics/metrics" | grep -E '^vigil_(policy_results|drift_total|admission_requests_total|report_writes_total)'

say "Stopping vigil dev"
