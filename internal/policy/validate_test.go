package policy

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

func TestValidationMessages(t *testing.T) {
	yes := true
	spec := func(opts ...func(*v1beta1.ClusterImagePolicySpec)) func(*v1beta1.ClusterImagePolicySpec) {
		return func(s *v1beta1.ClusterImagePolicySpec) {
			for _, o := range opts {
				o(s)
			}
		}
	}
	tests := []struct {
		name   string
		mutate func(*v1beta1.ClusterImagePolicySpec)
		field  string
		want   string
	}{
		{"no images", withGlobs(), "spec.images", "missing field(s): spec.images"},
		{"no authorities", withAuthorities(), "spec.authorities", "missing field(s): spec.authorities"},
		{"bad mode", withMode("garbage"), "spec.mode", "invalid value: garbage: spec.mode\nunsupported mode"},
		{"empty glob", withGlobs(""), "spec.images[0].glob", "missing field(s): spec.images[0].glob"},
		{"glob syntax", withGlobs("[", "**"), "spec.images[0].glob", "invalid value: [: spec.images[0].glob\nglob is invalid: syntax error in pattern"},
		{"glob characters", withGlobs("**", "$FOO*"), "spec.images[1].glob", "invalid value: $FOO*: spec.images[1].glob\nglob is invalid: invalid glob \"$FOO*\""},
		{"resource", withMatch(v1beta1.MatchResource{Version: "v1", Resource: "myobject"}), "spec.match[0].resource",
			"invalid value: myobject: spec.match[0].resource\nunsupported resource name"},
		{"selector without resource", withMatch(v1beta1.MatchResource{ResourceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}}),
			"spec.match[0].selector", "invalid value: : spec.match[0].selector\nselector requires a resource type to match the labels"},
		{"no authority kind", withAuthorities(v1beta1.Authority{}), "spec.authorities[0].key",
			"expected exactly one, got neither: spec.authorities[0].key, spec.authorities[0].keyless, spec.authorities[0].static"},
		{"two authority kinds", withAuthorities(v1beta1.Authority{Static: &v1beta1.StaticRef{Action: "pass"}, Key: &v1beta1.KeyRef{KMS: "gcpkms://x"}}),
			"spec.authorities[0].key", "expected exactly one, got both: spec.authorities[0].key, spec.authorities[0].keyless, spec.authorities[0].static"},
		{"static with others", withAuthorities(v1beta1.Authority{
			Static: &v1beta1.StaticRef{Action: "pass"}, CTLog: &v1beta1.TLog{}, Sources: []v1beta1.Source{{OCI: "ghcr.io/x"}},
			Attestations: []v1beta1.Attestation{{Name: "a", PredicateType: "https://x"}},
		}), "spec.authorities[0].attestations",
			"expected exactly one, got both: spec.authorities[0].attestations, spec.authorities[0].ctlog, spec.authorities[0].source, spec.authorities[0].static"},
		{"static action missing", withAuthorities(staticAuth("", "")), "spec.authorities[0].static.action", "missing field(s): spec.authorities[0].static.action"},
		{"static action", withAuthorities(staticAuth("garbage", "")), "spec.authorities[0].static.action",
			"invalid value: garbage: spec.authorities[0].static.action\nunsupported action"},
		{"key neither", withAuthorities(v1beta1.Authority{Key: &v1beta1.KeyRef{}}), "spec.authorities[0].key.data",
			"expected exactly one, got neither: spec.authorities[0].key.data, spec.authorities[0].key.kms, spec.authorities[0].key.secretref"},
		{"key data", withAuthorities(v1beta1.Authority{Key: &v1beta1.KeyRef{Data: "nope"}}), "spec.authorities[0].key.data",
			"invalid value: nope: spec.authorities[0].key.data"},
		{"kms prefix", withAuthorities(v1beta1.Authority{Key: &v1beta1.KeyRef{KMS: "foo://bar"}}), "spec.authorities[0].key.kms",
			"invalid value: foo://bar: spec.authorities[0].key.kms\nmalformed KMS format, should be prefixed by any of the supported providers: [awskms:// azurekms:// hashivault:// gcpkms://]"},
		{"hash algorithm", withAuthorities(v1beta1.Authority{Key: &v1beta1.KeyRef{KMS: "gcpkms://k", HashAlgorithm: "shaINVALID"}}),
			"spec.authorities[0].key.hashAlgorithm", "invalid value: shaINVALID: spec.authorities[0].key.hashAlgorithm"},
		{"keyless identities", withAuthorities(v1beta1.Authority{Keyless: &v1beta1.KeylessRef{URL: "https://fulcio.example"}}),
			"spec.authorities[0].keyless.identities", "missing field(s): spec.authorities[0].keyless.identities"},
		{"identity regexp", withAuthorities(v1beta1.Authority{Keyless: &v1beta1.KeylessRef{Identities: []v1beta1.Identity{{IssuerRegExp: "****", Subject: "s"}}}}),
			"spec.authorities[0].keyless.identities[0].issuerRegExp",
			"invalid value: ****: spec.authorities[0].keyless.identities[0].issuerRegExp\nregex is invalid: error parsing regexp: missing argument to repetition operator: `*`"},
		{"identity subject", withAuthorities(v1beta1.Authority{Keyless: &v1beta1.KeylessRef{Identities: []v1beta1.Identity{{Issuer: "i"}}}}),
			"spec.authorities[0].keyless.identities[0].subject",
			"missing field(s): spec.authorities[0].keyless.identities[0].subject, spec.authorities[0].keyless.identities[0].subjectRegExp"},
		{"two sources", withAuthorities(v1beta1.Authority{Key: &v1beta1.KeyRef{KMS: "gcpkms://k"}, Sources: []v1beta1.Source{{OCI: "ghcr.io/a"}, {OCI: "ghcr.io/b"}}}),
			"spec.authorities[0].source", "invalid value: source: spec.authorities[0].source\nonly single source is supported"},
		{"source oci", withAuthorities(v1beta1.Authority{Key: &v1beta1.KeyRef{KMS: "gcpkms://k"}, Sources: []v1beta1.Source{{OCI: "registry.example.com/repo/*"}}}),
			"spec.authorities[0].source[0].oci",
			"invalid value: registry.example.com/repo/*: spec.authorities[0].source[0].oci\nrepository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: repo/*"},
		{"pull secret", withAuthorities(v1beta1.Authority{Key: &v1beta1.KeyRef{KMS: "gcpkms://k"}, Sources: []v1beta1.Source{{SignaturePullSecrets: []corev1.LocalObjectReference{{}}}}}),
			"spec.authorities[0].source[0].signaturePullSecrets[0].name", "missing field(s): spec.authorities[0].source[0].signaturePullSecrets[0].name"},
		{"policy type", func(s *v1beta1.ClusterImagePolicySpec) { s.Policy = &v1beta1.Policy{Type: "yaml", Data: "x"} },
			"spec.policy.type", "invalid value: yaml: spec.policy.type\nonly [cue,rego] are supported at the moment"},
		{"policy body missing", func(s *v1beta1.ClusterImagePolicySpec) { s.Policy = &v1beta1.Policy{Type: "cue"} },
			"spec.policy.configMapRef", "missing field(s): spec.policy.configMapRef, spec.policy.data, spec.policy.remote"},
		{"policy two bodies", func(s *v1beta1.ClusterImagePolicySpec) {
			s.Policy = &v1beta1.Policy{Type: "cue", Data: "x", ConfigMapRef: &v1beta1.ConfigMapReference{Name: "n", Key: "k"}}
		}, "spec.policy.configMapRef", "expected exactly one, got both: spec.policy.configMapRef, spec.policy.data, spec.policy.remote"},
		{"remote url", func(s *v1beta1.ClusterImagePolicySpec) {
			s.Policy = &v1beta1.Policy{Type: "cue", Remote: &v1beta1.RemotePolicy{URL: "http://example.com"}}
		}, "spec.policy.remote.url",
			"invalid value: http://example.com: spec.policy.remote.url\nurl valid is invalid. host and https scheme are expected\nmissing field(s): spec.policy.remote.sha256sum"},
		{"configMapRef", func(s *v1beta1.ClusterImagePolicySpec) {
			s.Policy = &v1beta1.Policy{Type: "cue", ConfigMapRef: &v1beta1.ConfigMapReference{}}
		}, "spec.policy.configMapRef.key", "missing field(s): spec.policy.configMapRef.key, spec.policy.configMapRef.name"},
		{"attestation include flags", withAuthorities(v1beta1.Authority{
			Key: &v1beta1.KeyRef{KMS: "gcpkms://k"},
			Attestations: []v1beta1.Attestation{{Name: "a", PredicateType: "https://x",
				Policy: &v1beta1.Policy{Type: "cue", Data: "a: 1", IncludeSpec: &yes}}},
		}), "spec.authorities[0].attestations.policy.includeSpec",
			"must not set the field(s): spec.authorities[0].attestations.policy.includeSpec"},
		{"attestation fields", withAuthorities(v1beta1.Authority{Key: &v1beta1.KeyRef{KMS: "gcpkms://k"}, Attestations: []v1beta1.Attestation{{}}}),
			"spec.authorities[0].attestations.name",
			"missing field(s): spec.authorities[0].attestations.name, spec.authorities[0].attestations.predicateType"},
		{"several errors merge and sort", spec(withMode("x"), withGlobs("")), "spec.mode",
			"invalid value: x: spec.mode\nunsupported mode\nmissing field(s): spec.images[0].glob"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(newCIP("p", tc.mutate))
			var ipe *InvalidPolicyError
			if !errors.As(err, &ipe) {
				t.Fatalf("err = %v, want *InvalidPolicyError", err)
			}
			if ipe.Reason != v1beta1.ReasonInvalid || ipe.Policy != "p" {
				t.Errorf("Reason, Policy = %q, %q", ipe.Reason, ipe.Policy)
			}
			if ipe.Error() != tc.want {
				t.Errorf("message:\n%s\nwant:\n%s", ipe.Error(), tc.want)
			}
			if ipe.Field != tc.field {
				t.Errorf("Field = %q, want %q", ipe.Field, tc.field)
			}
		})
	}
}

func TestValidationAcceptsAndWarns(t *testing.T) {
	cip := newCIP("p", withAuthorities(v1beta1.Authority{
		Keyless:      &v1beta1.KeylessRef{Identities: []v1beta1.Identity{{Issuer: "https://issuer", SubjectRegExp: ".*"}}},
		Attestations: []v1beta1.Attestation{{Name: "sbom", PredicateType: "spdxjson"}},
	}), withMatch(v1beta1.MatchResource{Group: "apps", Version: "*", Resource: "deployments",
		ResourceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}}))
	p, err := Compile(cip)
	if err != nil {
		t.Fatal(err)
	}
	want := "invalid value: spdxjson: spec.authorities[0].attestations.predicateType\ndeprecated value, please use RFC 3986 conformant values"
	if len(p.Warnings) != 1 || p.Warnings[0] != want {
		t.Errorf("Warnings = %q, want [%q]", p.Warnings, want)
	}
	if p.Mode != v1beta1.ModeEnforce || p.Name != "p" || p.Generation != 1 {
		t.Errorf("Mode, Name, Generation = %q, %q, %d", p.Mode, p.Name, p.Generation)
	}
	if p.authorities[0].name != "authority-0" {
		t.Errorf("authority name = %q, want the default authority-0", p.authorities[0].name)
	}
	if cip.Spec.Mode != "" || cip.Spec.Authorities[0].Name != "" {
		t.Error("Compile changed its argument")
	}
}
