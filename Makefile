# Vigil: continuous verification of pods against Sigstore ClusterImagePolicies.
# `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(BIN)/controller-gen
KUBECTL ?= $(BIN)/kubectl
PROMTOOL ?= $(BIN)/promtool
GOSEC ?= $(BIN)/gosec
# envtest and `vigil dev` take etcd, kube-apiserver and kubectl from here.
export KUBEBUILDER_ASSETS ?= $(BIN)

# -count=1: every run really runs; results of envtest and e2e tests depend on
# binaries and files that go test does not track.
GO_TEST_FLAGS ?= -count=1
IMG ?= vigil:dev

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets and what they do.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
# The chart installs what config/default does, so not the openreports.io CRDs:
# config/overlays/openreports adds them from its own copy (kustomize reads only
# files below an overlay's directory). The report API's ClusterRole,
# vigil-manager-reports, is generated once per API: config/rbac/reports for
# wgpolicyk8s.io, and config/overlays/openreports/rbac, which that overlay
# patches in instead.
manifests: $(CONTROLLER_GEN) ## Generate the CRDs, RBAC (from markers) and webhook configuration (from internal/admission).
	$(CONTROLLER_GEN) crd paths=./apis/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=vigil-manager-role paths=./controllers/... paths=./internal/manager paths=./internal/policystore output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=vigil-manager-reports paths=./internal/manager/reportrbac/wgpolicyk8s output:rbac:artifacts:config=config/rbac/reports
	$(CONTROLLER_GEN) rbac:roleName=vigil-manager-reports paths=./internal/manager/reportrbac/openreports output:rbac:artifacts:config=config/overlays/openreports/rbac
	go run ./hack/webhookgen > config/webhook/manifests.yaml
	rm -f charts/vigil/crds/*.yaml; cp $$(ls config/crd/bases/*.yaml | grep -v '/openreports\.io_') charts/vigil/crds/
	rm -f config/overlays/openreports/crds/*.yaml; cp config/crd/bases/openreports.io_*.yaml config/overlays/openreports/crds/

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods for the API types.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./apis/...

.PHONY: fmt
fmt: ## Format the Go code.
	gofmt -w $$(git ls-files '*.go' | grep -v '^hack/tools/')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: vet ## Check formatting and run go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^hack/tools/')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: verify
GENERATED = apis/*/*/zz_generated.deepcopy.go config/crd/bases/*.yaml config/rbac/role.yaml config/rbac/reports/role.yaml config/overlays/openreports/rbac/role.yaml config/webhook/manifests.yaml charts/vigil/crds/*.yaml config/overlays/openreports/crds/*.yaml

verify: $(CONTROLLER_GEN) lint ## Fail when generated files (DeepCopy, CRDs, RBAC, webhooks) or go.mod are stale, code is not formatted, or an import rule of DESIGN.md is broken.
	@if ! diff=$$(go mod tidy -diff); then echo "go.mod/go.sum are not tidy; run go mod tidy:"; echo "$$diff"; exit 1; fi
	hack/check-imports.sh
	@before=$$(cat $(GENERATED) 2>/dev/null | sha256sum); \
	  $(MAKE) -s generate manifests >/dev/null; \
	  after=$$(cat $(GENERATED) | sha256sum); \
	  if [ "$$before" != "$$after" ]; then \
	    echo "generated files were stale (now regenerated): review and commit $(GENERATED)"; exit 1; fi

##@ Build

.PHONY: build
build: ## Build bin/vigil.
	go build -o $(BIN)/vigil ./cmd/vigil

.PHONY: docker-build
docker-build: ## Build the image IMG (default vigil:dev). Needs a Docker daemon, which these dev machines do not have.
	@if ! docker info >/dev/null 2>&1; then \
	  echo "docker-build: this machine has no Docker daemon ('docker info' failed), so no image was built."; \
	  echo "Build $(IMG) where Docker runs: make docker-build IMG=..., then push it (see docs/install.md)."; \
	  exit 1; fi
	docker build -t $(IMG) .

.PHONY: tools
tools: ## Build the pinned etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, controller-gen, promtool, helm, gosec, cosign, crane into bin/
	BIN=$(BIN) hack/tools/build.sh

$(CONTROLLER_GEN):
	BIN=$(BIN) hack/tools/build.sh controller-gen

##@ Test

.PHONY: test
# The fuzz targets replay their seeds and corpora (testdata/fuzz) in go test:
# the same inputs every run. Exploring is `make fuzz`, never part of the gate.
test: tools verify build gosec ## Everything CI runs: verify, gosec, unit, envtest integration and e2e tests, the fuzz corpora (replayed, not explored).
	go test $(GO_TEST_FLAGS) ./...

.PHONY: gosec
gosec: $(GOSEC) ## Run gosec over the non-test code; fails on any finding not explained by a #nosec comment.
	$(GOSEC) -quiet -nosec-require-rules -nosec-require-justification -exclude-dir=hack -exclude-dir=e2e ./...

$(GOSEC):
	BIN=$(BIN) hack/tools/build.sh gosec

FUZZTIME ?= 2m
# package:target
FUZZ_TARGETS = internal/admission:FuzzWorkloadValidator internal/policy:FuzzDecide internal/policy:FuzzProjectionDifferential
.PHONY: fuzz
fuzz: ## Explore with each fuzz target for FUZZTIME (default 2m): run before changing the decoders or the decision; commit what it finds.
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "go test -fuzz $$fn ./$$pkg/ for $(FUZZTIME)"; \
	  go test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg/ || { \
	    echo "$$fn failed: go test saved the input in $$pkg/testdata/fuzz/$$fn/. Fix the defect, give the file a name that says what it is, and commit it: go test ./... replays it from then on."; \
	    exit 1; }; \
	done

.PHONY: test-e2e
test-e2e: tools build ## The end-to-end tests only: bin/vigil, a real kube-apiserver and etcd, real kubectl.
	go test $(GO_TEST_FLAGS) ./e2e/...

.PHONY: bench
bench: tools build ## Run the benchmarks of BENCHMARKS.md (about 30 minutes; results go there by hand).
	go test -run '^$$' -bench . -benchmem -timeout 60m ./internal/...
	go test -run '^$$' -bench . -benchtime=1x -timeout 60m ./e2e/

##@ Run

.PHONY: demo
# Only what `vigil dev` and the demo start: not the test tools.
DEMO_TOOLS = etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok cosign crane
demo: build ## Replay the reference walkthrough against `vigil dev` with kubectl.
	BIN=$(BIN) hack/tools/build.sh $(DEMO_TOOLS)
	hack/demo.sh

.PHONY: deploy
deploy: ## Install config/default with image IMG (pushed where the cluster pulls from) into the current kubeconfig's cluster.
	@mkdir -p .vigil; dir=$$(mktemp -d .vigil/deploy.XXXXXX); trap 'rm -rf "$$dir"' EXIT; \
	  img='$(IMG)'; \
	  if [[ $$img == *@* ]]; then ref="newName: $${img%@*}"$$'\n'"  digest: $${img#*@}"; \
	  elif [[ $${img##*/} == *:* ]]; then ref="newName: $${img%:*}"$$'\n'"  newTag: $${img##*:}"; \
	  else ref="newName: $$img"$$'\n'"  newTag: latest"; fi; \
	  printf 'resources:\n- ../../config/default\nimages:\n- name: vigil\n  %s\n' "$$ref" >"$$dir/kustomization.yaml"; \
	  echo "deploy: config/default with image $$img"; \
	  $(KUBECTL) apply --server-side -k "$$dir"

.PHONY: undeploy
undeploy: ## Remove what `make deploy` installed, CRDs included: every ClusterImagePolicy and PolicyReport goes too.
	$(KUBECTL) delete --ignore-not-found -k config/default
