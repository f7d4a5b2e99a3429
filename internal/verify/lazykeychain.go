package verify

import (
	"context"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// keychainReadTimeout bounds reading a pod's service account and pull
// secrets when a verification first needs them.
const keychainReadTimeout = 10 * time.Second

// Keychains builds the keychains of the objects Vigil judges, lazily: the
// service account and Secrets are read from the API server only when a
// verification reaches a registry, which a verdict from the cache does not.
// At 10,000 pods of a few hundred images, the verify path then reads
// credentials once per verification, not once per judgement. A nil
// *Keychains, or one without a Client, gives nil keychains (anonymous).
type Keychains struct {
	// Client reads service accounts and Secrets.
	Client kubernetes.Interface
}

// Pod is the keychain of pod's images (PodKeychain), built at its first use.
// For a workload, pass a pod with the workload's namespace and its
// template's spec.
func (k *Keychains) Pod(ctx context.Context, pod *corev1.Pod) authn.Keychain {
	if k == nil || k.Client == nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	return &lazyKeychain{build: func() (authn.Keychain, error) {
		ctx, cancel := context.WithTimeout(ctx, keychainReadTimeout)
		defer cancel()
		return PodKeychain(ctx, k.Client, pod)
	}}
}

// Signatures gives the keychain of an authority's signaturePullSecrets,
// each built at its first use. As in policy-controller, the Secrets are
// those of namespace, the judged workload's.
func (k *Keychains) Signatures(ctx context.Context, namespace string) func(secretNames []string) authn.Keychain {
	if k == nil || k.Client == nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	return func(secretNames []string) authn.Keychain {
		return &lazyKeychain{build: func() (authn.Keychain, error) {
			ctx, cancel := context.WithTimeout(ctx, keychainReadTimeout)
			defer cancel()
			return SignatureKeychain(ctx, k.Client, namespace, secretNames)
		}}
	}
}

// lazyKeychain builds its keychain at the first Resolve, once.
var _ authn.Keychain = (*lazyKeychain)(nil)

type lazyKeychain struct {
	build func() (authn.Keychain, error)
	once  sync.Once
	kc    authn.Keychain
	err   error
}

func (l *lazyKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	l.once.Do(func() { l.kc, l.err = l.build() })
	if l.err != nil {
		return nil, l.err
	}
	return l.kc.Resolve(r)
}
