package policy

import (
	"testing"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
)

func TestExplanations(t *testing.T) {
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: p
  labels: {app: web}
spec:
  hostPID: true
  securityContext:
    sysctls: [{name: kernel.msgmax, value: "1"}]
  containers:
  - name: app
    image: docker.io/ubuntu
    ports: [{containerPort: 80, hostPort: 8080}]
    securityContext:
      runAsUser: 0
      privileged: true
      capabilities: {add: [NET_ADMIN, SYS_TIME]}
      seLinuxOptions: {type: spc_t}
  volumes:
  - name: host
    hostPath: {path: /var/run}
`
	tests := []struct {
		name, cue, want string
	}{
		{"capability", `spec: containers: [...{securityContext: capabilities: add: [..."CHOWN"]}]`,
			`container "app" (docker.io/ubuntu) adds capability NET_ADMIN, which p does not allow; ` +
				`container "app" (docker.io/ubuntu) adds capability SYS_TIME, which p does not allow`},
		{"privileged", `spec: containers: [...{securityContext: privileged: false}]`,
			`container "app" (docker.io/ubuntu) runs privileged, which p does not allow`},
		{"run as user", `spec: containers: [...{securityContext: runAsUser: !=0}]`,
			`container "app" (docker.io/ubuntu) runs as user 0, which p does not allow`},
		{"host port", `spec: containers: [...{ports: [...{hostPort: 0}]}]`,
			`container "app" (docker.io/ubuntu) uses host port 8080, which p does not allow`},
		{"selinux", `spec: containers: [...{securityContext: seLinuxOptions: type: "container_t"}]`,
			`container "app" (docker.io/ubuntu) sets SELinux type spc_t, which p does not allow`},
		{"pod level", `spec: hostPID: false`, `Pod "p" shares the host PID namespace, which p does not allow`},
		{"sysctl", `spec: securityContext: sysctls: [...{name: "net.ipv4.tcp_syncookies"}]`,
			`Pod "p" sets sysctl kernel.msgmax, which p does not allow`},
		{"host path", `spec: volumes: [...{hostPath?: path: "/tmp"}]`, `volume "host" mounts host path /var/run, which p does not allow`},
		{"generic field", `spec: containers: [...{ports: [...{containerPort: 443}]}]`,
			`container "app" (docker.io/ubuntu): ports.0.containerPort is 80, which p does not allow`},
		{"outside the pod spec", `metadata: labels: app: "db"`, `Pod "p": metadata.labels.app is "web", which p does not allow`},
		{"typemeta", `typemeta: kind: "Job"`, `Pod "p": typemeta.kind is "Pod", which p does not allow`},
		{"custom message idiom", `spec: containers: [...{name: string, securityContext: {privileged: bool | *false, ...}, if securityContext.privileged { name: "must not be privileged" }}]`,
			`container "app" (docker.io/ubuntu) fails p: must not be privileged`},
		{"many problems", `spec: {hostPID: false, containers: [...{securityContext: {privileged: false, runAsUser: !=0, capabilities: add: []}}]}`,
			`; and 1 more`},
	}
	o := obj(t, pod)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(t, o, Options{}, newCIP("p", withCUE(tc.cue)))
			r := d.Results[0]
			if r.Result != ResultFail {
				t.Fatalf("result = %s: %s", r.Result, r.Message)
			}
			if tc.name == "many problems" {
				if got := r.Explanation; len(got) < len(tc.want) || got[len(got)-len(tc.want):] != tc.want {
					t.Errorf("Explanation = %q, want it to end with %q", got, tc.want)
				}
				return
			}
			if r.Explanation != tc.want {
				t.Errorf("Explanation:\n%s\nwant:\n%s", r.Explanation, tc.want)
			}
		})
	}
}

func TestExplanationsOfAuthorities(t *testing.T) {
	o := obj(t, podYAML("nginx"))
	tests := []struct {
		name string
		a    v1beta1.Authority
		want string
	}{
		{"static message", staticAuth("fail", "images from Docker Hub are not allowed"),
			`container "c0" (nginx) fails p: images from Docker Hub are not allowed`},
		{"static without message", staticAuth("fail", ""), `container "c0" (nginx) fails p: static authority authority-0 disallows the image`},
		{"keyless", v1beta1.Authority{Keyless: &v1beta1.KeylessRef{Identities: []v1beta1.Identity{{Issuer: "i", Subject: "s"}}}},
			`container "c0" (nginx) fails p: signature keyless validation failed for authority authority-0 for nginx: no signature verifier is configured`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(t, o, Options{}, newCIP("p", withAuthorities(tc.a)))
			if got := d.Results[0].Explanation; got != tc.want {
				t.Errorf("Explanation = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestExplanationOfWorkloads(t *testing.T) {
	d := decide(t, obj(t, deploymentYAML), Options{},
		newCIP("p", withCUE(`spec: template: spec: containers: [...{name: "web"}]`)))
	want := `container "app" (nginx) fails p: web`
	if got := d.Results[0].Explanation; got != want {
		t.Errorf("Explanation = %q, want %q", got, want)
	}
}
