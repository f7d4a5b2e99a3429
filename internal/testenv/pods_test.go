package testenv

import (
	"encoding/json"
	"testing"
)

func TestMultiplyContainers(t *testing.T) {
	spec := `{"containers":[{"name":"a","image":"x"},{"name":"b","image":"y"}]}`
	for _, c := range []struct {
		name, obj string
		path      []string
	}{
		{"Pod", `{"kind":"Pod","spec":` + spec + `}`, []string{"spec"}},
		{"Deployment", `{"kind":"Deployment","spec":{"replicas":3,"template":{"spec":` + spec + `}}}`, []string{"spec", "template", "spec"}},
		{"CronJob", `{"kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":` + spec + `}}}}}`, []string{"spec", "jobTemplate", "spec", "template", "spec"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var obj map[string]any
			if err := json.Unmarshal(MultiplyContainers([]byte(c.obj), 301), &obj); err != nil {
				t.Fatal(err)
			}
			var v any = obj
			for _, k := range c.path {
				v = v.(map[string]any)[k]
			}
			containers := v.(map[string]any)["containers"].([]any)
			if len(containers) != 302 {
				t.Fatalf("%d containers, want 302 (151 copies of 2)", len(containers))
			}
			names := map[string]bool{}
			for _, x := range containers {
				names[x.(map[string]any)["name"].(string)] = true
			}
			if len(names) != 302 || !names["a"] || !names["b-150"] {
				t.Errorf("%d distinct names, want 302 from a, b to a-150, b-150", len(names))
			}
		})
	}
	for _, raw := range []string{"", "kind: Pod\n", `{"kind":"Pod"}`, `{"spec":{"containers":"no"}}`, `{"spec":` + spec + `}`} {
		if got := MultiplyContainers([]byte(raw), 2); string(got) != raw {
			t.Errorf("MultiplyContainers(%q, 2) = %q, want it unchanged", raw, got)
		}
	}
}
