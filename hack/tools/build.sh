#!/usr/bin/env bash
# Builds the pinned tools into BIN (default ./bin) from the Go module proxy.
# Idempotent: a tool is rebuilt only when its binary is missing or the module
# that pins it (go.mod and go.sum) changed since it was built.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/bin}
stamps=$bin/.stamps
mkdir -p "$bin" "$stamps"

# name  module-dir  package
tools=(
  "etcd                    hack/tools/etcd      go.etcd.io/etcd/server/v3"
  "kube-apiserver          hack/tools           k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-controller-manager hack/tools           k8s.io/kubernetes/cmd/kube-controller-manager"
  "kube-scheduler          hack/tools           k8s.io/kubernetes/cmd/kube-scheduler"
  "kubectl                 hack/tools           k8s.io/kubernetes/cmd/kubectl"
  "kwok                    hack/tools           sigs.k8s.io/kwok/cmd/kwok"
  "controller-gen          hack/tools           sigs.k8s.io/controller-tools/cmd/controller-gen"
  "promtool                hack/tools/promtool  github.com/prometheus/prometheus/cmd/promtool"
  "gosec                   hack/tools/gosec     github.com/securego/gosec/v2/cmd/gosec"
  "helm                    hack/tools/helm      helm.sh/helm/v3/cmd/helm"
  "cosign                  hack/tools/cosign    github.com/sigstore/cosign/v3/cmd/cosign"
  "crane                   hack/tools/crane     github.com/google/go-containerregistry/cmd/crane"
)

only=("$@")
for row in "${tools[@]}"; do
  read -r name dir pkg <<<"$row"
  if ((${#only[@]})) && [[ ! " ${only[*]} " == *" $name "* ]]; then continue; fi
  pin=$(cat "$root/$dir/go.mod" "$root/$dir/go.sum" | sha256sum | cut -c1-16)
  if [[ -x $bin/$name && -f $stamps/$name && $(cat "$stamps/$name") == "$pin" ]]; then
    echo "tools: $name is up to date"
    continue
  fi
  echo "tools: building $name ($pkg, pinned in $dir/go.mod)"
  start=$SECONDS
  (cd "$root/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$bin/$name" "$pkg")
  echo "$pin" >"$stamps/$name"
  echo "tools: built $name in $((SECONDS - start))s"
done
