// Package openreports holds the RBAC markers of ClusterRole
// vigil-manager-reports for openreports.io Reports, with
// --report-api=openreports.io/v1alpha1 (see package reportrbac).
package openreports

// One Report per pod, in the pod's namespace:
// +kubebuilder:rbac:groups=openreports.io,resources=reports,verbs=get;list;watch;create;update;patch;delete
