// Package reportrbac holds, in one subpackage per report API, the
// +kubebuilder:rbac markers of the ClusterRole vigil-manager-reports: what
// Vigil needs to write one report per pod. Only the API in use is granted:
// `make manifests` generates config/rbac/reports/role.yaml from wgpolicyk8s
// (the default, wgpolicyk8s.io PolicyReports) and
// config/overlays/openreports/rbac/role.yaml from openreports, which that
// overlay puts in its place (--report-api=openreports.io/v1alpha1). The
// packages hold no code.
package reportrbac
