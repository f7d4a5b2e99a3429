package verify

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A pod's keychain costs no API request until a registry needs it, then
// reads the credentials once however often it is used.
func TestKeychainsReadCredentialsOnFirstUse(t *testing.T) {
	cs := fake.NewClientset(
		dockerConfigSecret(t, "team", "regcred", "registry.example", testUser, testPassword),
		dockerConfigSecret(t, "team", "sigcred", "sigs.example", "sig", "secret"),
	)
	k := &Keychains{Client: cs}
	ctx, cancel := context.WithCancel(context.Background())
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "app"},
		Spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}}}}
	kc := k.Pod(ctx, pod)
	sigs := k.Signatures(ctx, pod.Namespace)([]string{"sigcred"})
	if n := len(cs.Actions()); n != 0 {
		t.Fatalf("%d API requests before any registry needed credentials: %v", n, cs.Actions())
	}
	// The judgement's context may end before the shared verification uses
	// the keychain.
	cancel()
	repo, err := name.NewRepository("registry.example/team/app")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		auth, err := kc.Resolve(repo)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := auth.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Username != testUser || cfg.Password != testPassword {
			t.Fatalf("credentials for registry.example = %q:%q, want the pod's pull secret", cfg.Username, cfg.Password)
		}
	}
	afterPod := len(cs.Actions())
	if afterPod == 0 {
		t.Fatal("the pod's keychain read nothing")
	}
	if _, err := kc.Resolve(repo); err != nil || len(cs.Actions()) != afterPod {
		t.Fatalf("a later use read the credentials again (%d requests, then %d; err %v)", afterPod, len(cs.Actions()), err)
	}
	sigRepo, err := name.NewRepository("sigs.example/signatures")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := sigs.Resolve(sigRepo)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := auth.Authorization(); err != nil || cfg.Username != "sig" {
		t.Fatalf("signature credentials from Vigil's namespace: %+v, %v", cfg, err)
	}
}

func TestKeychainsWithoutClientAreAnonymous(t *testing.T) {
	var none *Keychains
	if kc := none.Pod(context.Background(), &corev1.Pod{}); kc != nil {
		t.Errorf("nil Keychains gave pod keychain %v, want nil (anonymous)", kc)
	}
	if f := (&Keychains{}).Signatures(context.Background(), "team"); f != nil {
		t.Error("Keychains without a client gave a signature keychain function, want nil")
	}
}
