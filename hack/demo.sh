#!/usr/bin/env bash
# make demo: replays the reference walkthrough ("Disallowing Non-Default
# Capabilities", Sigstore policy-controller) with real kubectl against
# `vigil dev`, then goes on where the walkthrough stops: a pod that is already
# running is judged again when the policies change. Then an image is signed
# with the real cosign CLI, the key rotated and the image signed again; a
# last scene attests an image with a vulnerability scan and watches the scan
# age past the policy's limit while nothing in the cluster changes.
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
vigil dev --kubeconfig-out "$KUBECONFIG" --metrics-bind-address "$metrics" --verification-failure-ttl=5s --clock-recheck=5s >"$state/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 1 180); do
  [[ -f $KUBECONFIG ]] && break
  if ! kill -0 "$dev_pid" 2>/dev/null; then echo "vigil dev failed:"; cat "$state/dev.log"; exit 1; fi
  sleep 1
done
[[ -f $KUBECONFIG ]] || { echo "vigil dev was not ready after 180s:"; tail -20 "$state/dev.log"; exit 1; }
grep '^vigil dev:' "$state/dev.log"

# wait_for: run a command every half second until it succeeds, so the demo
# shows results as soon as the controller has written them; after 30 s the
# demo stops, saying what it waited for. The command is run again each time:
# pass a function (report_is, cip_ready), never "$(...)", which the shell
# would expand once, before the first try.
wait_for() {
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "the demo waited 30s in vain for: $*" >&2
  exit 1
}
report_of() { kubectl get policyreport "$(kubectl get pod "$1" -o jsonpath='{.metadata.uid}')" -o jsonpath="$2"; }
# report_is POD FIELD VALUE: the pod's report has VALUE at FIELD (a jsonpath).
report_is() { [[ "$(report_of "$1" "$2")" == "$3" ]]; }
no_reports() { [[ -z "$(kubectl get policyreports -o name)" ]]; }
cip_ready() { [[ "$(kubectl get cip "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }

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
wait_for report_is yolo '{.summary.pass}' 1
run kubectl get pods
run kubectl get policyreports

say "The stricter policy arrives: the running pod is judged again and its report turns fail"
run kubectl apply -f config/samples/cip.yaml
wait_for report_is yolo '{.summary.fail}' 1
run kubectl get policyreports
run kubectl get cip
printf '%s$ kubectl get policyreport <uid of pod yolo> -o jsonpath=...%s\n' "$bold" "$reset"
report_of yolo '{range .results[*]}{.policy}{": "}{.result}{" - "}{.message}{"\n"}{end}'
run kubectl get events --field-selector reason=PolicyViolation

say "The policy is edited to allow NET_ADMIN: the report turns pass"
run kubectl apply -f config/samples/cip-allow-net-admin.yaml
wait_for report_is yolo '{.summary.fail}' 0
run kubectl get policyreports
run kubectl get events --field-selector reason=PolicyCompliant

say "The pod is deleted: its report goes with it"
run kubectl delete pod yolo
wait_for no_reports
run kubectl get policyreports

say "Metrics at http://$metrics/metrics (what a Prometheus alert on drift reads)"
printf '%s$ curl -s http://%s/metrics | grep -E "^vigil_(policy_results|drift_total|admission_requests_total|report_writes_total)"%s\n' "$bold" "$metrics" "$reset"
if command -v curl >/dev/null; then fetch() { curl -s "$1"; } else fetch() { wget -qO- "$1"; }; fi
fetch "http://$metrics/metrics" | grep -E '^vigil_(policy_results|drift_total|admission_requests_total|report_writes_total)'

say "Signatures: vigil dev serves an OCI registry; crane pushes two images to it"
reg=$(sed -n 's/.*an OCI registry (plain HTTP) at \([^,]*\),.*/\1/p' "$state/dev.log")
export COSIGN_PASSWORD=demo TUF_ROOT="$state/tuf"
mkdir -p "$state/image"
push() { # push TAG CONTENT: an image of one layer holding CONTENT; prints its digest reference
  printf '%s\n' "$2" >"$state/image/content"; tar -C "$state/image" -cf "$state/image/layer.tar" content
  printf '%s$ crane append --insecure -f layer.tar -t %s%s\n' "$bold" "$1" "$reset" >&2
  crane append --insecure -f "$state/image/layer.tar" -t "$1" 2>/dev/null
}
signed=$(push "$reg/demo/app:signed" "release 1.0"); echo "$signed"
unsigned=$(push "$reg/demo/app:unsigned" "a local build"); echo "$unsigned"
# cosign_offline ARGS... IMAGE: the real cosign CLI, offline (no
# transparency log, no Fulcio), on IMAGE in vigil dev's plain-HTTP registry.
cosign_offline() {
  local args=("${@:1:$#-1}" --yes --tlog-upload=false --use-signing-config=false --new-bundle-format=false --allow-http-registry "${@: -1}")
  printf '%s$ cosign %s%s\n' "$bold" "${args[*]}" "$reset"
  cosign "${args[@]}" 2>&1 | grep -v '^Flag --' # deprecation notices of the offline flags
}
sign() { cosign_offline sign --key "$1" "$2"; } # sign KEY IMAGE

say "A key pair made by cosign signs the first image"
run cosign generate-key-pair --output-key-prefix "$state/release-1"
sign "$state/release-1.key" "$signed"

# apply_keyed_policy FILE PUB: applies FILE with the PEM of PUB in place of
# its placeholder line.
apply_keyed_policy() {
  printf '%s$ kubectl apply -f %s  # with %s in place of __PUBLIC_KEY__%s\n' "$bold" "$1" "$(basename "$2")" "$reset"
  awk -v pem="$2" '/__PUBLIC_KEY__/ { indent = substr($0, 1, index($0, "__PUBLIC_KEY__") - 1)
    while ((getline line < pem) > 0) print indent line; close(pem); next } { print }' "$1" | kubectl apply -f - 2>&1
}
apply_signed_policy() { apply_keyed_policy config/samples/signatures/cip-signed.yaml "$1"; } # apply_signed_policy PUB

say "The policy: images under demo/ must be signed by that key (the capability policies go)"
run kubectl delete cip allow-all non-default-capabilities-cue
apply_signed_policy "$state/release-1.pub"
wait_for cip_ready signed-images

say "The unsigned image is denied; the signed one is admitted and runs"
run kubectl run unsigned --image "$unsigned"
run kubectl run signed --image "$signed"
wait_for kubectl wait --for=jsonpath='{.status.phase}'=Running pod/signed --timeout=1s
wait_for report_is signed '{.summary.pass}' 1
run kubectl get policyreports

say "The key is rotated in the policy: the running pod's report turns fail"
run cosign generate-key-pair --output-key-prefix "$state/release-2"
apply_signed_policy "$state/release-2.pub"
wait_for report_is signed '{.summary.fail}' 1
run kubectl get policyreports
printf '%s$ kubectl get policyreport <uid of pod signed> -o jsonpath=...%s\n' "$bold" "$reset"
report_of signed '{range .results[*]}{.policy}{": "}{.result}{" - "}{.message}{"\n"}{end}'
run kubectl get events --field-selector reason=PolicyViolation,involvedObject.name=signed

say "The image is signed with the new key: once the failure's TTL (--verification-failure-ttl=5s here) is over, the report turns pass"
sign "$state/release-2.key" "$signed"
wait_for report_is signed '{.summary.pass}' 1
run kubectl get policyreports
run kubectl get events --field-selector reason=PolicyCompliant,involvedObject.name=signed
printf '%s$ curl -s http://%s/metrics | grep ^vigil_verifications_total%s\n' "$bold" "$metrics" "$reset"
fetch "http://$metrics/metrics" | grep '^vigil_verifications_total'

say "Attestations and time: cosign attests a new image with a vulnerability scan finished now"
scanned=$(push "$reg/demo-scan/app:1" "a scanned build"); echo "$scanned"
scan_epoch=$(date -u +%s)
finished=$(date -u -d "@$scan_epoch" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$scan_epoch" +%Y-%m-%dT%H:%M:%SZ)
# What `trivy --format cosign-vuln` writes, without findings.
printf '{"scanner":{"uri":"pkg:github/aquasecurity/trivy@v0.50.0","version":"0.50.0","result":{"Results":[]}},"metadata":{"scanStartedOn":"%s","scanFinishedOn":"%s"}}\n' \
  "$finished" "$finished" >"$state/scan.json"
run cat "$state/scan.json"
cosign_offline attest --key "$state/release-2.key" --type vuln --predicate "$state/scan.json" "$scanned"

say "The policy: images under demo-scan/ need a scan signed by that key, at most 15 seconds old (the catalog's allows 15 days)"
apply_keyed_policy config/samples/attestations/cip-scan-age.yaml "$state/release-2.pub"
wait_for cip_ready scan-age
run kubectl run scanned --image "$scanned"
wait_for report_is scanned '{.summary.pass}' 1
run kubectl get policyreports

say "Nothing in the cluster changes; once the scan is 15 seconds old the report turns fail"
wait_for report_is scanned '{.summary.fail}' 1
echo "(the report turned fail $(($(date -u +%s) - scan_epoch))s after the scan finished)"
run kubectl get policyreports
printf '%s$ kubectl get policyreport <uid of pod scanned> -o jsonpath=...%s\n' "$bold" "$reset"
report_of scanned '{range .results[*]}{.policy}{": "}{.result}{" - "}{.message}{"\n"}{end}'
run kubectl get events --field-selector reason=PolicyViolation,involvedObject.name=scanned
pattern='^vigil_(drift_total\{policy="scan-age"|evaluations_total\{.*trigger="time")'
printf "%s\$ curl -s http://%s/metrics | grep -E '%s'%s\n" "$bold" "$metrics" "$pattern" "$reset"
fetch "http://$metrics/metrics" | grep -E "$pattern"

say "Stopping vigil dev"
