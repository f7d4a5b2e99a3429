package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// metadataAnswer asks the API server to answer a write with the stored
// object's metadata alone, in protobuf where it can (JSON else).
const metadataAnswer = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1," +
	"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

// reportWriter creates and updates reports (namespaced custom resources,
// so under /apis) and reads back only the metadata of what was stored.
// Vigil needs the stored resourceVersion and nothing else of the answer;
// decoding the whole report it had just sent took a tenth of its CPU in a
// policy change, and the API server no longer encodes it back
// (BENCHMARKS.md, "Where a policy change's time goes").
type reportWriter struct {
	rest   rest.Interface
	mapper meta.RESTMapper
	scheme *runtime.Scheme
	// resources holds the resource of each kind written so far (a
	// schema.GroupVersionKind to a string): one lookup, not one a write.
	resources sync.Map
}

func newReportWriter(cfg *rest.Config, hc *http.Client, mapper meta.RESTMapper, scheme *runtime.Scheme) (*reportWriter, error) {
	c := metadata.ConfigFor(cfg)
	c.GroupVersion = &metav1.SchemeGroupVersion // only for encoding options
	c.APIPath = "/apis"
	if hc == nil {
		var err error
		if hc, err = rest.HTTPClientFor(c); err != nil {
			return nil, err
		}
	}
	rc, err := rest.RESTClientForConfigAndClient(c, hc)
	if err != nil {
		return nil, err
	}
	return &reportWriter{rest: rc, mapper: mapper, scheme: scheme}, nil
}

// create stores obj, a new report, and sets its resourceVersion and UID
// to the stored ones.
func (w *reportWriter) create(ctx context.Context, obj client.Object) error {
	return w.send(ctx, http.MethodPost, obj)
}

// update stores obj over the report of its name at obj's resourceVersion
// and sets its resourceVersion to the new one.
func (w *reportWriter) update(ctx context.Context, obj client.Object) error {
	return w.send(ctx, http.MethodPut, obj)
}

func (w *reportWriter) send(ctx context.Context, verb string, obj client.Object) error {
	gvk, err := apiutil.GVKForObject(obj, w.scheme)
	if err != nil {
		return err
	}
	resource, ok := w.resources.Load(gvk)
	if !ok {
		mapping, err := w.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return err
		}
		resource, _ = w.resources.LoadOrStore(gvk, mapping.Resource.Resource)
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	body, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encode %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	path := []string{"/apis", gvk.Group, gvk.Version, "namespaces", obj.GetNamespace(), resource.(string)}
	if verb == http.MethodPut {
		path = append(path, obj.GetName())
	}
	var stored metav1.PartialObjectMetadata
	if err := w.rest.Verb(verb).AbsPath(path...).Param("fieldManager", FieldOwner).
		SetHeader("Content-Type", runtime.ContentTypeJSON).SetHeader("Accept", metadataAnswer).
		Body(body).Do(ctx).Into(&stored); err != nil {
		return err
	}
	if stored.ResourceVersion == "" {
		return fmt.Errorf("%s %s %s/%s: the answer holds no resourceVersion", verb, gvk.Kind, obj.GetNamespace(), obj.GetName())
	}
	obj.SetResourceVersion(stored.ResourceVersion)
	obj.SetUID(stored.UID)
	return nil
}
