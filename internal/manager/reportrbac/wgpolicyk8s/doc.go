// Package wgpolicyk8s holds the RBAC markers of ClusterRole
// vigil-manager-reports for wgpolicyk8s.io PolicyReports, Vigil's default
// report API (see package reportrbac).
package wgpolicyk8s

// One PolicyReport per pod, in the pod's namespace:
// +kubebuilder:rbac:groups=wgpolicyk8s.io,resources=policyreports,verbs=get;list;watch;create;update;patch;delete
