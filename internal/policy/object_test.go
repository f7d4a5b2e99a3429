package policy

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDecodeObject(t *testing.T) {
	var unsupported *UnsupportedKindError
	if _, err := DecodeObject([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")); !errors.As(err, &unsupported) {
		t.Errorf("Service: err = %v, want *UnsupportedKindError", err)
	} else if !strings.Contains(err.Error(), "v1 Service") {
		t.Errorf("message %q does not name the kind", err)
	}
	// A Deployment is apps/v1, not core.
	if _, err := DecodeObject([]byte("apiVersion: v1\nkind: Deployment\n")); !errors.As(err, &unsupported) {
		t.Errorf("core Deployment: err = %v", err)
	}
	if _, err := DecodeObject([]byte("apiVersion: v1\nkind: Pod\nspec: {hostNetwork: maybe}\n")); err == nil {
		t.Error("a type error was accepted")
	}
	o, err := DecodeObject([]byte(cronJobYAML))
	if err != nil {
		t.Fatal(err)
	}
	if o.Kind != "CronJob" || o.APIVersion != "batch/v1" || o.Name != "nightly" || o.pathPrefix() != "spec.jobTemplate.spec.template.spec." {
		t.Errorf("object = %+v", o)
	}
}

func TestObjectFromRuntime(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"a": "b"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
	o, err := ObjectFromRuntime(pod) // no TypeMeta, as from a typed client
	if err != nil {
		t.Fatal(err)
	}
	if o.Kind != "Pod" || o.APIVersion != "v1" || o.Namespace != "ns" || o.Labels["a"] != "b" {
		t.Fatalf("object = %+v", o)
	}
	doc := o.inputDocument(true, true, true)
	if _, ok := lookup(doc, "metadata", "managedFields"); ok {
		t.Error("managedFields reached the policy input")
	}
	if tm, _ := lookup(doc, "typemeta", "kind"); tm != "Pod" {
		t.Errorf("typemeta.kind = %v", tm)
	}
	if imgs := o.images(); len(imgs) != 1 || imgs[0].Path != "spec.containers[0].image" || imgs[0].Image != "nginx" {
		t.Errorf("images = %+v", imgs)
	}
}

func TestNewObject(t *testing.T) {
	o, err := NewObject(map[string]any{
		"apiVersion": "apps/v1", "kind": "StatefulSet",
		"metadata": map[string]any{"generateName": "db-"},
		"spec":     map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "db", "image": "postgres"}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "db-" {
		t.Errorf("Name = %q, want the generateName", o.Name)
	}
	if imgs := o.images(); len(imgs) != 1 || imgs[0].Path != "spec.template.spec.containers[0].image" {
		t.Errorf("images = %+v", imgs)
	}
}
