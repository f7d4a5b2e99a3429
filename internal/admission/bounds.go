package admission

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxContainers bounds the containers of one object that Vigil judges:
// initContainers, containers and ephemeralContainers together. Kubernetes
// sets no such bound, real pods hold a few dozen at most, and past this one
// an object is denied before its policies are evaluated, so one request's
// work stays bounded whatever its shape (docs/reliability.md).
const MaxContainers = 5000

// objectShape is what the webhook reads of an object before decoding it:
// its kind, whether it is being deleted, and the lengths of its container
// lists. The containers decode into empty structs, so counting them keeps no
// memory whatever the object holds.
type objectShape struct {
	Kind     string `json:"kind"`
	Metadata struct {
		DeletionTimestamp *metav1.Time `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		containerLists
		Template struct {
			Spec containerLists `json:"spec"`
		} `json:"template"`
		JobTemplate struct {
			Spec struct {
				Template struct {
					Spec containerLists `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

type containerLists struct {
	InitContainers      []struct{} `json:"initContainers"`
	Containers          []struct{} `json:"containers"`
	EphemeralContainers []struct{} `json:"ephemeralContainers"`
}

// readShape reads the shape of a JSON object. A malformed object yields what
// could be read: policy.DecodeObject reports its problem afterwards.
func readShape(raw []byte) *objectShape {
	var s objectShape
	_ = json.Unmarshal(raw, &s)
	return &s
}

// podSpec is the path of the object's pod spec and its container lists.
func (s *objectShape) podSpec() (string, containerLists) {
	switch s.Kind {
	case "Pod":
		return "spec", s.Spec.containerLists
	case "CronJob":
		return "spec.jobTemplate.spec.template.spec", s.Spec.JobTemplate.Spec.Template.Spec
	}
	return "spec.template.spec", s.Spec.Template.Spec
}

// checkContainers refuses an object with more than MaxContainers containers.
func (s *objectShape) checkContainers() error {
	path, l := s.podSpec()
	n := len(l.InitContainers) + len(l.Containers) + len(l.EphemeralContainers)
	if n <= MaxContainers {
		return nil
	}
	return fmt.Errorf("%s: %d containers (initContainers %d, containers %d, ephemeralContainers %d) exceed Vigil's bound of %d containers per object",
		path, n, len(l.InitContainers), len(l.Containers), len(l.EphemeralContainers), MaxContainers)
}

// CheckContainers refuses a JSON object of a supported kind that has more
// than MaxContainers containers, as the webhook does, with a message naming
// the pod spec's path and the bound. `vigil test` calls it too, so that it
// refuses what admission refuses.
func CheckContainers(raw []byte) error {
	return readShape(raw).checkContainers()
}
