package verify

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	k8schain "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// PodKeychain gives the credentials a kubelet would pull the pod's images
// with: the pod's imagePullSecrets and those of its service account
// ("default" when the pod names none), read from the pod's namespace with
// go-containerregistry's authn/kubernetes. Secrets or a service account that
// do not exist are skipped, as the kubelet skips them; a failure to read
// them is an error naming the pod.
func PodKeychain(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) (authn.Keychain, error) {
	secrets := make([]string, 0, len(pod.Spec.ImagePullSecrets))
	for _, s := range pod.Spec.ImagePullSecrets {
		secrets = append(secrets, s.Name)
	}
	kc, err := k8schain.New(ctx, cs, k8schain.Options{
		Namespace:          pod.Namespace,
		ServiceAccountName: pod.Spec.ServiceAccountName, // "" is "default"
		ImagePullSecrets:   secrets,
	})
	if err != nil {
		return nil, fmt.Errorf("pull credentials of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return kc, nil
}

// SignatureKeychain gives the credentials of an authority's
// signaturePullSecrets, read from namespace (policy-controller reads them in
// the namespace of the workload being judged). No service account is
// consulted: only the named Secrets count.
func SignatureKeychain(ctx context.Context, cs kubernetes.Interface, namespace string, secretNames []string) (authn.Keychain, error) {
	kc, err := k8schain.New(ctx, cs, k8schain.Options{
		Namespace:          namespace,
		ServiceAccountName: k8schain.NoServiceAccount,
		ImagePullSecrets:   secretNames,
	})
	if err != nil {
		return nil, fmt.Errorf("signaturePullSecrets %v in namespace %s: %w", secretNames, namespace, err)
	}
	return kc, nil
}
