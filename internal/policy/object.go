package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// workload describes a kind that carries a pod spec.
type workload struct {
	kind  string
	group string
	// podSpec is the path to the pod spec inside the object.
	podSpec []string
	// typed returns an empty typed object, used to normalise YAML the way
	// the API server would serialise it.
	typed func() any
}

var workloads = []workload{
	{"Pod", "", []string{"spec"}, func() any { return &corev1.Pod{} }},
	{"Deployment", "apps", []string{"spec", "template", "spec"}, func() any { return &appsv1.Deployment{} }},
	{"ReplicaSet", "apps", []string{"spec", "template", "spec"}, func() any { return &appsv1.ReplicaSet{} }},
	{"StatefulSet", "apps", []string{"spec", "template", "spec"}, func() any { return &appsv1.StatefulSet{} }},
	{"DaemonSet", "apps", []string{"spec", "template", "spec"}, func() any { return &appsv1.DaemonSet{} }},
	{"Job", "batch", []string{"spec", "template", "spec"}, func() any { return &batchv1.Job{} }},
	{"CronJob", "batch", []string{"spec", "jobTemplate", "spec", "template", "spec"}, func() any { return &batchv1.CronJob{} }},
}

// SupportedKinds lists the kinds Decide accepts, in a stable order.
func SupportedKinds() []string {
	out := make([]string, len(workloads))
	for i, w := range workloads {
		out[i] = w.kind
	}
	return out
}

func findWorkload(apiVersion, kind string) (*workload, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, &UnsupportedKindError{APIVersion: apiVersion, Kind: kind}
	}
	for i := range workloads {
		if workloads[i].kind == kind && workloads[i].group == gv.Group {
			return &workloads[i], nil
		}
	}
	return nil, &UnsupportedKindError{APIVersion: apiVersion, Kind: kind}
}

// UnsupportedKindError is returned for objects that carry no pod spec Vigil knows.
type UnsupportedKindError struct {
	APIVersion string
	Kind       string
}

func (e *UnsupportedKindError) Error() string {
	kind := strings.TrimSpace(e.APIVersion + " " + e.Kind)
	if e.Kind == "" {
		kind = "an object without a kind"
	}
	return fmt.Sprintf("unsupported kind %s: expected one of %s", kind, strings.Join(SupportedKinds(), ", "))
}

// Object is a Pod or a pod-carrying workload to be judged. Build it with
// NewObject, DecodeObject or ObjectFromRuntime; it is read-only afterwards.
type Object struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	Labels     map[string]string

	content  map[string]any
	workload *workload
	resource schema.GroupVersionResource
	// parsed are the object's images, parsed when the object is made:
	// they do not change, and every decision needs them.
	parsed []*parsedImage
}

// NewObject wraps the unstructured content of a supported object, as the API
// server serialises it (for example an admission request's object).
func NewObject(content map[string]any) (*Object, error) {
	apiVersion, _ := content["apiVersion"].(string)
	kind, _ := content["kind"].(string)
	w, err := findWorkload(apiVersion, kind)
	if err != nil {
		return nil, err
	}
	o := &Object{APIVersion: apiVersion, Kind: kind, content: content, workload: w}
	o.resource = o.guessResource()
	o.parsed = parseImages(o.images())
	md, _ := content["metadata"].(map[string]any)
	o.Name, _ = md["name"].(string)
	if o.Name == "" {
		o.Name, _ = md["generateName"].(string)
	}
	o.Namespace, _ = md["namespace"].(string)
	if labels, ok := md["labels"].(map[string]any); ok {
		o.Labels = make(map[string]string, len(labels))
		for k, v := range labels {
			o.Labels[k], _ = v.(string)
		}
	}
	return o, nil
}

// DecodeObject reads one YAML or JSON document of a supported kind. It
// normalises the object through its typed Kubernetes struct, as the API
// server does before admission, so that offline judgement (vigil test) sees
// what the webhook would see; type errors are reported, and so is a document
// that is not UTF-8 (*InvalidUTF8Error).
func DecodeObject(data []byte) (*Object, error) {
	if err := CheckUTF8(data); err != nil {
		return nil, err
	}
	// Admission requests are JSON already; converting them as YAML costs
	// far more than deciding.
	js := data
	if !json.Valid(data) {
		var err error
		if js, err = yaml.YAMLToJSON(data); err != nil {
			return nil, err
		}
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, err
	}
	return decodeTyped(js, tm.APIVersion, tm.Kind)
}

// DecodeAdmittedObject reads the object of an admission request: JSON whose
// apiVersion and kind the request names. It is DecodeObject without the two
// passes that find the format and the kind (a quarter of its cost), and it
// refuses an object whose own apiVersion or kind differs from the request's.
func DecodeAdmittedObject(data []byte, apiVersion, kind string) (*Object, error) {
	if err := CheckUTF8(data); err != nil {
		return nil, err
	}
	o, err := decodeTyped(data, apiVersion, kind)
	if err != nil {
		return nil, err
	}
	if o.APIVersion != apiVersion || o.Kind != kind {
		return nil, fmt.Errorf("the object is %s, where the request names %s",
			strings.TrimSpace(o.APIVersion+" "+o.Kind), strings.TrimSpace(apiVersion+" "+kind))
	}
	return o, nil
}

// decodeTyped decodes JSON js into the typed struct of apiVersion and kind
// and makes the Object from it.
func decodeTyped(js []byte, apiVersion, kind string) (*Object, error) {
	w, err := findWorkload(apiVersion, kind)
	if err != nil {
		return nil, err
	}
	typed := w.typed()
	if err := json.Unmarshal(js, typed); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	// No policy sees managedFields (inputDocument drops them), and in an
	// admission request they are a third of the object: not carried over.
	if m, err := meta.Accessor(typed); err == nil {
		m.SetManagedFields(nil)
	}
	return objectFromTyped(typed)
}

// ObjectFromRuntime converts a typed object (as read from a client or cache)
// into an Object, filling in apiVersion and kind when the typed object lacks them.
func ObjectFromRuntime(obj runtime.Object) (*Object, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind == "" {
		switch obj.(type) {
		case *corev1.Pod:
			gvk = corev1.SchemeGroupVersion.WithKind("Pod")
		case *appsv1.Deployment:
			gvk = appsv1.SchemeGroupVersion.WithKind("Deployment")
		case *appsv1.ReplicaSet:
			gvk = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")
		case *appsv1.StatefulSet:
			gvk = appsv1.SchemeGroupVersion.WithKind("StatefulSet")
		case *appsv1.DaemonSet:
			gvk = appsv1.SchemeGroupVersion.WithKind("DaemonSet")
		case *batchv1.Job:
			gvk = batchv1.SchemeGroupVersion.WithKind("Job")
		case *batchv1.CronJob:
			gvk = batchv1.SchemeGroupVersion.WithKind("CronJob")
		}
	}
	o, err := objectFromTyped(obj)
	if err != nil {
		return nil, err
	}
	if o.Kind == "" && gvk.Kind != "" {
		o.content["apiVersion"], o.content["kind"] = gvk.GroupVersion().String(), gvk.Kind
		return NewObject(o.content)
	}
	return o, nil
}

func objectFromTyped(typed any) (*Object, error) {
	js, err := json.Marshal(typed)
	if err != nil {
		return nil, err
	}
	content, err := decodeJSONMap(js)
	if err != nil {
		return nil, err
	}
	if k, _ := content["kind"].(string); k == "" {
		// Kind is filled in by the caller (ObjectFromRuntime).
		return &Object{content: content}, nil
	}
	return NewObject(content)
}

// decodeJSONMap decodes a JSON object keeping numbers exact.
func decodeJSONMap(js []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// gvr is the object's group, version and guessed plural resource.
func (o *Object) gvr() schema.GroupVersionResource { return o.resource }

func (o *Object) guessResource() schema.GroupVersionResource {
	gv, _ := schema.ParseGroupVersion(o.APIVersion)
	r, _ := meta.UnsafeGuessKindToResource(gv.WithKind(o.Kind))
	return r
}

// pathPrefix is the prefix of image paths in messages, e.g. "spec.template.spec.".
func (o *Object) pathPrefix() string { return strings.Join(o.workload.podSpec, ".") + "." }

// subject names the object for people, e.g. `Pod "yolo"`.
func (o *Object) subject() string {
	if o.Name == "" {
		return o.Kind
	}
	return o.Kind + " " + strconv.Quote(o.Name)
}

// containerImage is one image reference of the object's pod spec.
type containerImage struct {
	// Field is initContainers, containers, ephemeralContainers or volumes.
	Field string
	Index int
	// Name of the container or volume.
	Name string
	// Image as written in the object.
	Image string
	// Path of the image in messages, e.g. spec.containers[0].image.
	Path string
}

// images lists every image of the pod spec, in policy-controller's order.
func (o *Object) images() []containerImage {
	spec, _ := lookup(o.content, o.workload.podSpec...)
	podSpec, _ := spec.(map[string]any)
	var out []containerImage
	for _, field := range []string{"initContainers", "containers", "ephemeralContainers"} {
		list, _ := podSpec[field].([]any)
		for i, c := range list {
			cm, _ := c.(map[string]any)
			img, _ := cm["image"].(string)
			n, _ := cm["name"].(string)
			out = append(out, containerImage{Field: field, Index: i, Name: n, Image: img,
				Path: o.pathPrefix() + index(field, i) + ".image"})
		}
	}
	volumes, _ := podSpec["volumes"].([]any)
	for i, v := range volumes {
		ref, ok := lookup(v, "image", "reference")
		if !ok {
			continue
		}
		img, _ := ref.(string)
		n, _ := lookup(v, "name")
		vn, _ := n.(string)
		out = append(out, containerImage{Field: "volumes", Index: i, Name: vn, Image: img,
			Path: o.pathPrefix() + index("volumes", i) + ".image"})
	}
	return out
}

// inputDocument is what a CIP-level policy sees besides authorityMatches.
// metadata.managedFields is dropped: it says who wrote which field, not what
// the object is, and it changes with every writer.
func (o *Object) inputDocument(spec, objectMeta, typeMeta bool) map[string]any {
	doc := map[string]any{}
	if spec {
		if s, ok := o.content["spec"]; ok {
			doc["spec"] = s
		}
	}
	if objectMeta {
		if md, ok := o.content["metadata"].(map[string]any); ok {
			md = maps.Clone(md)
			delete(md, "managedFields")
			doc["metadata"] = md
		}
	}
	if typeMeta {
		doc["typemeta"] = map[string]any{"kind": o.Kind, "apiVersion": o.APIVersion}
	}
	return doc
}

// lookup walks maps by key and lists by decimal index.
func lookup(v any, path ...string) (any, bool) {
	for _, p := range path {
		switch t := v.(type) {
		case map[string]any:
			next, ok := t[p]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, true
}
