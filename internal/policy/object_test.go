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

// TestDecodeObjectInvalidUTF8: a document that is not UTF-8 is refused,
// naming the byte, where it is and, for JSON, the key or the value holding it
// (issue 19: encoding/json read the key "\xf3" as U+FFFD, YAML refused it).
func TestDecodeObjectInvalidUTF8(t *testing.T) {
	cases := []struct {
		name, doc string
		want      InvalidUTF8Error
	}{
		{"the fuzzer's key", "{\"\xf3\":\"\",\"kind\":\"Pod\"}",
			InvalidUTF8Error{Offset: 2, Line: 1, Column: 3, Byte: 0xf3, Where: "a key of the top-level object"}},
		{"a label key", "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"b\",\"\xc3(\":\"c\"}}}",
			InvalidUTF8Error{Offset: 63, Line: 1, Column: 64, Byte: 0xc3, Where: "a key in metadata.labels"}},
		{"a container name", "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"x\"},{\"image\":\"y\",\"name\":\"b\xff\"}]}}",
			InvalidUTF8Error{Offset: 101, Line: 1, Column: 102, Byte: 0xff, Where: "the value of spec.containers[1].name"}},
		{"an image in a list of strings", "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"x\",\n\"args\":[\"ok\",\"\x80\"]}]}}",
			InvalidUTF8Error{Offset: 93, Line: 2, Column: 15, Byte: 0x80, Where: "the value of spec.containers[0].args[1]"}},
		{"YAML", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\xe2\x82\n",
			InvalidUTF8Error{Offset: 44, Line: 4, Column: 10, Byte: 0xe2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := DecodeObject([]byte(c.doc))
			var bad *InvalidUTF8Error
			if !errors.As(err, &bad) {
				t.Fatalf("DecodeObject = %+v, %v; want an *InvalidUTF8Error", o, err)
			}
			if *bad != c.want {
				t.Errorf("error %+v, want %+v", *bad, c.want)
			}
			if msg := err.Error(); !strings.Contains(msg, "not valid UTF-8") || !strings.Contains(msg, c.want.Where) {
				t.Errorf("message %q does not say what and where", msg)
			}
		})
	}
	// Valid multi-byte text, U+FFFD itself included, still decodes.
	if _, err := DecodeObject([]byte("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"ポッド\",\"labels\":{\"\xef\xbf\xbd\":\"ü\"}}}")); err != nil {
		t.Errorf("valid UTF-8 refused: %v", err)
	}
}
