package admission

import (
	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyWebhookName is the webhook that validates ClusterImagePolicies.
const PolicyWebhookName = "validating.clusterimagepolicy.sigstore.dev"

// TimeoutSeconds bounds each admission call; the decision itself takes
// microseconds, so this only guards against a stuck replica.
const TimeoutSeconds = 10

// ConfigurationOptions say where the webhooks are and what they are called.
type ConfigurationOptions struct {
	// Name of the ValidatingWebhookConfiguration object.
	Name string
	// WorkloadWebhookName is the name kube-apiserver shows in denials,
	// policy.sigstore.dev by default; rename it to run beside policy-controller.
	WorkloadWebhookName string
	// Namespace is Vigil's own namespace, never judged.
	Namespace string
	// Service, when set, is the webhook Service in Namespace (in cluster).
	Service string
	// URL, when set instead, is the webhook server's base URL (`vigil dev`).
	URL string
	// CABundle is set by cert-controller in cluster; `vigil dev` leaves it
	// to cert-controller too.
	CABundle []byte
	// MutatingName is the name of the MutatingWebhookConfiguration object
	// of the digest-pinning webhook (MutatingConfiguration).
	MutatingName string
}

// Configuration builds Vigil's ValidatingWebhookConfiguration: pods and
// pod-owning workloads in opted-in namespaces (never kube-system or Vigil's
// own), and ClusterImagePolicies. It is the one definition of the webhooks:
// `vigil dev` applies it and `make manifests` writes it to config/webhook.
func Configuration(o ConfigurationOptions) *admissionregistrationv1.ValidatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	timeout := int32(TimeoutSeconds)
	clusterScope := admissionregistrationv1.ClusterScope
	namespacedScope := admissionregistrationv1.NamespacedScope
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	rule := func(group, version string, scope *admissionregistrationv1.ScopeType, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{
			Operations: ops,
			Rule: admissionregistrationv1.Rule{
				APIGroups: []string{group}, APIVersions: []string{version}, Resources: resources, Scope: scope,
			},
		}
	}
	webhook := func(name, path string, rules []admissionregistrationv1.RuleWithOperations, ns *metav1.LabelSelector) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name:                    name,
			ClientConfig:            clientConfig(o, path),
			Rules:                   rules,
			FailurePolicy:           &fail,
			MatchPolicy:             &equivalent,
			NamespaceSelector:       ns,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}
	}
	workloads := []admissionregistrationv1.RuleWithOperations{
		rule("", "v1", &namespacedScope, "pods", "pods/ephemeralcontainers"),
		rule("apps", "v1", &namespacedScope, "deployments", "replicasets", "statefulsets", "daemonsets"),
		rule("batch", "v1", &namespacedScope, "jobs", "cronjobs"),
	}
	optedIn := optedInNamespaces(o)
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: map[string]string{"app.kubernetes.io/name": "vigil"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			webhook(o.WorkloadWebhookName, WorkloadPath, workloads, optedIn),
			webhook(PolicyWebhookName, PolicyPath, []admissionregistrationv1.RuleWithOperations{
				rule("policy.sigstore.dev", "*", &clusterScope, "clusterimagepolicies"),
			}, nil),
		},
	}
}

// optedInNamespaces selects the namespaces labelled for judgement, never
// kube-system or Vigil's own.
func optedInNamespaces(o ConfigurationOptions) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: v1beta1.IncludeLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}},
		{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", o.Namespace}},
	}}
}

// MutatingConfiguration builds the MutatingWebhookConfiguration of the
// digest-pinning webhook (DigestPinner): pods in the namespaces the
// validating webhook judges, under the same webhook name, as
// policy-controller has it. reinvocationPolicy IfNeeded pins an image that a
// later mutating webhook adds (a sidecar injector).
func MutatingConfiguration(o ConfigurationOptions) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := int32(TimeoutSeconds)
	namespacedScope := admissionregistrationv1.NamespacedScope
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.MutatingName, Labels: map[string]string{"app.kubernetes.io/name": "vigil"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         o.WorkloadWebhookName,
			ClientConfig: clientConfig(o, PinPath),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods", "pods/ephemeralcontainers"}, Scope: &namespacedScope,
				},
			}},
			FailurePolicy:           &fail,
			MatchPolicy:             &equivalent,
			NamespaceSelector:       optedInNamespaces(o),
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &ifNeeded,
		}},
	}
}

func clientConfig(o ConfigurationOptions, path string) admissionregistrationv1.WebhookClientConfig {
	if o.URL != "" {
		u := o.URL + path
		return admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: o.CABundle}
	}
	p := path
	port := int32(443)
	return admissionregistrationv1.WebhookClientConfig{
		Service:  &admissionregistrationv1.ServiceReference{Namespace: o.Namespace, Name: o.Service, Path: &p, Port: &port},
		CABundle: o.CABundle,
	}
}
