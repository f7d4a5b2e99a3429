// Package config embeds the manifests that the vigil binary needs at run
// time, so that `vigil dev` works from any directory without a checkout.
package config

import "embed"

// CRDs holds the CustomResourceDefinitions that controller-gen generates
// (`make manifests`), at crd/bases/*.yaml.
//
//go:embed crd/bases/*.yaml
var CRDs embed.FS

// CRDDir is the directory of CRDs inside CRDs.
const CRDDir = "crd/bases"

// Kwok holds kwok's configuration for `vigil dev`, at kwok/*.yaml.
//
//go:embed kwok/*.yaml
var Kwok embed.FS

// KwokStagesFile is the path, inside Kwok, of the Stages that make kwok's
// simulated nodes behave like kubelets (nodes Ready, pods Running, Job pods
// Succeeded, deleted pods gone).
const KwokStagesFile = "kwok/stages.yaml"

// FlowControl holds the API priority and fairness objects of Vigil's
// requests, config/manager/flowcontrol.yaml (the benchmarks install them as
// a cluster would).
//
//go:embed manager/flowcontrol.yaml
var FlowControl []byte
