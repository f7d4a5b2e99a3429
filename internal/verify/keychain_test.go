package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// dockerConfigSecret is a kubernetes.io/dockerconfigjson Secret for host.
func dockerConfigSecret(t *testing.T, namespace, name, host, user, password string) *corev1.Secret {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	}
}

// The pod's keychain resolves a tag in a repository that requires
// authentication with the pod's imagePullSecrets or its service account's;
// without either, or with a Secret of another namespace, the registry's
// 401 comes back as Unauthorized.
func TestPodKeychain(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.pushImage(t, "private/app")
	tag := img.Context().Tag("latest").String()
	cs := fake.NewClientset(
		dockerConfigSecret(t, "team", "regcred", reg.host, testUser, testPassword),
		dockerConfigSecret(t, "team", "wrong", reg.host, testUser, "nope"),
		dockerConfigSecret(t, "other", "regcred-elsewhere", reg.host, testUser, testPassword),
		&corev1.ServiceAccount{
			ObjectMeta:       metav1.ObjectMeta{Namespace: "team", Name: "builder"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}},
		},
	)
	pod := func(sa string, secrets ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "app"}}
		p.Spec.ServiceAccountName = sa
		for _, s := range secrets {
			p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		return p
	}
	v := New(Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want Reason // "" = resolves
	}{
		{"imagePullSecrets", pod("", "regcred"), ""},
		{"service account's imagePullSecrets", pod("builder"), ""},
		{"missing Secret and service account are skipped", pod("ghost", "ghost"), ReasonUnauthorized},
		{"no credentials", pod(""), ReasonUnauthorized},
		{"wrong password", pod("", "wrong"), ReasonUnauthorized},
		{"a Secret of another namespace", pod("", "regcred-elsewhere"), ReasonUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc, err := PodKeychain(ctx, cs, tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			d, err := v.Resolve(ctx, tag, kc, LaneAdmission)
			if tc.want == "" {
				if err != nil || d.String() != img.String() {
					t.Fatalf("Resolve = %v, %v; want %s", d, err, img)
				}
				return
			}
			if got := ReasonOf(err); got != tc.want {
				t.Fatalf("Resolve error = %v (reason %q), want reason %q", err, got, tc.want)
			}
		})
	}
}

// signaturePullSecrets: a key authority whose signatures live in a private
// source.oci repository verifies with the keychain of its Secrets, read in
// the given namespace, and gives Unauthorized without them.
func TestSignatureKeychain(t *testing.T) {
	f := newKeyFixture(t)
	cs := fake.NewClientset(dockerConfigSecret(t, "team", "regcred", f.reg.host, testUser, testPassword))
	ctx := context.Background()
	a := mustCompile(t, keySpec(f.pub, FormatLegacy, &SourceSpec{OCI: f.privateSigs, SignaturePullSecrets: []string{"regcred"}}))
	for _, tc := range []struct {
		namespace string
		want      Reason
	}{{"team", ""}, {"other", ReasonUnauthorized}} {
		kc, err := SignatureKeychain(ctx, cs, tc.namespace, []string{"regcred"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(Options{}).Verify(ctx, a, Request{Image: f.private.String(), Keychain: kc, SignatureKeychain: kc, Lane: LaneAdmission})
		if got := ReasonOf(err); got != tc.want {
			t.Errorf("namespace %s: Verify error = %v (reason %q), want reason %q", tc.namespace, err, got, tc.want)
		}
	}
}
