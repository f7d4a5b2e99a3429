// Package policy compiles Sigstore ClusterImagePolicies and judges Pods and
// pod-carrying workloads against them, with the behaviour of the Sigstore
// policy-controller: image globs, match rules, static authorities, CUE and
// Rego policies over the same input document, warn and enforce modes,
// no-match-policy, and policy-controller's message shapes.
//
// Compile a policy once per generation (Compile, Compiler), snapshot the
// current policies in a Set, and call Set.Decide for each object. The
// webhook, the reconcilers and `vigil test` all use Decide, so admission and
// PolicyReports never disagree. Where Vigil deliberately differs from
// policy-controller, docs/compatibility.md says so and why.
package policy
