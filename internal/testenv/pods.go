package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

// ServiceAccountMountPath is where kube-apiserver's ServiceAccount admission
// mounts a pod's token.
const ServiceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// AsAdmitted fills in p, in place, what kube-apiserver adds to a pod a
// ReplicaSet creates before admission webhooks see it, for tests and
// benchmarks that need pods shaped as in a real cluster: the defaults of
// the pod and its containers, the default not-ready and unreachable
// tolerations, and the ServiceAccount admission's projected token volume,
// named token, mounted in every container.
func AsAdmitted(p *corev1.Pod, token string) *corev1.Pod {
	s := &p.Spec
	s.RestartPolicy = corev1.RestartPolicyAlways
	s.DNSPolicy = corev1.DNSClusterFirst
	s.SchedulerName = corev1.DefaultSchedulerName
	s.ServiceAccountName = "default"
	s.DeprecatedServiceAccount = "default"
	s.TerminationGracePeriodSeconds = ptr.To[int64](30)
	s.EnableServiceLinks = ptr.To(true)
	s.PreemptionPolicy = ptr.To(corev1.PreemptLowerPriority)
	s.Priority = ptr.To[int32](0)
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	s.Tolerations = append(s.Tolerations,
		corev1.Toleration{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		corev1.Toleration{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)})
	s.Volumes = append(s.Volumes, corev1.Volume{Name: token, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](420),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		}}}})
	dress := func(c *corev1.Container) {
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: token, ReadOnly: true, MountPath: ServiceAccountMountPath})
	}
	for i := range s.InitContainers {
		dress(&s.InitContainers[i])
	}
	for i := range s.Containers {
		dress(&s.Containers[i])
	}
	return p
}

// SeedPolicy reads the walkthrough's policy, config/samples/cip.yaml
// (non-default-capabilities-cue), strictly.
func SeedPolicy() (*v1beta1.ClusterImagePolicy, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(root, "config", "samples", "cip.yaml")
	data, err := os.ReadFile(path) // #nosec G304 -- a file of this repository
	if err != nil {
		return nil, err
	}
	var cip v1beta1.ClusterImagePolicy
	if err := yaml.UnmarshalStrict(data, &cip); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cip, nil
}

// podSpecPaths are where the kinds Vigil judges keep their pod spec: a Pod;
// Deployment, ReplicaSet, StatefulSet, DaemonSet and Job; CronJob.
var podSpecPaths = [][]string{{"spec"}, {"spec", "template", "spec"}, {"spec", "jobTemplate", "spec", "template", "spec"}}

// MultiplyContainers returns the JSON object raw with the containers of its
// pod spec repeated until there are at least n, the copies named apart
// ("app" becomes "app-1", "app-2"...), or raw itself when it is not such an
// object or already has n. Fuzz targets use it to reach objects of hundreds
// of containers from small inputs, which mutations of the bytes alone
// hardly ever do.
func MultiplyContainers(raw []byte, n int) []byte {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var obj map[string]any
	if d.Decode(&obj) != nil {
		return raw
	}
	for _, path := range podSpecPaths {
		var spec any = obj
		for _, key := range path {
			m, _ := spec.(map[string]any)
			spec = m[key]
		}
		podSpec, _ := spec.(map[string]any)
		containers, _ := podSpec["containers"].([]any)
		if len(containers) == 0 || len(containers) >= n {
			continue
		}
		out := make([]any, 0, n+len(containers))
		for copyN := 0; len(out) < n; copyN++ {
			for _, c := range containers {
				cm, ok := c.(map[string]any)
				if !ok || copyN == 0 {
					out = append(out, c)
					continue
				}
				named := maps.Clone(cm)
				name, _ := cm["name"].(string)
				named["name"] = fmt.Sprintf("%s-%d", name, copyN)
				out = append(out, named)
			}
		}
		podSpec["containers"] = out
		multiplied, err := json.Marshal(obj)
		if err != nil {
			return raw
		}
		return multiplied
	}
	return raw
}
