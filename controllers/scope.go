package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// DefaultNamespaceSelector picks the namespaces the webhook enforces.
const DefaultNamespaceSelector = "policy.sigstore.dev/include=true"

// Scope says which namespaces' pods the verify path judges.
type Scope struct {
	selector labels.Selector
	// excluded are never judged: Vigil's own namespace and kube-system.
	excluded map[string]bool
}

// NewScope parses a label selector over namespaces; an empty one means every
// namespace except Vigil's own and kube-system, which are always excluded.
func NewScope(selector, ownNamespace string) (*Scope, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("--namespace-selector %q: %w", selector, err)
	}
	return &Scope{selector: sel, excluded: map[string]bool{ownNamespace: true, metav1.NamespaceSystem: true}}, nil
}

// Includes says whether pods of ns are judged.
func (s *Scope) Includes(ns *corev1.Namespace) bool {
	return ns != nil && !s.excluded[ns.Name] && ns.DeletionTimestamp == nil && s.selector.Matches(labels.Set(ns.Labels))
}
