package admission_test

// Benchmark 2 of BENCHMARKS.md (issue 8): admission latency under load.
//
//	go test -run '^$' -bench BenchmarkWebhookLoad -benchtime=1x ./internal/admission/
//
// The webhook runs as `vigil controller` runs it: manager.New registers the
// real handlers on controller-runtime's webhook server (HTTPS, TLS 1.2 or
// newer) on 127.0.0.1, with the certificate cert-controller makes and
// injects into the webhook configuration, and the policy store fed by the
// manager's informer from a real kube-apiserver and etcd (envtest, binaries
// from bin/), which keep running beside it. The seed ClusterImagePolicy of
// config/samples is applied to the apiserver, which sends it through Vigil's
// own policy webhook, and reaches the store through the watch.
//
// vegeta's library attacks it at each rate with AdmissionReviews shaped as
// kube-apiserver sends them for pod CREATE (HTTP/1.1 with keep-alive, as
// kube-apiserver calls a webhook behind a Service), then attacks a trivial
// handler on the same kind of server that answers every request with one
// fixed allowed AdmissionReview: the floor of HTTPS and vegeta on this
// machine. Each rate reports Vigil's p50, p99, max and errors next to the
// floor's. Every response is checked: HTTP 200, the request's uid echoed, and
// allowed or denied as the seed policy says for that pod; a wrong answer
// fails the benchmark. Latency is reported, never asserted. Besides the
// latencies (measured window only) and errors (warm-up included), each rate
// reports the connections opened (each a TLS handshake, about 1 ms of server
// CPU with cert-controller's RSA-2048 key) and the CPU time of this process
// per request, for Vigil and the floor.
//
// Last, the sub-benchmark signed (issue 15) switches the same server to a
// key authority over images signed by the cosign CLI in an in-memory
// registry (see loadEnv.sign), warms the verifier's cache with one pass over
// the mix, and attacks again at 500/s beside the floor, reporting also the
// registry requests made during the attacks:
//
//	go test -run '^$' -bench 'BenchmarkWebhookLoad/(rate=500|signed)' -benchtime=1x ./internal/admission/
//
// Environment:
//
//	VIGIL_LOAD_DURATION  measured time per target and rate (default 10s)
//	VIGIL_LOAD_WARMUP    unmeasured lead-in of every attack (default 2s), its
//	                     rate rising from a tenth to the full rate: the
//	                     connections and caches of a steady state
//	VIGIL_LOAD_ROUNDS    the measured time is split into rounds that
//	                     alternate the order of Vigil and the floor
//	                     (default 2: Vigil, floor, floor, Vigil)
//	VIGIL_LOAD_RATES     requests per second (default 100,500,2000; signed 500)
//	VIGIL_LOAD_MAX_CONNS bound on the connections to a server (default none,
//	                     as vegeta and kube-apiserver): requests wait for a
//	                     connection instead of opening one, which shows the
//	                     server's capacity without new TLS handshakes
//	VIGIL_TEST_LOG       set: the manager's logs go to stderr

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/vigil-dev/vigil/apis/policy/v1beta1"
	"github.com/vigil-dev/vigil/internal/admission"
	"github.com/vigil-dev/vigil/internal/manager"
	"github.com/vigil-dev/vigil/internal/policy"
	"github.com/vigil-dev/vigil/internal/policystore"
	"github.com/vigil-dev/vigil/internal/settings"
	"github.com/vigil-dev/vigil/internal/testenv"
	"github.com/vigil-dev/vigil/internal/verify"
	"github.com/vigil-dev/vigil/internal/verify/verifytest"
)

// The request mix: loadWorkloads Deployments of loadReplicas replicas each,
// which differ only in name, uid and token volume (so the decision cache is
// hit as for real replicas), and loadUnique bare pods. Workloads and unique
// pods numbered 5 and 3 modulo 16 add NET_ADMIN, which the seed policy
// denies: 2 of 32 workloads and 4 of 64 unique pods, 64 of the 1,024 bodies
// (6.25%).
const (
	loadWorkloads = 32
	loadReplicas  = 30
	loadUnique    = 64

	loadNamespace = "bench"
	seedPolicy    = "non-default-capabilities-cue"
)

// uidPlaceholder marks where each request's own uid is written.
const uidPlaceholder = "ffffffff-ffff-4fff-bfff-ffffffffffff"

// review is a pre-built AdmissionReview body.
type review struct {
	body    []byte
	uidAt   int  // offset of the request uid in body
	allowed bool // what the seed policy decides
	name    string
}

// loadEnv is the webhook, the floor and the request mix.
type loadEnv struct {
	vigilURL, floorURL string
	tls                *tls.Config
	reviews            []review
	next               atomic.Uint64 // requests made, for unique uids
	maxConns           int           // VIGIL_LOAD_MAX_CONNS; 0: no bound, as vegeta
	client             *http.Client  // one request at a time, for checks and warm-up
	signed             *signedMix    // nil: the seed policy's static authority
	ctx                context.Context
	k8s                client.Client
	manager            *manager.Manager
}

// defaultCaps are the 13 capabilities the seed policy allows.
var defaultCaps = []corev1.Capability{
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

var setLoggerOnce sync.Once

// startLoadEnv starts kube-apiserver and etcd, the manager as `vigil
// controller` starts it, the seed policy, and the floor server; everything
// stops when tb ends.
func startLoadEnv(tb testing.TB) *loadEnv {
	tb.Helper()
	setLoggerOnce.Do(func() {
		var logs io.Writer = io.Discard
		if os.Getenv("VIGIL_TEST_LOG") != "" {
			logs = os.Stderr
		}
		// zap's production settings, as `vigil controller` without flags.
		ctrl.SetLogger(zap.New(zap.WriteTo(logs)))
	})
	env, err := testenv.New()
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		tb.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	tb.Cleanup(func() { _ = env.Stop() })
	k8s, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)

	ns := manager.DefaultNamespace
	port, floorPort := loopbackPort(tb), loopbackPort(tb)
	// What config/ installs before Vigil starts: its namespace, the empty
	// certificate Secret and the webhook configuration; and a namespace
	// whose pods the webhook judges.
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: manager.DefaultCertSecretName}},
		admission.Configuration(admission.ConfigurationOptions{
			Name: manager.DefaultWebhookConfigName, WorkloadWebhookName: manager.DefaultWebhookName,
			Namespace: ns, URL: "https://localhost:" + strconv.Itoa(port),
		}),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: loadNamespace, Labels: map[string]string{v1beta1.IncludeLabel: "true"}}},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			tb.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
		}
	}

	certDir := tb.TempDir()
	m, err := manager.New(cfg, manager.Options{
		Namespace:              ns,
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: "0",
		WebhookHost:            "127.0.0.1",
		WebhookPort:            port,
		CertDir:                certDir,
		CopyCertFromSecret:     true, // no kubelet mounts the Secret here
		CertSecretName:         manager.DefaultCertSecretName,
		CertDNSName:            "localhost",
		WebhookConfigName:      manager.DefaultWebhookConfigName,
		NoMatchPolicy:          policy.NoMatchDeny,
		PolicyTimeout:          policy.DefaultPolicyTimeout,
	})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	})
	if err := testenv.WaitWebhook(ctx, m.CertsReady, m.Webhook.StartedChecker(), 2*time.Minute); err != nil {
		tb.Fatal(err)
	}

	// The CA the apiserver trusts, as cert-controller injected it.
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := k8s.Get(ctx, client.ObjectKey{Name: manager.DefaultWebhookConfigName}, &vwc); err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(vwc.Webhooks[0].ClientConfig.CABundle) {
		tb.Fatal("the webhook configuration has no CA bundle")
	}
	e := &loadEnv{
		vigilURL: fmt.Sprintf("https://127.0.0.1:%d%s?timeout=%ds", port, admission.WorkloadPath, admission.TimeoutSeconds),
		floorURL: fmt.Sprintf("https://127.0.0.1:%d%s?timeout=%ds", floorPort, admission.WorkloadPath, admission.TimeoutSeconds),
		tls:      &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		ctx:      ctx, k8s: k8s, manager: m,
	}
	e.client = &http.Client{Timeout: admission.TimeoutSeconds * time.Second, Transport: &http.Transport{TLSClientConfig: e.tls}}

	applySeedPolicy(tb, ctx, k8s, m)
	startFloor(tb, ctx, floorPort, certDir)
	e.reviews = buildReviews(tb, nil)
	return e
}

// applySeedPolicy creates the policy through the apiserver (which asks
// Vigil's policy webhook first) and waits until the store compiled it.
func applySeedPolicy(tb testing.TB, ctx context.Context, k8s client.Client, m *manager.Manager) {
	tb.Helper()
	cip, err := testenv.SeedPolicy()
	if err != nil {
		tb.Fatal(err)
	}
	if cip.Name != seedPolicy {
		tb.Fatalf("config/samples/cip.yaml holds %s, not %s", cip.Name, seedPolicy)
	}
	deadline := time.Now().Add(time.Minute)
	// The apiserver may still be reading the freshly injected caBundle.
	for {
		err := k8s.Create(ctx, cip.DeepCopy())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("create ClusterImagePolicy %s: %v", cip.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		gen, err, known := m.Policies.Status(cip.Name)
		if known && gen > 0 {
			if err != nil {
				tb.Fatalf("the store did not compile %s: %v", cip.Name, err)
			}
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the store never received %s", cip.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startFloor serves, on the same kind of server as the webhook (controller-
// runtime's, with the same TLS settings and certificate), a handler that
// reads the request and answers with one fixed allowed AdmissionReview.
func startFloor(tb testing.TB, ctx context.Context, port int, certDir string) {
	tb.Helper()
	answer, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: &admissionv1.AdmissionResponse{UID: "00000000-0000-4000-8000-000000000000", Allowed: true},
	})
	if err != nil {
		tb.Fatal(err)
	}
	answer = append(answer, '\n')
	srv := webhook.NewServer(webhook.Options{
		Host: "127.0.0.1", Port: port, CertDir: certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }},
	})
	srv.Register(admission.WorkloadPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	})
	deadline := time.Now().Add(time.Minute)
	for srv.StartedChecker()(&http.Request{}) != nil {
		select {
		case err := <-done:
			tb.Fatalf("floor server: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatal("the floor server is not serving")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func loopbackPort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// The request mix.

// suffix makes n characters of the alphabet Kubernetes uses for generated names.
func suffix(seed uint64, n int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// httpProbe is a probe with the defaults the apiserver fills in.
func httpProbe(path string, port int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(port), Scheme: corev1.URISchemeHTTP}},
		TimeoutSeconds:   1,
		PeriodSeconds:    10,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
}

func resources(cpu, mem, memLimit string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memLimit)},
	}
}

// baseSpec is the template of workload w (four shapes), as a user writes it.
func baseSpec(app string, w int) corev1.PodSpec {
	image := func(name string) string {
		return fmt.Sprintf("registry.example.com/team-%02d/%s:v1.%d.%d", w%7, name, w%5, w%3)
	}
	env := []corev1.EnvVar{
		{Name: "APP", Value: app},
		{Name: "LOG_LEVEL", Value: "info"},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
	}
	restricted := func(add ...corev1.Capability) *corev1.SecurityContext {
		return &corev1.SecurityContext{
			RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: add},
		}
	}
	port := func(name string, p int32) []corev1.ContainerPort {
		return []corev1.ContainerPort{{Name: name, ContainerPort: p, Protocol: corev1.ProtocolTCP}}
	}
	switch w % 4 {
	case 0: // a web server
		return corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: image(app), Ports: port("http", 8080), Env: env,
			Resources:      resources("100m", "128Mi", "256Mi"),
			ReadinessProbe: httpProbe("/readyz", 8080), LivenessProbe: httpProbe("/healthz", 8080),
			SecurityContext: restricted("NET_BIND_SERVICE"),
		}}}
	case 1: // an API with a proxy sidecar
		return corev1.PodSpec{Containers: []corev1.Container{
			{
				Name: "api", Image: image(app), Ports: port("grpc", 9090), Env: env,
				Args:      []string{"--listen=:9090", "--metrics=:9102"},
				Resources: resources("250m", "256Mi", "512Mi"), ReadinessProbe: httpProbe("/ready", 9102),
				SecurityContext: restricted(),
			},
			{
				Name: "proxy", Image: image("envoy"), Ports: port("https", 8443),
				Args:            []string{"-c", "/etc/envoy/envoy.yaml", "--log-level", "warn"},
				Resources:       resources("50m", "64Mi", "128Mi"),
				SecurityContext: restricted("NET_BIND_SERVICE"),
			},
		}}
	case 2: // a worker with a migration init container
		return corev1.PodSpec{
			InitContainers: []corev1.Container{{
				Name: "migrate", Image: image(app + "-migrations"), Command: []string{"/migrate", "up"}, Env: env,
				Resources: resources("50m", "64Mi", "128Mi"), SecurityContext: restricted(),
			}},
			Containers: []corev1.Container{{
				Name: "worker", Image: image(app), Command: []string{"/worker"}, Args: []string{"--queue", app, "--concurrency", "8"},
				Env: env, Resources: resources("500m", "512Mi", "1Gi"),
				SecurityContext: restricted("CHOWN", "SETUID", "SETGID"),
			}},
		}
	default: // a cache with a scratch volume
		return corev1.PodSpec{
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{{
				Name: "cache", Image: image("redis"), Ports: port("redis", 6379), Args: []string{"--save", "", "--appendonly", "no"},
				Resources:    resources("100m", "256Mi", "256Mi"),
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
					Add: []corev1.Capability{defaultCaps[w%len(defaultCaps)]},
				}},
			}},
		}
	}
}

// admitted dresses a pod as kube-apiserver sends it to a validating webhook
// at CREATE: uid and creation time set, the defaults, the service-account
// admission's projected kube-api-access volume and its mounts, the default
// tolerations, priority, status Pending, managedFields; no node yet.
func admitted(p *corev1.Pod, uid types.UID, created time.Time, token string, manager string) *corev1.Pod {
	p.Namespace = loadNamespace
	p.UID = uid
	p.CreationTimestamp = metav1.NewTime(created)
	testenv.AsAdmitted(p, token)
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{
		Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		Time: ptr.To(metav1.NewTime(created)), FieldsType: "FieldsV1",
		FieldsV1: &metav1.FieldsV1{Raw: fieldsV1(p)},
	}}
	return p
}

// fieldsV1 approximates the managed fields of what the pod's creator set.
func fieldsV1(p *corev1.Pod) []byte {
	set := map[string]any{}
	keys := func(m map[string]string) map[string]any {
		out := map[string]any{".": set}
		for k := range m {
			out["f:"+k] = set
		}
		return out
	}
	meta := map[string]any{}
	if p.GenerateName != "" {
		meta["f:generateName"] = set
	}
	if len(p.Labels) > 0 {
		meta["f:labels"] = keys(p.Labels)
	}
	for _, o := range p.OwnerReferences {
		meta["f:ownerReferences"] = map[string]any{".": set, fmt.Sprintf(`k:{"uid":"%s"}`, o.UID): set}
	}
	containers := func(cs []corev1.Container) map[string]any {
		out := map[string]any{}
		for _, c := range cs {
			f := map[string]any{".": set, "f:image": set, "f:imagePullPolicy": set, "f:name": set,
				"f:resources":              map[string]any{".": set, "f:limits": set, "f:requests": set},
				"f:terminationMessagePath": set, "f:terminationMessagePolicy": set}
			if len(c.Env) > 0 {
				env := map[string]any{".": set}
				for _, e := range c.Env {
					env[fmt.Sprintf(`k:{"name":"%s"}`, e.Name)] = map[string]any{".": set, "f:name": set, "f:value": set}
				}
				f["f:env"] = env
			}
			if len(c.Ports) > 0 {
				ports := map[string]any{".": set}
				for _, pt := range c.Ports {
					ports[fmt.Sprintf(`k:{"containerPort":%d,"protocol":"TCP"}`, pt.ContainerPort)] = map[string]any{".": set, "f:containerPort": set, "f:name": set, "f:protocol": set}
				}
				f["f:ports"] = ports
			}
			if c.SecurityContext != nil {
				f["f:securityContext"] = map[string]any{".": set, "f:capabilities": map[string]any{".": set, "f:add": set, "f:drop": set}}
			}
			out[fmt.Sprintf(`k:{"name":"%s"}`, c.Name)] = f
		}
		return out
	}
	spec := map[string]any{"f:containers": containers(p.Spec.Containers), "f:dnsPolicy": set, "f:enableServiceLinks": set,
		"f:restartPolicy": set, "f:schedulerName": set, "f:securityContext": set, "f:terminationGracePeriodSeconds": set}
	if len(p.Spec.InitContainers) > 0 {
		spec["f:initContainers"] = containers(p.Spec.InitContainers)
	}
	raw, err := json.Marshal(map[string]any{"f:metadata": meta, "f:spec": spec})
	if err != nil {
		panic(err)
	}
	return raw
}

func addCapability(p *corev1.Pod, c corev1.Capability) {
	sc := p.Spec.Containers[0].SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
		p.Spec.Containers[0].SecurityContext = sc
	}
	if sc.Capabilities == nil {
		sc.Capabilities = &corev1.Capabilities{}
	}
	sc.Capabilities.Add = append(sc.Capabilities.Add, c)
}

// replica is replica r of workload w, as the ReplicaSet controller creates it.
func replica(w, r int, fails bool) *corev1.Pod {
	app := fmt.Sprintf("svc-%02d", w)
	hash := suffix(uint64(w), 10)
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:         app + "-" + hash + "-" + suffix(uint64(w<<16|r), 5),
			GenerateName: app + "-" + hash + "-",
			Labels:       map[string]string{"app.kubernetes.io/name": app, "pod-template-hash": hash},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + hash,
				UID: types.UID(fmt.Sprintf("%08x-1111-4000-8000-%012x", w, w)), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: baseSpec(app, w),
	}
	if fails {
		addCapability(p, "NET_ADMIN")
	}
	return admitted(p, types.UID(fmt.Sprintf("%08x-2222-4000-8000-%012x", w, r)),
		time.Unix(1767225600+int64(w*loadReplicas+r), 0).UTC(), "kube-api-access-"+suffix(uint64(w<<16|r)^0xacce55, 5), "kube-controller-manager")
}

// unique is a bare pod someone runs with kubectl, unlike any other.
func unique(u int, fails bool) *corev1.Pod {
	images := []string{"docker.io/library/busybox:1.37", "docker.io/library/ubuntu:24.04", "docker.io/curlimages/curl:8.11.1", "docker.io/nicolaka/netshoot:v0.13"}
	var caps []corev1.Capability
	for i, c := range defaultCaps {
		if (u+1)&(1<<i) != 0 {
			caps = append(caps, c)
		}
	}
	name := fmt.Sprintf("debug-%s", suffix(uint64(u)^0xdeb, 5))
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"run": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: name, Image: images[u%len(images)], Command: []string{"sleep", "3600"},
			Resources:       resources("10m", "16Mi", "64Mi"),
			SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: caps}},
		}}},
	}
	if fails {
		addCapability(p, "NET_ADMIN")
	}
	return admitted(p, types.UID(fmt.Sprintf("%08x-3333-4000-8000-%012x", u, u)),
		time.Unix(1767300000+int64(u), 0).UTC(), "kube-api-access-"+suffix(uint64(u)^0x70c3, 5), "kubectl-run")
}

// reviewOf is the AdmissionReview kube-apiserver sends for the pod's CREATE.
func reviewOf(tb testing.TB, p *corev1.Pod, user authenticationv1.UserInfo, allowed bool) review {
	tb.Helper()
	obj, err := json.Marshal(p)
	if err != nil {
		tb.Fatal(err)
	}
	pods := metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: uidPlaceholder, Kind: podKind, Resource: pods, RequestKind: &podKind, RequestResource: &pods,
			Name: p.Name, Namespace: p.Namespace, Operation: admissionv1.Create, UserInfo: user,
			Object:  runtime.RawExtension{Raw: obj},
			DryRun:  ptr.To(false),
			Options: runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	at := bytes.Index(body, []byte(`"uid":"`+uidPlaceholder+`"`))
	if at < 0 || bytes.Count(body, []byte(uidPlaceholder)) != 1 {
		tb.Fatalf("no single request uid in %s", body)
	}
	return review{body: body, uidAt: at + len(`"uid":"`), allowed: allowed, name: p.Name}
}

// buildReviews is the mix in a fixed shuffled order; images, when set,
// replaces every image of the pods.
func buildReviews(tb testing.TB, images func(string) string) []review {
	tb.Helper()
	rsController := authenticationv1.UserInfo{
		Username: "system:serviceaccount:kube-system:replicaset-controller",
		UID:      "6f1c3d2e-9a41-4c1b-8f0e-2b7d5e8a9c10",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
	}
	admin := authenticationv1.UserInfo{Username: "kubernetes-admin", Groups: []string{"kubeadm:cluster-admins", "system:authenticated"}}
	var rs []review
	for w := range loadWorkloads {
		fails := w%16 == 5
		for r := range loadReplicas {
			rs = append(rs, reviewOf(tb, withImages(replica(w, r, fails), images), rsController, !fails))
		}
	}
	for u := range loadUnique {
		fails := u%16 == 3
		rs = append(rs, reviewOf(tb, withImages(unique(u, fails), images), admin, !fails))
	}
	rand.New(rand.NewPCG(8, 2)).Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
	return rs
}

// withImages replaces the images of p's containers by images(image).
func withImages(p *corev1.Pod, images func(string) string) *corev1.Pod {
	if images == nil {
		return p
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			cs[i].Image = images(cs[i].Image)
		}
	}
	return p
}

// request n's uid; n also picks the body.
func requestUID(n uint64) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", n) }

// body is request n: the next body of the mix with a uid of its own.
func (e *loadEnv) body(n uint64) ([]byte, *review) {
	rv := &e.reviews[n%uint64(len(e.reviews))]
	b := bytes.Clone(rv.body)
	copy(b[rv.uidAt:], requestUID(n))
	return b, rv
}

// targeter cycles through the mix; every request has a unique uid.
func (e *loadEnv) targeter(url string) vegeta.Targeter {
	hdr := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, */*"}}
	return func(t *vegeta.Target) error {
		if t == nil {
			return vegeta.ErrNilTarget
		}
		b, _ := e.body(e.next.Add(1))
		*t = vegeta.Target{Method: http.MethodPost, URL: url, Body: b, Header: hdr}
		return nil
	}
}

// reviewResponse is what is read of an answer.
type reviewResponse struct {
	Response *struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
		Status  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

// verdict checks an answer of Vigil's: the uid echoed, and the decision the
// seed policy makes for that body. It returns whether the pod was allowed.
func (e *loadEnv) verdict(body []byte) (allowed bool, err error) {
	var rr reviewResponse
	if err := json.Unmarshal(body, &rr); err != nil || rr.Response == nil {
		return false, fmt.Errorf("not an AdmissionReview response: %.200s", body)
	}
	uid := rr.Response.UID
	n, perr := strconv.ParseUint(strings.TrimPrefix(uid, "00000000-0000-4000-8000-"), 16, 64)
	if perr != nil || len(uid) != len(uidPlaceholder) || n == 0 {
		return false, fmt.Errorf("response uid %q is not a request's", uid)
	}
	rv := &e.reviews[n%uint64(len(e.reviews))]
	switch {
	case rr.Response.Allowed != rv.allowed:
		return rr.Response.Allowed, fmt.Errorf("pod %s: allowed=%v, want %v (%+v)", rv.name, rr.Response.Allowed, rv.allowed, rr.Response.Status)
	case !rv.allowed && (rr.Response.Status == nil || rr.Response.Status.Code != http.StatusBadRequest ||
		!strings.Contains(rr.Response.Status.Message, "failed policy: "+seedPolicy)):
		return false, fmt.Errorf("pod %s: denied with %+v, want 400 naming %s", rv.name, rr.Response.Status, seedPolicy)
	}
	return rr.Response.Allowed, nil
}

// outcome gathers one target's attacks at one rate.
type outcome struct {
	metrics                  vegeta.Metrics // the measured window only
	requests, errors         int            // warm-up included
	allowed, denied, wrong   int
	errorSamples, wrongSamps []string
	reports                  []string
	cpu                      time.Duration // of the whole process, warm-up included
	drain                    time.Duration // waiting for the server to finish after the attacks
	dials                    atomic.Int64  // connections opened, each with a TLS handshake
}

// attack runs one attack of warmup+measure at rate and adds its results to o.
// check: answers are Vigil's and are checked one by one.
func (e *loadEnv) attack(tb testing.TB, url string, rate int, warmup, measure time.Duration, check bool, o *outcome) {
	// vegeta's own connection pool (every connection kept open for reuse),
	// on a transport of the attack's own, closed when the attack ends so
	// that attacks do not pile up open connections.
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			o.dials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: vegeta.DefaultConnections,
		MaxConnsPerHost:     e.maxConns,
	}
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(
		vegeta.Client(&http.Client{Transport: tr}),
		vegeta.TLSConfig(e.tls),
		vegeta.HTTP2(false), // kube-apiserver speaks HTTP/1.1 to a webhook Service
		vegeta.KeepAlive(true),
		vegeta.Timeout(admission.TimeoutSeconds*time.Second),
	)
	var m vegeta.Metrics
	began, cpu := time.Now(), cpuTime()
	defer func() { o.cpu += cpuTime() - cpu }()
	pacer := rampPacer{rate: float64(rate), warmup: warmup}
	for r := range atk.Attack(e.targeter(url), pacer, warmup+measure, "load") {
		o.requests++
		if r.Error != "" {
			o.errors++
			if len(o.errorSamples) < 5 {
				o.errorSamples = append(o.errorSamples, fmt.Sprintf("%d %s", r.Code, r.Error))
			}
		} else if check {
			switch allowed, err := e.verdict(r.Body); {
			case err != nil:
				o.wrong++
				if len(o.wrongSamps) < 5 {
					o.wrongSamps = append(o.wrongSamps, err.Error())
				}
			case allowed:
				o.allowed++
			default:
				o.denied++
			}
		}
		if r.Timestamp.Sub(began) >= warmup {
			m.Add(r)
			o.metrics.Add(r)
		}
	}
	m.Close()
	o.drain += waitIdle(tb)
	var rep bytes.Buffer
	_ = vegeta.NewTextReporter(&m).Report(&rep)
	o.reports = append(o.reports, rep.String())
}

// rampPacer raises the rate linearly from a tenth of rate to rate over
// warmup, then holds it: the client opens its connections as the load grows,
// as kube-apiserver's pool grows with the pod creations, instead of opening
// a connection for every one of the first requests at once.
type rampPacer struct {
	rate   float64 // per second
	warmup time.Duration
}

// hits is how many requests are due by t.
func (p rampPacer) hits(t time.Duration) float64 {
	r0, w := p.rate/10, p.warmup.Seconds()
	if s := t.Seconds(); s < w {
		return r0*s + (p.rate-r0)*s*s/(2*w)
	}
	return r0*w + (p.rate-r0)*w/2 + p.rate*(t.Seconds()-w)
}

// Rate implements vegeta.Pacer: the rate at elapsed, per second.
func (p rampPacer) Rate(elapsed time.Duration) float64 {
	if elapsed >= p.warmup {
		return p.rate
	}
	r0 := p.rate / 10
	return r0 + (p.rate-r0)*elapsed.Seconds()/p.warmup.Seconds()
}

// Pace implements vegeta.Pacer: the wait until request hits+1 is due.
func (p rampPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	next := float64(hits + 1)
	if p.hits(elapsed) >= next {
		return 0, false
	}
	r0, w := p.rate/10, p.warmup.Seconds()
	var due float64 // seconds
	if end := p.hits(p.warmup); w > 0 && next <= end {
		a := (p.rate - r0) / (2 * w) // solve a*t^2 + r0*t = next
		due = (-r0 + math.Sqrt(r0*r0+4*a*next)) / (2 * a)
	} else {
		due = w + (next-end)/p.rate
	}
	return max(time.Duration(due*float64(time.Second))-elapsed, 0), false
}

// waitIdle waits until neither webhook server has a request in flight
// (controller-runtime's gauge), so that an attack the server fell behind on
// does not load the next one; it reports how long that took.
func waitIdle(tb testing.TB) time.Duration {
	start := time.Now()
	for {
		inFlight := 0.0
		mfs, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			tb.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "controller_runtime_webhook_requests_in_flight" {
				for _, m := range mf.GetMetric() {
					inFlight += m.GetGauge().GetValue()
				}
			}
		}
		if inFlight == 0 {
			return time.Since(start)
		}
		if time.Since(start) > 2*time.Minute {
			tb.Fatalf("%v requests still in flight after %s", inFlight, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		tb.Fatalf("%s=%q: want a duration such as 10s", name, v)
	}
	return d
}

func envInts(tb testing.TB, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			tb.Fatalf("%s=%q: want positive integers separated by commas", name, v)
		}
		out = append(out, n)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func BenchmarkWebhookLoad(b *testing.B) {
	e := startLoadEnv(b)
	runWebhookLoad(b, e, []int{100, 500, 2000})
	// Issue 15: the same at 500/s with a key authority over signed images,
	// verdicts cached; last, since it changes the policy and the mix.
	b.Run("signed", func(b *testing.B) {
		e.sign(b)
		runWebhookLoad(b, e, []int{500})
	})
}

// runWebhookLoad attacks e at each rate (VIGIL_LOAD_RATES, else rates),
// Vigil and the floor side by side, and reports both.
func runWebhookLoad(b *testing.B, e *loadEnv, rates []int) {
	measure := envDuration(b, "VIGIL_LOAD_DURATION", 10*time.Second)
	warmup := envDuration(b, "VIGIL_LOAD_WARMUP", 2*time.Second)
	rounds := 2
	if r := envInts(b, "VIGIL_LOAD_ROUNDS", nil); r != nil {
		rounds = r[0]
	}
	rates = envInts(b, "VIGIL_LOAD_RATES", rates)
	e.maxConns = envInts(b, "VIGIL_LOAD_MAX_CONNS", []int{0})[0]
	denied := 0
	for _, rv := range e.reviews {
		if !rv.allowed {
			denied++
		}
	}
	fmt.Printf("mix: %d bodies (%d workloads x %d replicas, %d unique pods), %d (%.2f%%) denied by %s; body %d to %d bytes\n",
		len(e.reviews), loadWorkloads, loadReplicas, loadUnique, denied, 100*float64(denied)/float64(len(e.reviews)), seedPolicy,
		minLen(e.reviews), maxLen(e.reviews))

	for _, rate := range rates {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			var vigil, floor outcome
			registryBefore := e.registryRequests()
			per := measure / time.Duration(rounds)
			for range b.N {
				for round := range rounds {
					// ABBA: Vigil first in even rounds, the floor first in odd ones.
					if round%2 == 0 {
						e.attack(b, e.vigilURL, rate, warmup, per, true, &vigil)
						e.attack(b, e.floorURL, rate, warmup, per, false, &floor)
					} else {
						e.attack(b, e.floorURL, rate, warmup, per, false, &floor)
						e.attack(b, e.vigilURL, rate, warmup, per, true, &vigil)
					}
				}
			}
			b.StopTimer()
			if e.signed != nil {
				// Verdicts come from the verifier's cache: none, once warm.
				b.ReportMetric(float64(e.registryRequests()-registryBefore), "registry-requests")
			}
			vigil.metrics.Close()
			floor.metrics.Close()
			vl, fl := vigil.metrics.Latencies, floor.metrics.Latencies
			b.Logf("rate %d/s: vigil p50 %.3f p99 %.3f max %.3f ms, %d errors of %d; floor p50 %.3f p99 %.3f max %.3f ms, %d errors of %d; p99 ratio %.2f; vigil allowed %d denied %d; cpu per request vigil %s floor %s",
				rate, ms(vl.P50), ms(vl.P99), ms(vl.Max), vigil.errors, vigil.requests,
				ms(fl.P50), ms(fl.P99), ms(fl.Max), floor.errors, floor.requests, float64(vl.P99)/float64(fl.P99), vigil.allowed, vigil.denied,
				vigil.cpu/time.Duration(max(vigil.requests, 1)), floor.cpu/time.Duration(max(floor.requests, 1)))
			// go test keeps only the first lines a benchmark logs: vegeta's
			// reports go to stdout.
			for i, r := range vigil.reports {
				fmt.Printf("vegeta: vigil, attack %d of %d at %d/s\n%s", i+1, len(vigil.reports), rate, r)
			}
			for i, r := range floor.reports {
				fmt.Printf("vegeta: floor, attack %d of %d at %d/s\n%s", i+1, len(floor.reports), rate, r)
			}
			b.ReportMetric(ms(vl.P50), "p50-ms")
			b.ReportMetric(ms(vl.P99), "p99-ms")
			b.ReportMetric(ms(vl.Max), "max-ms")
			b.ReportMetric(float64(vigil.errors), "errors")
			b.ReportMetric(100*float64(vigil.errors)/float64(max(vigil.requests, 1)), "errors-%")
			b.ReportMetric(100*float64(vigil.denied)/float64(max(vigil.allowed+vigil.denied, 1)), "denied-%")
			b.ReportMetric(ms(fl.P50), "floor-p50-ms")
			b.ReportMetric(ms(fl.P99), "floor-p99-ms")
			b.ReportMetric(ms(fl.Max), "floor-max-ms")
			b.ReportMetric(float64(floor.errors), "floor-errors")
			b.ReportMetric(float64(vl.P99)/float64(fl.P99), "p99-ratio")
			// CPU of this process (vegeta, the server and, for Vigil, the
			// handler) per request: the difference is Vigil's handler.
			vcpu := float64(vigil.cpu.Microseconds()) / float64(max(vigil.requests, 1))
			fcpu := float64(floor.cpu.Microseconds()) / float64(max(floor.requests, 1))
			b.ReportMetric(vcpu, "cpu-us/req")
			b.ReportMetric(fcpu, "floor-cpu-us/req")
			b.ReportMetric(float64(vigil.dials.Load()), "conns")
			b.ReportMetric(float64(floor.dials.Load()), "floor-conns")
			if vigil.drain+floor.drain > time.Second {
				b.Logf("the servers were still busy after the attacks: vigil %s, floor %s", vigil.drain, floor.drain)
			}
			if len(vigil.errorSamples) > 0 || len(floor.errorSamples) > 0 {
				b.Logf("errors: vigil %q, floor %q", vigil.errorSamples, floor.errorSamples)
			}
			if vigil.wrong > 0 {
				b.Errorf("%d of %d answers were wrong, e.g. %q", vigil.wrong, vigil.requests, vigil.wrongSamps)
			}
			if vigil.allowed+vigil.denied == 0 || vigil.denied == 0 {
				b.Errorf("no decision checked (allowed %d, denied %d)", vigil.allowed, vigil.denied)
			}
		})
	}
}

// sign switches e to signed images: every image of the mix becomes one of
// signedImages digests in an in-memory registry, signed by the cosign CLI
// with one key, and the seed policy's authority becomes that key (updated
// through the apiserver; the store recompiles it). Every body is then
// judged once, so that verdicts come from the verifier's cache.
func (e *loadEnv) sign(b *testing.B) {
	s := newSignedMix(b)
	var cip v1beta1.ClusterImagePolicy
	if err := e.k8s.Get(e.ctx, client.ObjectKey{Name: seedPolicy}, &cip); err != nil {
		b.Fatal(err)
	}
	cip.Spec.Authorities = []v1beta1.Authority{{Name: "release-key", Key: &v1beta1.KeyRef{Data: string(s.pub)}}}
	if err := e.k8s.Update(e.ctx, &cip); err != nil {
		b.Fatalf("update ClusterImagePolicy %s: %v", seedPolicy, err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		gen, err, _ := e.manager.Policies.Status(seedPolicy)
		if gen >= cip.Generation {
			if err != nil {
				b.Fatalf("the store did not compile %s: %v", seedPolicy, err)
			}
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the store never received generation %d of %s", cip.Generation, seedPolicy)
		}
	}
	e.signed, e.reviews = s, buildReviews(b, s.image)
	start, before := time.Now(), e.registryRequests()
	for range e.reviews {
		body, _ := e.body(e.next.Add(1))
		if _, err := e.verdict(e.post(b, e.vigilURL, body)); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Printf("signed mix: %d bodies judged once (%d signed digests, %d registry requests) in %s\n",
		len(e.reviews), len(s.images), e.registryRequests()-before, time.Since(start).Round(time.Millisecond))
}

// signedImages is how many distinct signed digests the signed mix uses.
const signedImages = 16

// signedMix is signedImages images in an in-memory registry, signed by the
// cosign CLI with one key (legacy layout), that stand for the mix's images.
type signedMix struct {
	reg    *verifytest.Registry
	pub    []byte
	images []string // digest references
}

func newSignedMix(tb testing.TB) *signedMix {
	tb.Helper()
	cosign := verifytest.RegistryCosign(tb)
	s := &signedMix{reg: verifytest.NewRegistry(tb)}
	var key string
	key, s.pub = cosign.GenerateKey(tb)
	for i := range signedImages {
		d := s.reg.PushImage(tb, fmt.Sprintf("team-%02d/app", i))
		cosign.Sign(tb, key, d, false)
		s.images = append(s.images, d.String())
	}
	return s
}

// image is the signed digest that stands for image: the same image always
// gets the same digest.
func (s *signedMix) image(image string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(image))
	return s.images[h.Sum32()%uint32(len(s.images))]
}

// registryRequests is the signed mix's registry requests so far (0 without).
func (e *loadEnv) registryRequests() int64 {
	if e.signed == nil {
		return 0
	}
	return e.signed.reg.Requests.Load()
}

func minLen(rs []review) int {
	n := len(rs[0].body)
	for _, r := range rs {
		n = min(n, len(r.body))
	}
	return n
}

func maxLen(rs []review) int {
	n := 0
	for _, r := range rs {
		n = max(n, len(r.body))
	}
	return n
}

// post sends one body to url and returns the answer; anything but HTTP 200
// over TLS 1.2 or newer fails tb.
func (e *loadEnv) post(tb testing.TB, url string, body []byte) []byte {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		tb.Fatalf("%s: HTTP %d, TLS %v: %s", url, resp.StatusCode, resp.TLS, out)
	}
	return out
}

// TestWebhookLoadServerDecides checks, over the benchmark's own HTTPS
// server, that every body of the mix gets the seed policy's answer, and
// that the floor answers too.
func TestWebhookLoadServerDecides(t *testing.T) {
	testenv.Integration(t)
	if testing.Short() {
		t.Skip("starts kube-apiserver and etcd")
	}
	start := time.Now()
	e := startLoadEnv(t)
	t.Logf("apiserver, etcd, manager and policy ready in %s", time.Since(start).Round(time.Millisecond))
	post := func(url string, body []byte) []byte { return e.post(t, url, body) }

	allowed, denied := 0, 0
	for range e.reviews {
		body, _ := e.body(e.next.Add(1))
		got, err := e.verdict(post(e.vigilURL, body))
		if err != nil {
			t.Fatal(err)
		}
		if got {
			allowed++
		} else {
			denied++
		}
	}
	if want := 64; denied != want || allowed != len(e.reviews)-want {
		t.Errorf("allowed %d, denied %d; want %d denied of %d", allowed, denied, want, len(e.reviews))
	}

	// One failing and one passing replica, read in full.
	for _, want := range []bool{false, true} {
		for n := e.next.Add(1); ; n = e.next.Add(1) {
			body, rv := e.body(n)
			if rv.allowed != want {
				continue
			}
			var rr admissionv1.AdmissionReview
			if err := json.Unmarshal(post(e.vigilURL, body), &rr); err != nil {
				t.Fatal(err)
			}
			r := rr.Response
			if r == nil || string(r.UID) != requestUID(n) || r.Allowed != want {
				t.Fatalf("pod %s: response %+v, want uid %s allowed=%v", rv.name, r, requestUID(n), want)
			}
			if !want {
				// policy-controller's message, for the container that adds NET_ADMIN.
				wantPrefix := "validation failed: failed policy: " + seedPolicy + ": spec.containers["
				want := "spec.containers[0].image\n"
				if r.Result == nil || r.Result.Code != http.StatusBadRequest || !strings.HasPrefix(r.Result.Message, wantPrefix) ||
					!strings.Contains(r.Result.Message, want) || !strings.Contains(r.Result.Message, "capabilities.add") {
					t.Errorf("pod %s: denial %+v, want 400 %q... naming %q", rv.name, r.Result, wantPrefix, want)
				}
			}
			break
		}
	}

	var rr admissionv1.AdmissionReview
	body, _ := e.body(e.next.Add(1))
	if err := json.Unmarshal(post(e.floorURL, body), &rr); err != nil || rr.Response == nil || !rr.Response.Allowed {
		t.Errorf("floor: %+v, %v", rr.Response, err)
	}
}

// BenchmarkWebhookHandler is the server side of one request of the mix,
// without network or TLS: admission.Serve (the handler the webhook server
// wraps) with the WorkloadValidator and the seed policy, for profiles of
// the handler path.
func BenchmarkWebhookHandler(b *testing.B) {
	b.Run("static", func(b *testing.B) { benchmarkHandler(b, nil) })
	// Issue 15: the seed policy with a key authority over signed images,
	// verdicts cached (every body is judged once before the timing).
	signed := newSignedMix(b)
	b.Run("signed", func(b *testing.B) { benchmarkHandler(b, signed) })
}

func benchmarkHandler(b *testing.B, signed *signedMix) {
	cip, err := testenv.SeedPolicy()
	if err != nil {
		b.Fatal(err)
	}
	cip.Generation = 1
	validator := &admission.WorkloadValidator{NoMatch: settings.New(policy.NoMatchDeny), PolicyTimeout: policy.DefaultPolicyTimeout}
	e := &loadEnv{signed: signed}
	var images func(string) string
	if signed != nil {
		cip.Spec.Authorities = []v1beta1.Authority{{Name: "release-key", Key: &v1beta1.KeyRef{Data: string(signed.pub)}}}
		validator.Verifier = verify.New(verify.Options{})
		images = signed.image
	}
	validator.Policies = policystore.New(policy.Compiler{SystemNamespace: manager.DefaultNamespace})
	if err := validator.Policies.Apply(cip); err != nil {
		b.Fatal(err)
	}
	validator.Policies.MarkSynced()
	wh := admission.Serve(validator)
	e.reviews = buildReviews(b, images)
	bodies := make([][]byte, len(e.reviews))
	for i := range bodies {
		bodies[i], _ = e.body(uint64(i + 1))
	}
	w := &discardResponse{header: http.Header{}}
	serve := func(i int) {
		req := httptest.NewRequest(http.MethodPost, admission.WorkloadPath, bytes.NewReader(bodies[i%len(bodies)]))
		req.Header.Set("Content-Type", "application/json")
		w.buf.Reset()
		wh.ServeHTTP(w, req)
	}
	for i := range bodies { // every answer checked, caches warm
		serve(i)
		if _, err := e.verdict(w.buf.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu, requests := cpuTime(), e.registryRequests()
	defer func() {
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(e.registryRequests()-requests)/float64(b.N), "registry-requests/op")
	}()
	for i := range b.N {
		serve(i)
	}
}

// cpuTime is the CPU time the process used so far, user and system: on a
// shared machine it says what a request costs better than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type discardResponse struct {
	header http.Header
	buf    bytes.Buffer
}

func (d *discardResponse) Header() http.Header         { return d.header }
func (d *discardResponse) Write(p []byte) (int, error) { return d.buf.Write(p) }
func (d *discardResponse) WriteHeader(int)             {}
