package deploycheck

// The checks of the gateway path's objects (Gateway, HTTPRoute, InferencePool
// v1, the endpoint picker's Deployment, Service, ConfigMap and RBAC): used on
// the static files in gateway/ and on the Helm chart's renderings.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
)

// InferencePoolV1 is InferencePool inference.networking.k8s.io/v1 as
// kubernetes-sigs/gateway-api-inference-extension api/v1/inferencepool_types.go
// defines it (spec only; status is the controller's). A local type because
// picker-svc/internal/inference is internal to picker-svc and reads the pool
// leniently (of endpointPickerRef only the name); decoded strictly, so a
// field the v1 API does not have (e.g. the pre-release portNumber) fails.
type InferencePoolV1 struct {
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

// Validate holds the API's own rules for the fields above (kubebuilder
// markers and the CEL rule "self.kind != 'Service' || has(self.port)").
func (p *InferencePoolV1) Validate() error {
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

// GatewayPath is every object of the folder, decoded.
type GatewayPath struct {
	Gateway    *gwv1.Gateway
	Route      *gwv1.HTTPRoute
	Pool       *InferencePoolV1
	Deployment *appsv1.Deployment
	Service    *corev1.Service
	ConfigMap  *corev1.ConfigMap
	Account    *corev1.ServiceAccount
	Role       *rbacv1.Role
	Binding    *rbacv1.RoleBinding
	// The picker replicas' headless gossip Service and disruption budget.
	Gossip *corev1.Service
	PDB    *policyv1.PodDisruptionBudget
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// DecodeGatewayPath reads a multi-document stream strictly: each document into the
// API type its apiVersion and kind name, unknown or misspelt fields and
// duplicate keys are errors, and an unexpected kind or a second object of a
// kind is an error.
func DecodeGatewayPath(stream []byte, m *GatewayPath) error {
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
			Spec       struct {
				ClusterIP string `json:"clusterIP"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(j, &tm); err != nil {
			return err
		}
		var dst any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Service":
			if tm.Spec.ClusterIP == corev1.ClusterIPNone {
				dst = setOnce(&m.Gossip)
			} else {
				dst = setOnce(&m.Service)
			}
		case "policy/v1 PodDisruptionBudget":
			dst = setOnce(&m.PDB)
		case "gateway.networking.k8s.io/v1 Gateway":
			dst = setOnce(&m.Gateway)
		case "gateway.networking.k8s.io/v1 HTTPRoute":
			dst = setOnce(&m.Route)
		case "inference.networking.k8s.io/v1 InferencePool":
			dst = setOnce(&m.Pool)
		case "apps/v1 Deployment":
			dst = setOnce(&m.Deployment)
		case "v1 ConfigMap":
			dst = setOnce(&m.ConfigMap)
		case "v1 ServiceAccount":
			dst = setOnce(&m.Account)
		case "rbac.authorization.k8s.io/v1 Role":
			dst = setOnce(&m.Role)
		case "rbac.authorization.k8s.io/v1 RoleBinding":
			dst = setOnce(&m.Binding)
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

// MeshPool is what the mesh path's pool (istio/inferencepool.yaml, v1alpha2)
// says about the vLLM pods: the gateway path must address the same ones.
type MeshPool struct {
	Spec struct {
		TargetPortNumber int32             `json:"targetPortNumber"`
		Selector         map[string]string `json:"selector"`
	} `json:"spec"`
}

// CheckGatewayPath holds the promises the objects make to each other.
func CheckGatewayPath(m *GatewayPath, mesh MeshPool, meshRole *rbacv1.Role, serverSource string) error {
	if m.Gateway == nil || m.Route == nil || m.Pool == nil || m.Deployment == nil || m.Service == nil ||
		m.ConfigMap == nil || m.Account == nil || m.Role == nil || m.Binding == nil {
		return errors.New("want Gateway, HTTPRoute, InferencePool, Deployment, Service, ConfigMap, ServiceAccount, Role and RoleBinding")
	}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := m.Pool.Validate(); err != nil {
		errs = append(errs, err)
	}

	// One namespace: the pool's endpointPickerRef and the route's refs are
	// local references, and the Role grants only its own namespace.
	ns := m.Pool.Metadata.Namespace
	for kind, n := range map[string]string{
		"Gateway": m.Gateway.Namespace, "HTTPRoute": m.Route.Namespace, "Deployment": m.Deployment.Namespace,
		"Service": m.Service.Namespace, "ConfigMap": m.ConfigMap.Namespace, "ServiceAccount": m.Account.Namespace,
		"Role": m.Role.Namespace, "RoleBinding": m.Binding.Namespace,
	} {
		if n != ns {
			fail("%s namespace %q differs from the InferencePool's %q", kind, n, ns)
		}
	}

	// HTTPRoute -> Gateway.
	listeners := map[gwv1.SectionName]gwv1.Listener{}
	for _, l := range m.Gateway.Spec.Listeners {
		listeners[l.Name] = l
	}
	if len(m.Route.Spec.ParentRefs) == 0 {
		fail("HTTPRoute has no parentRefs")
	}
	for i, pr := range m.Route.Spec.ParentRefs {
		if g := deref(pr.Group, gwv1.GroupName); g != gwv1.GroupName {
			fail("HTTPRoute parentRefs[%d].group %q, want %s", i, g, gwv1.GroupName)
		}
		if k := deref(pr.Kind, "Gateway"); k != "Gateway" {
			fail("HTTPRoute parentRefs[%d].kind %q, want Gateway", i, k)
		}
		if string(pr.Name) != m.Gateway.Name || string(deref(pr.Namespace, gwv1.Namespace(m.Route.Namespace))) != m.Gateway.Namespace {
			fail("HTTPRoute parentRefs[%d] names Gateway %q, not %s/%s", i, pr.Name, m.Gateway.Namespace, m.Gateway.Name)
		}
		if pr.SectionName != nil {
			if _, ok := listeners[*pr.SectionName]; !ok {
				fail("HTTPRoute parentRefs[%d].sectionName %q is not a listener of the Gateway", i, *pr.SectionName)
			}
		}
	}
	for _, l := range m.Gateway.Spec.Listeners {
		if l.Protocol != gwv1.HTTPProtocolType {
			fail("Gateway listener %q protocol %q, want HTTP (the route is an HTTPRoute)", l.Name, l.Protocol)
		}
	}

	// HTTPRoute -> InferencePool.
	backends := 0
	for i, rule := range m.Route.Spec.Rules {
		for j, br := range rule.BackendRefs {
			backends++
			ref := br.BackendObjectReference
			if g := string(deref(ref.Group, "")); g != "inference.networking.k8s.io" {
				fail("HTTPRoute rules[%d].backendRefs[%d].group %q, want inference.networking.k8s.io", i, j, g)
			}
			if k := string(deref(ref.Kind, "Service")); k != "InferencePool" {
				fail("HTTPRoute rules[%d].backendRefs[%d].kind %q, want InferencePool", i, j, k)
			}
			if string(ref.Name) != m.Pool.Metadata.Name || string(deref(ref.Namespace, gwv1.Namespace(m.Route.Namespace))) != ns {
				fail("HTTPRoute rules[%d].backendRefs[%d] names %q, not the InferencePool %s/%s", i, j, ref.Name, ns, m.Pool.Metadata.Name)
			}
		}
	}
	if backends == 0 {
		fail("HTTPRoute has no backendRefs")
	}

	// InferencePool -> the picker's Service and one of its ports.
	ref := m.Pool.Spec.EndpointPickerRef
	if ref.Name != m.Service.Name {
		fail("InferencePool endpointPickerRef.name %q, want the picker Service %q", ref.Name, m.Service.Name)
	}
	pod := m.Deployment.Spec.Template
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
	for i := range m.Service.Spec.Ports {
		if ref.Port != nil && m.Service.Spec.Ports[i].Port == ref.Port.Number {
			eppPort = &m.Service.Spec.Ports[i]
		}
	}
	if eppPort == nil {
		fail("InferencePool endpointPickerRef.port %v is not a port of Service %s", ref.Port, m.Service.Name)
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
	for _, sp := range m.Service.Spec.Ports {
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
	for k, v := range m.Deployment.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			fail("Deployment selector %s=%s does not select its own pods", k, v)
		}
	}
	if len(m.Service.Spec.Selector) == 0 {
		fail("Service has no selector")
	}
	for k, v := range m.Service.Spec.Selector {
		if pod.Labels[k] != v {
			fail("Service selector %s=%s does not select the picker pods", k, v)
		}
	}
	if selects(m.Pool.Spec.Selector.MatchLabels, pod.Labels) {
		fail("InferencePool selector %v matches the picker's own pods %v", m.Pool.Spec.Selector.MatchLabels, pod.Labels)
	}

	// The same vLLM pods as the mesh path.
	if len(m.Pool.Spec.TargetPorts) != 1 || m.Pool.Spec.TargetPorts[0].Number != mesh.Spec.TargetPortNumber {
		fail("InferencePool targetPorts %v, want [%d] (istio/inferencepool.yaml's vLLM port)", m.Pool.Spec.TargetPorts, mesh.Spec.TargetPortNumber)
	}
	if !reflect.DeepEqual(m.Pool.Spec.Selector.MatchLabels, mesh.Spec.Selector) {
		fail("InferencePool selector %v, want %v (istio/inferencepool.yaml's)", m.Pool.Spec.Selector.MatchLabels, mesh.Spec.Selector)
	}

	// The picker watches this pool, in this API version.
	if args["--discovery"] != "kubernetes" || args["--pool"] != m.Pool.Metadata.Name {
		fail("args %v: want --discovery=kubernetes --pool=%s", c.Args, m.Pool.Metadata.Name)
	}
	if api, err := configPoolAPI(m, c, args["--config"]); err != nil {
		errs = append(errs, err)
	} else if api != m.Pool.APIVersion {
		fail("picker config discovery.poolAPI %q, want %q (the pool's apiVersion)", api, m.Pool.APIVersion)
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
	if pod.Spec.ServiceAccountName != m.Account.Name {
		fail("serviceAccountName %q, want %q", pod.Spec.ServiceAccountName, m.Account.Name)
	}
	if len(m.Binding.Subjects) != 1 || m.Binding.Subjects[0].Kind != "ServiceAccount" || m.Binding.Subjects[0].Name != m.Account.Name ||
		m.Binding.RoleRef.Kind != "Role" || m.Binding.RoleRef.Name != m.Role.Name {
		fail("RoleBinding must bind Role %s to ServiceAccount %s", m.Role.Name, m.Account.Name)
	}
	if !reflect.DeepEqual(m.Role.Rules, meshRole.Rules) {
		fail("Role rules %v differ from istio/picker-rbac.yaml's %v", m.Role.Rules, meshRole.Rules)
	}

	sc, psc := c.SecurityContext, pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		fail("want runAsNonRoot, no privilege escalation, read-only root and all capabilities dropped")
	}
	if err := checkReplicasIfAny(m.Deployment, m.Gossip, m.PDB); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// configPoolAPI follows --config to the ConfigMap key mounted there and
// returns its discovery.poolAPI (read leniently here; picker-svc's own
// parser reads the same file strictly in picker-svc/internal/config).
func configPoolAPI(m *GatewayPath, c corev1.Container, path string) (string, error) {
	if path == "" {
		return "", errors.New("no --config: the picker would watch its default pool API, not v1")
	}
	for _, vm := range c.VolumeMounts {
		key, ok := strings.CutPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range m.Deployment.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			if v.ConfigMap.Name != m.ConfigMap.Name {
				return "", fmt.Errorf("--config %s is in ConfigMap %q, not %q", path, v.ConfigMap.Name, m.ConfigMap.Name)
			}
			data, ok := m.ConfigMap.Data[key]
			if !ok {
				return "", fmt.Errorf("--config %s: ConfigMap %s has no key %q", path, m.ConfigMap.Name, key)
			}
			var cfg struct {
				Discovery struct {
					PoolAPI string `json:"poolAPI"`
				} `json:"discovery"`
			}
			if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
				return "", fmt.Errorf("ConfigMap %s key %s: %w", m.ConfigMap.Name, key, err)
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
