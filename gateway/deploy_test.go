package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The files of this folder, in the order docs/deploy.md applies them.
var files = []string{"picker-rbac.yaml", "picker-epp.yaml", "inferencepool.yaml", "gateway.yaml"}

// inferencePool is InferencePool inference.networking.k8s.io/v1 as
// kubernetes-sigs/gateway-api-inference-extension api/v1/inferencepool_types.go
// defines it (spec only; status is the controller's). A local type because
// picker-svc/internal/inference is internal to picker-svc and reads the pool
// leniently (of endpointPickerRef only the name); decoded strictly, so a
// field the v1 API does not have (e.g. the pre-release portNumber) fails.
type inferencePool struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		TargetPorts []struct {
			Number int32 `json:"number"`
		} `json:"targetPorts"`
		EndpointPickerRef struct {
			Group *string `json:"group,omitempty"`
			Kind  string  `json:"kind,omitempty"`
			Name  string  `json:"name"`
			Port  *struct {
				Number int32 `json:"number"`
			} `json:"port,omitempty"`
			FailureMode string `json:"failureMode,omitempty"`
		} `json:"endpointPickerRef"`
	} `json:"spec"`
}

// validate holds the API's own rules for the fields above (kubebuilder
// markers and the CEL rule "self.kind != 'Service' || has(self.port)").
func (p *inferencePool) validate() error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf("InferencePool: "+format, a...)) }
	if p.APIVersion != "inference.networking.k8s.io/v1" || p.Kind != "InferencePool" {
		fail("apiVersion %q kind %q, want inference.networking.k8s.io/v1 InferencePool", p.APIVersion, p.Kind)
	}
	if p.Metadata.Name == "" {
		fail("metadata.name is required")
	}
	if len(p.Spec.Selector.MatchLabels) == 0 {
		fail("spec.selector.matchLabels must hold at least one label")
	}
	if len(p.Spec.TargetPorts) == 0 {
		fail("spec.targetPorts must hold a port")
	}
	for i, tp := range p.Spec.TargetPorts {
		if tp.Number < 1 || tp.Number > 65535 {
			fail("spec.targetPorts[%d].number %d is not a port", i, tp.Number)
		}
	}
	ref := p.Spec.EndpointPickerRef
	if ref.Name == "" {
		fail("spec.endpointPickerRef.name is required")
	}
	if ref.Kind == "" || ref.Kind == "Service" {
		if ref.Group != nil && *ref.Group != "" {
			fail("spec.endpointPickerRef.group %q: a Service is in the core group \"\"", *ref.Group)
		}
		if ref.Port == nil {
			fail("spec.endpointPickerRef.port is required when kind is Service")
		}
	}
	if ref.Port != nil && (ref.Port.Number < 1 || ref.Port.Number > 65535) {
		fail("spec.endpointPickerRef.port.number %d is not a port", ref.Port.Number)
	}
	switch ref.FailureMode {
	case "", "FailOpen", "FailClose":
	default:
		fail("spec.endpointPickerRef.failureMode %q, want FailOpen or FailClose", ref.FailureMode)
	}
	return errors.Join(errs...)
}

// manifests is every object of the folder, decoded.
type manifests struct {
	gateway    *gwv1.Gateway
	route      *gwv1.HTTPRoute
	pool       *inferencePool
	deployment *appsv1.Deployment
	service    *corev1.Service
	configMap  *corev1.ConfigMap
	account    *corev1.ServiceAccount
	role       *rbacv1.Role
	binding    *rbacv1.RoleBinding
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decode reads a multi-document stream strictly: each document into the
// API type its apiVersion and kind name, unknown or misspelt fields and
// duplicate keys are errors, and an unexpected kind or a second object of a
// kind is an error.
func decode(stream []byte, m *manifests) error {
	for _, doc := range docSep.Split(string(stream), -1) {
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return err
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := json.Unmarshal(j, &tm); err != nil {
			return err
		}
		var dst any
		switch tm.APIVersion + " " + tm.Kind {
		case "gateway.networking.k8s.io/v1 Gateway":
			dst = setOnce(&m.gateway)
		case "gateway.networking.k8s.io/v1 HTTPRoute":
			dst = setOnce(&m.route)
		case "inference.networking.k8s.io/v1 InferencePool":
			dst = setOnce(&m.pool)
		case "apps/v1 Deployment":
			dst = setOnce(&m.deployment)
		case "v1 Service":
			dst = setOnce(&m.service)
		case "v1 ConfigMap":
			dst = setOnce(&m.configMap)
		case "v1 ServiceAccount":
			dst = setOnce(&m.account)
		case "rbac.authorization.k8s.io/v1 Role":
			dst = setOnce(&m.role)
		case "rbac.authorization.k8s.io/v1 RoleBinding":
			dst = setOnce(&m.binding)
		default:
			return fmt.Errorf("unexpected object %s %s", tm.APIVersion, tm.Kind)
		}
		if dst == nil {
			return fmt.Errorf("a second %s %s", tm.APIVersion, tm.Kind)
		}
		// sigs.k8s.io/json as the API server decodes: field names are
		// case-sensitive (encoding/json would take "gatewayclassname").
		strictErrs, err := kjson.UnmarshalStrict(j, dst)
		if err := errors.Join(append([]error{err}, strictErrs...)...); err != nil {
			return fmt.Errorf("%s: %w", tm.Kind, err)
		}
	}
	return nil
}

// setOnce allocates *p and returns it, or nil if *p is already set.
func setOnce[T any](p **T) *T {
	if *p != nil {
		return nil
	}
	*p = new(T)
	return *p
}

// istioPool is what the mesh path's pool (istio/inferencepool.yaml, v1alpha2)
// says about the vLLM pods: the gateway path must address the same ones.
type istioPool struct {
	Spec struct {
		TargetPortNumber int32             `json:"targetPortNumber"`
		Selector         map[string]string `json:"selector"`
	} `json:"spec"`
}

// check holds the promises the files make to each other.
func check(m *manifests, mesh istioPool, meshRole *rbacv1.Role, serverSource string) error {
	if m.gateway == nil || m.route == nil || m.pool == nil || m.deployment == nil || m.service == nil ||
		m.configMap == nil || m.account == nil || m.role == nil || m.binding == nil {
		return errors.New("want Gateway, HTTPRoute, InferencePool, Deployment, Service, ConfigMap, ServiceAccount, Role and RoleBinding")
	}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := m.pool.validate(); err != nil {
		errs = append(errs, err)
	}

	// One namespace: the pool's endpointPickerRef and the route's refs are
	// local references, and the Role grants only its own namespace.
	ns := m.pool.Metadata.Namespace
	for kind, n := range map[string]string{
		"Gateway": m.gateway.Namespace, "HTTPRoute": m.route.Namespace, "Deployment": m.deployment.Namespace,
		"Service": m.service.Namespace, "ConfigMap": m.configMap.Namespace, "ServiceAccount": m.account.Namespace,
		"Role": m.role.Namespace, "RoleBinding": m.binding.Namespace,
	} {
		if n != ns {
			fail("%s namespace %q differs from the InferencePool's %q", kind, n, ns)
		}
	}

	// HTTPRoute -> Gateway.
	listeners := map[gwv1.SectionName]gwv1.Listener{}
	for _, l := range m.gateway.Spec.Listeners {
		listeners[l.Name] = l
	}
	if len(m.route.Spec.ParentRefs) == 0 {
		fail("HTTPRoute has no parentRefs")
	}
	for i, pr := range m.route.Spec.ParentRefs {
		if g := deref(pr.Group, gwv1.GroupName); g != gwv1.GroupName {
			fail("HTTPRoute parentRefs[%d].group %q, want %s", i, g, gwv1.GroupName)
		}
		if k := deref(pr.Kind, "Gateway"); k != "Gateway" {
			fail("HTTPRoute parentRefs[%d].kind %q, want Gateway", i, k)
		}
		if string(pr.Name) != m.gateway.Name || string(deref(pr.Namespace, gwv1.Namespace(m.route.Namespace))) != m.gateway.Namespace {
			fail("HTTPRoute parentRefs[%d] names Gateway %q, not %s/%s", i, pr.Name, m.gateway.Namespace, m.gateway.Name)
		}
		if pr.SectionName != nil {
			if _, ok := listeners[*pr.SectionName]; !ok {
				fail("HTTPRoute parentRefs[%d].sectionName %q is not a listener of the Gateway", i, *pr.SectionName)
			}
		}
	}
	for _, l := range m.gateway.Spec.Listeners {
		if l.Protocol != gwv1.HTTPProtocolType {
			fail("Gateway listener %q protocol %q, want HTTP (the route is an HTTPRoute)", l.Name, l.Protocol)
		}
	}

	// HTTPRoute -> InferencePool.
	backends := 0
	for i, rule := range m.route.Spec.Rules {
		for j, br := range rule.BackendRefs {
			backends++
			ref := br.BackendObjectReference
			if g := string(deref(ref.Group, "")); g != "inference.networking.k8s.io" {
				fail("HTTPRoute rules[%d].backendRefs[%d].group %q, want inference.networking.k8s.io", i, j, g)
			}
			if k := string(deref(ref.Kind, "Service")); k != "InferencePool" {
				fail("HTTPRoute rules[%d].backendRefs[%d].kind %q, want InferencePool", i, j, k)
			}
			if string(ref.Name) != m.pool.Metadata.Name || string(deref(ref.Namespace, gwv1.Namespace(m.route.Namespace))) != ns {
				fail("HTTPRoute rules[%d].backendRefs[%d] names %q, not the InferencePool %s/%s", i, j, ref.Name, ns, m.pool.Metadata.Name)
			}
		}
	}
	if backends == 0 {
		fail("HTTPRoute has no backendRefs")
	}

	// InferencePool -> the picker's Service and one of its ports.
	ref := m.pool.Spec.EndpointPickerRef
	if ref.Name != m.service.Name {
		fail("InferencePool endpointPickerRef.name %q, want the picker Service %q", ref.Name, m.service.Name)
	}
	pod := m.deployment.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		return errors.Join(append(errs, errors.New("Deployment: want one container"))...)
	}
	c := pod.Spec.Containers[0]
	containerPorts := map[string]int32{}
	for _, p := range c.Ports {
		containerPorts[p.Name] = p.ContainerPort
	}
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	var eppPort *corev1.ServicePort
	for i := range m.service.Spec.Ports {
		if ref.Port != nil && m.service.Spec.Ports[i].Port == ref.Port.Number {
			eppPort = &m.service.Spec.Ports[i]
		}
	}
	if eppPort == nil {
		fail("InferencePool endpointPickerRef.port %v is not a port of Service %s", ref.Port, m.service.Name)
	} else {
		target, ok := resolveTarget(eppPort.TargetPort, containerPorts)
		switch {
		case !ok:
			fail("Service port %d targets %s, not a container port", eppPort.Port, eppPort.TargetPort.String())
		case listenPort(args["--ext-proc-listen"]) != target:
			fail("--ext-proc-listen %q, want :%d (the container port the pool's Service port %d targets)", args["--ext-proc-listen"], target, eppPort.Port)
		}
		// The gateway speaks gRPC (HTTP/2) to this port.
		if eppPort.AppProtocol == nil || *eppPort.AppProtocol != "http2" {
			fail("Service port %d: appProtocol must be http2 (ext_proc is gRPC)", eppPort.Port)
		}
	}
	// The HTTP API (health, metrics, picks) on its own Service port.
	httpTarget := int32(0)
	for _, sp := range m.service.Spec.Ports {
		if t, ok := resolveTarget(sp.TargetPort, containerPorts); ok && t == listenPort(args["--listen"]) {
			httpTarget = t
		}
	}
	if httpTarget == 0 {
		fail("no Service port targets the HTTP listener --listen %q", args["--listen"])
	}
	if listenPort(args["--listen"]) == listenPort(args["--ext-proc-listen"]) {
		fail("--listen and --ext-proc-listen share port %q", args["--listen"])
	}

	// Selectors: Deployment and Service select the picker pods; the pool
	// selects vLLM pods, never the picker.
	for k, v := range m.deployment.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			fail("Deployment selector %s=%s does not select its own pods", k, v)
		}
	}
	if len(m.service.Spec.Selector) == 0 {
		fail("Service has no selector")
	}
	for k, v := range m.service.Spec.Selector {
		if pod.Labels[k] != v {
			fail("Service selector %s=%s does not select the picker pods", k, v)
		}
	}
	if selects(m.pool.Spec.Selector.MatchLabels, pod.Labels) {
		fail("InferencePool selector %v matches the picker's own pods %v", m.pool.Spec.Selector.MatchLabels, pod.Labels)
	}

	// The same vLLM pods as the mesh path.
	if len(m.pool.Spec.TargetPorts) != 1 || m.pool.Spec.TargetPorts[0].Number != mesh.Spec.TargetPortNumber {
		fail("InferencePool targetPorts %v, want [%d] (istio/inferencepool.yaml's vLLM port)", m.pool.Spec.TargetPorts, mesh.Spec.TargetPortNumber)
	}
	if !reflect.DeepEqual(m.pool.Spec.Selector.MatchLabels, mesh.Spec.Selector) {
		fail("InferencePool selector %v, want %v (istio/inferencepool.yaml's)", m.pool.Spec.Selector.MatchLabels, mesh.Spec.Selector)
	}

	// The picker watches this pool, in this API version.
	if args["--discovery"] != "kubernetes" || args["--pool"] != m.pool.Metadata.Name {
		fail("args %v: want --discovery=kubernetes --pool=%s", c.Args, m.pool.Metadata.Name)
	}
	if api, err := configPoolAPI(m, c, args["--config"]); err != nil {
		errs = append(errs, err)
	} else if api != m.pool.APIVersion {
		fail("picker config discovery.poolAPI %q, want %q (the pool's apiVersion)", api, m.pool.APIVersion)
	}
	nsEnv := false
	for _, e := range c.Env {
		nsEnv = nsEnv || (e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace")
	}
	if !nsEnv {
		fail("POD_NAMESPACE must come from metadata.namespace")
	}

	// Probes: routes picker-svc serves, on the HTTP port.
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			fail("%s probe: want httpGet", name)
			continue
		}
		if !strings.Contains(serverSource, `"GET `+p.HTTPGet.Path+`"`) {
			fail("%s probe path %s is not a route of picker-svc's server", name, p.HTTPGet.Path)
		}
		if t, ok := resolveTarget(p.HTTPGet.Port, containerPorts); !ok || t != listenPort(args["--listen"]) {
			fail("%s probe port %s is not the HTTP listener", name, p.HTTPGet.Port.String())
		}
	}

	// RBAC: bound to the pod's ServiceAccount, and the same grants as the
	// mesh path's Role (one list of what the picker reads).
	if pod.Spec.ServiceAccountName != m.account.Name {
		fail("serviceAccountName %q, want %q", pod.Spec.ServiceAccountName, m.account.Name)
	}
	if len(m.binding.Subjects) != 1 || m.binding.Subjects[0].Kind != "ServiceAccount" || m.binding.Subjects[0].Name != m.account.Name ||
		m.binding.RoleRef.Kind != "Role" || m.binding.RoleRef.Name != m.role.Name {
		fail("RoleBinding must bind Role %s to ServiceAccount %s", m.role.Name, m.account.Name)
	}
	if !reflect.DeepEqual(m.role.Rules, meshRole.Rules) {
		fail("Role rules %v differ from istio/picker-rbac.yaml's %v", m.role.Rules, meshRole.Rules)
	}

	sc, psc := c.SecurityContext, pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		fail("want runAsNonRoot, no privilege escalation, read-only root and all capabilities dropped")
	}
	return errors.Join(errs...)
}

// configPoolAPI follows --config to the ConfigMap key mounted there and
// returns its discovery.poolAPI (read leniently here; picker-svc's own
// parser reads the same file strictly in picker-svc/internal/config).
func configPoolAPI(m *manifests, c corev1.Container, path string) (string, error) {
	if path == "" {
		return "", errors.New("no --config: the picker would watch its default pool API, not v1")
	}
	for _, vm := range c.VolumeMounts {
		key, ok := strings.CutPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range m.deployment.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			if v.ConfigMap.Name != m.configMap.Name {
				return "", fmt.Errorf("--config %s is in ConfigMap %q, not %q", path, v.ConfigMap.Name, m.configMap.Name)
			}
			data, ok := m.configMap.Data[key]
			if !ok {
				return "", fmt.Errorf("--config %s: ConfigMap %s has no key %q", path, m.configMap.Name, key)
			}
			var cfg struct {
				Discovery struct {
					PoolAPI string `json:"poolAPI"`
				} `json:"discovery"`
			}
			if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
				return "", fmt.Errorf("ConfigMap %s key %s: %w", m.configMap.Name, key, err)
			}
			return cfg.Discovery.PoolAPI, nil
		}
	}
	return "", fmt.Errorf("--config %s is not in a mounted ConfigMap", path)
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// resolveTarget turns a named or numbered target port into the container
// port it means.
func resolveTarget(p intstr.IntOrString, containerPorts map[string]int32) (int32, bool) {
	if p.Type == intstr.String {
		n, ok := containerPorts[p.StrVal]
		return n, ok
	}
	for _, n := range containerPorts {
		if n == p.IntVal {
			return n, true
		}
	}
	return 0, false
}

// listenPort is the port of a ":port" or "host:port" listen address, 0 if
// there is none.
func listenPort(addr string) int32 {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseUint(addr[i+1:], 10, 16)
	if err != nil {
		return 0
	}
	return int32(n)
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(rel))
	require.NoError(t, err)
	return b
}

// sources returns the folder's files by name, so tests can mutate one.
func sources(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range files {
		out[f] = string(readFile(t, f))
	}
	return out
}

func decodeAll(src map[string]string) (*manifests, error) {
	m := &manifests{}
	for _, f := range files {
		if err := decode([]byte(src[f]), m); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return m, nil
}

type meshInputs struct {
	pool   istioPool
	role   *rbacv1.Role
	server string
}

func loadMesh(t *testing.T) meshInputs {
	t.Helper()
	var in meshInputs
	require.NoError(t, yaml.Unmarshal(readFile(t, "../istio/inferencepool.yaml"), &in.pool))
	require.NotZero(t, in.pool.Spec.TargetPortNumber)
	for _, doc := range docSep.Split(string(readFile(t, "../istio/picker-rbac.yaml")), -1) {
		if strings.Contains(doc, "\nkind: Role\n") {
			in.role = &rbacv1.Role{}
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), in.role))
		}
	}
	require.NotNil(t, in.role, "istio/picker-rbac.yaml has no Role")
	in.server = string(readFile(t, "../picker-svc/internal/server/server.go"))
	return in
}

func TestGatewayManifests(t *testing.T) {
	m, err := decodeAll(sources(t))
	require.NoError(t, err)
	mesh := loadMesh(t)
	require.NoError(t, check(m, mesh.pool, mesh.role, mesh.server))

	// What the docs promise, spelled out.
	c := m.deployment.Spec.Template.Spec.Containers[0]
	require.Contains(t, c.Args, "--ext-proc-listen=:9004")
	require.Contains(t, c.Args, "--listen=:9002")
	require.Equal(t, int32(9002), m.pool.Spec.EndpointPickerRef.Port.Number)
	require.Equal(t, "FailClose", m.pool.Spec.EndpointPickerRef.FailureMode)
	require.Equal(t, "DEFAULT", m.pool.Metadata.Annotations["inference.networking.x-k8s.io/routing-strategy"])
}

func TestGatewayManifestsReject(t *testing.T) {
	mesh := loadMesh(t)
	for _, tc := range []struct{ name, file, old, new, want string }{
		{"unknown Gateway field", "gateway.yaml", "  gatewayClassName: istio", "  gatewayClass: istio", "gatewayClass"},
		{"field name in the wrong case", "gateway.yaml", "  gatewayClassName: istio", "  gatewayclassname: istio", "gatewayclassname"},
		{"unknown HTTPRoute field", "gateway.yaml", "backendRefs:", "backendRef:", "backendRef"},
		{"wrong type", "gateway.yaml", "port: 80", "port: eighty", "port"},
		{"duplicate key", "gateway.yaml", "  name: llm-route\n", "  name: llm-route\n  name: other\n", "name"},
		{"route parent is another gateway", "gateway.yaml", "    name: inference-gateway\n    sectionName", "    name: other-gateway\n    sectionName", "parentRefs[0]"},
		{"route parent listener missing", "gateway.yaml", "sectionName: http", "sectionName: https", "sectionName"},
		{"backend is a Service", "gateway.yaml", "kind: InferencePool", "kind: Service", "kind"},
		{"backend is the alpha group", "gateway.yaml", "- group: inference.networking.k8s.io", "- group: inference.networking.x-k8s.io", "group"},
		{"backend is another pool", "gateway.yaml", "      name: vllm-llama2-7b-pool", "      name: other-pool", "backendRefs[0]"},
		{"pool: pre-release portNumber", "inferencepool.yaml", "port:\n      number: 9002", "portNumber: 9002", "portNumber"},
		{"pool: alpha field", "inferencepool.yaml", "  targetPorts:\n  - number: 8000", "  targetPortNumber: 8000", "targetPortNumber"},
		{"pool: picker port not on the Service", "inferencepool.yaml", "number: 9002", "number: 9004", "not a port of Service"},
		{"pool: other picker", "inferencepool.yaml", "name: picker-epp", "name: picker-svc", "endpointPickerRef.name"},
		{"pool: bad failure mode", "inferencepool.yaml", "failureMode: FailClose", "failureMode: Open", "failureMode"},
		{"pool: other vLLM port", "inferencepool.yaml", "- number: 8000", "- number: 8080", "targetPorts"},
		{"pool selects the picker", "inferencepool.yaml", "      app: vllm-llama2-7b-pool", "      app: picker-epp", "matches the picker"},
		{"ext_proc flag port differs", "picker-epp.yaml", "- --ext-proc-listen=:9004", "- --ext-proc-listen=:9005", "--ext-proc-listen"},
		{"ext_proc flag missing", "picker-epp.yaml", "        - --ext-proc-listen=:9004\n", "", "--ext-proc-listen"},
		{"Service targets the HTTP port", "picker-epp.yaml", "targetPort: ext-proc", "targetPort: http", "--ext-proc-listen"},
		{"Service targets no container port", "picker-epp.yaml", "targetPort: ext-proc", "targetPort: grpc", "not a container port"},
		{"ext_proc port not HTTP/2", "picker-epp.yaml", "appProtocol: http2", "appProtocol: http", "appProtocol"},
		{"no HTTP Service port", "picker-epp.yaml", "    targetPort: http\n", "    targetPort: ext-proc\n", "HTTP listener"},
		{"picker watches the alpha API", "picker-epp.yaml", "poolAPI: inference.networking.k8s.io/v1", "poolAPI: inference.networking.x-k8s.io/v1alpha2", "poolAPI"},
		{"config not mounted", "picker-epp.yaml", "--config=/etc/picker/config.yaml", "--config=/etc/other/config.yaml", "not in a mounted ConfigMap"},
		{"other pool", "picker-epp.yaml", "--pool=vllm-llama2-7b-pool", "--pool=other", "--pool"},
		{"probe path not served", "picker-epp.yaml", "path: /readyz", "path: /ready", "/ready"},
		{"probe on the ext_proc port", "picker-epp.yaml", "path: /healthz\n            port: http", "path: /healthz\n            port: ext-proc", "liveness probe port"},
		{"Service selects nothing", "picker-epp.yaml", "  selector:\n    app: picker-epp\n  ports:", "  selector:\n    app: picker\n  ports:", "Service selector"},
		{"privilege escalation", "picker-epp.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "privilege"},
		{"Role drifts from the mesh path's", "picker-rbac.yaml", `resources: ["pods"]`, `resources: ["pods", "services"]`, "istio/picker-rbac.yaml"},
		{"binding to another account", "picker-rbac.yaml", "- kind: ServiceAccount\n  name: picker-epp", "- kind: ServiceAccount\n  name: default", "RoleBinding"},
		{"other namespace", "picker-rbac.yaml", "kind: Role\nmetadata:\n  name: picker-epp\n  namespace: default", "kind: Role\nmetadata:\n  name: picker-epp\n  namespace: llm", "namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := sources(t)
			require.Contains(t, src[tc.file], tc.old, "mutation target missing")
			src[tc.file] = strings.Replace(src[tc.file], tc.old, tc.new, 1)
			m, err := decodeAll(src)
			if err == nil {
				err = check(m, mesh.pool, mesh.role, mesh.server)
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// A pool without endpointPickerRef.port is refused for a Service (the v1
// API's CEL rule), whatever the kind is spelled as.
func TestInferencePoolPortRequiredForService(t *testing.T) {
	src := sources(t)
	for _, kind := range []string{"    kind: Service\n", ""} {
		s := strings.Replace(src["inferencepool.yaml"], "    kind: Service\n", kind, 1)
		s = strings.Replace(s, "    port:\n      number: 9002\n", "", 1)
		m := &manifests{}
		require.NoError(t, decode([]byte(s), m))
		require.ErrorContains(t, m.pool.validate(), "port is required")
	}
}
