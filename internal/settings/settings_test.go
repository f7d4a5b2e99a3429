package settings

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/internal/policy"
)

func configMap(v string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "vigil-system"},
		Data: map[string]string{NoMatchPolicyKey: v}}
}

func TestNoMatchPolicy(t *testing.T) {
	s := New(policy.NoMatchWarn)
	if got := s.NoMatchPolicy(); got != policy.NoMatchWarn {
		t.Errorf("without ConfigMap: %s, want the default warn", got)
	}
	if err := s.Update(configMap("allow")); err != nil || s.NoMatchPolicy() != policy.NoMatchAllow {
		t.Errorf("allow: %s, %v", s.NoMatchPolicy(), err)
	}
	if err := s.Update(configMap("sometimes")); err == nil || !strings.Contains(err.Error(), "sometimes") || s.NoMatchPolicy() != policy.NoMatchDeny {
		t.Errorf("unknown value: %s, %v; want deny and an error naming the value", s.NoMatchPolicy(), err)
	}
	if err := s.Update(&corev1.ConfigMap{}); err != nil || s.NoMatchPolicy() != policy.NoMatchWarn {
		t.Errorf("key removed: %s, %v; want the default again", s.NoMatchPolicy(), err)
	}
	_ = s.Update(configMap("allow"))
	if err := s.Update(nil); err != nil || s.NoMatchPolicy() != policy.NoMatchWarn {
		t.Errorf("ConfigMap deleted: %s, %v; want the default again", s.NoMatchPolicy(), err)
	}
	if zero := (&Settings{}); zero.NoMatchPolicy() != policy.NoMatchDeny {
		t.Errorf("no default: %s, want deny as policy-controller", zero.NoMatchPolicy())
	}
}

// A listener hears of a change after the new value is in place, and only of
// a change: the reconcilers re-judge every pod when told, so a ConfigMap
// update that leaves the setting as it was must cost nothing.
func TestListenersSeeTheNewValue(t *testing.T) {
	s := New(policy.NoMatchDeny)
	var seen []policy.NoMatchPolicy
	s.OnChange(func() { seen = append(seen, s.NoMatchPolicy()) })
	for _, v := range []string{"allow", "allow", "warn"} {
		_ = s.Update(configMap(v))
	}
	_ = s.Update(nil)
	_ = s.Update(nil)
	want := []policy.NoMatchPolicy{policy.NoMatchAllow, policy.NoMatchWarn, policy.NoMatchDeny}
	if strings.Join(asStrings(seen), ",") != strings.Join(asStrings(want), ",") {
		t.Errorf("listener saw %v, want %v", seen, want)
	}
}

func asStrings(ps []policy.NoMatchPolicy) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}
