package deploycheck

// The checks of the mesh path's Istio objects (WasmPlugin, EnvoyFilters):
// used on the static files in istio/ and on the Helm chart's renderings.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	wasmhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlymutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	overridehostv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	wasmpluginv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	istioext "istio.io/api/extensions/v1alpha1"
	istionet "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/pickapi"
)

// PluginConfigOf parses the Wasm filter's configuration (a StringValue of
// JSON) with the filter's own parser.
func PluginConfigOf(w *wasmhttpv3.Wasm) (config.Config, error) {
	s := &wrapperspb.StringValue{}
	if err := w.GetConfig().GetConfiguration().UnmarshalTo(s); err != nil {
		return config.Config{}, fmt.Errorf("configuration: %w", err)
	}
	return config.Parse([]byte(s.GetValue()))
}

// CheckEarlyStrip: the HCM removes a client's x-gateway-destination-endpoint
// in its early header mutations, which run before routing and before any
// HTTP filter, so the removal does not depend on the Wasm filter running.
func CheckEarlyStrip(h *hcmv3.HttpConnectionManager) error {
	for _, ext := range h.GetEarlyHeaderMutationExtensions() {
		hm := &earlymutationv3.HeaderMutation{}
		if ext.GetTypedConfig().UnmarshalTo(hm) != nil {
			continue
		}
		for _, m := range hm.GetMutations() {
			if strings.EqualFold(m.GetRemove(), pickapi.HeaderDestinationEndpoint) {
				return nil
			}
		}
	}
	return fmt.Errorf("early_header_mutation_extensions must remove %s (header_mutation, remove)", pickapi.HeaderDestinationEndpoint)
}

// CheckFailurePolicy: the plugin states its failure policy (the one
// docs/deploy.md gives the reason for) and does not also set the deprecated
// fail_open, which Envoy refuses together with failure_policy ("only one of
// fail_open or failure_policy can be set", PluginConfig in
// source/extensions/common/wasm/wasm.cc).
func CheckFailurePolicy(pc *wasmpluginv3.PluginConfig, want wasmpluginv3.FailurePolicy) error {
	var errs []error
	if pc.GetFailOpen() {
		errs = append(errs, errors.New("fail_open is set: Envoy rejects it together with failure_policy, and istio-agent reads failure_policy (Istio >= 1.26)"))
	}
	if got := pc.GetFailurePolicy(); got != want {
		errs = append(errs, fmt.Errorf("failure_policy %s, want %s (docs/deploy.md, When the filter fails)", got, want))
	}
	return errors.Join(errs...)
}

// PickerCluster is Istio's name for the picker Service's cluster
// (outbound|<port>||<fqdn>) and the Service's FQDN, the authority of a pick.
func PickerCluster(svc *corev1.Service) (cluster, authority string, err error) {
	if len(svc.Spec.Ports) != 1 {
		return "", "", fmt.Errorf("Service %s: want one port (the pick API), got %d", svc.Name, len(svc.Spec.Ports))
	}
	fqdn := fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, svc.Namespace)
	return fmt.Sprintf("outbound|%d||%s", svc.Spec.Ports[0].Port, fqdn), fqdn, nil
}

// CheckPickerSettings: the routing keys shared by both Istio ways.
func CheckPickerSettings(cfg config.Config, cluster, authority, pool string) error {
	var errs []error
	if cfg.PickerCluster != cluster {
		errs = append(errs, fmt.Errorf("picker_cluster %q, want %q (Istio's name for the picker Service)", cfg.PickerCluster, cluster))
	}
	if cfg.PickerAuthority != authority {
		errs = append(errs, fmt.Errorf("picker_authority %q, want %q", cfg.PickerAuthority, authority))
	}
	if cfg.PickerPath != pickapi.Path {
		errs = append(errs, fmt.Errorf("picker_path %q, want %q", cfg.PickerPath, pickapi.Path))
	}
	if cfg.Pool != pool {
		errs = append(errs, fmt.Errorf("pool %q, want %q", cfg.Pool, pool))
	}
	if cfg.FailClosed {
		errs = append(errs, errors.New("failure_mode closed: the samples fail open"))
	}
	return errors.Join(errs...)
}

func CheckWasmPlugin(doc []byte, cluster, authority, pool string) (*istioext.WasmPlugin, error) {
	_, w, err := WasmPlugin(doc)
	if err != nil {
		return nil, err
	}
	var errs []error
	if !strings.HasPrefix(w.GetUrl(), "oci://") {
		errs = append(errs, fmt.Errorf("url %q: want oci:// (the meshllm-wasm image make images builds)", w.GetUrl()))
	}
	if w.GetFailStrategy() != istioext.FailStrategy_FAIL_OPEN {
		errs = append(errs, fmt.Errorf("failStrategy %s, want FAIL_OPEN", w.GetFailStrategy()))
	}
	j, err := StructJSON(w.GetPluginConfig())
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(j)
	if err != nil {
		return nil, fmt.Errorf("pluginConfig: %w", err)
	}
	if cfg.RouteOn != config.RouteHeaders {
		errs = append(errs, fmt.Errorf("route_on %q: a WasmPlugin cannot set allow_on_headers_stop_iteration, want headers", cfg.RouteOn))
	}
	if err := CheckPickerSettings(cfg, cluster, authority, pool); err != nil {
		errs = append(errs, err)
	}
	return w, errors.Join(errs...)
}

func CheckEnvoyFilter(doc []byte, cluster, authority, pool, wasmURL string, port uint32) error {
	_, f, err := EnvoyFilter(doc)
	if err != nil {
		return err
	}
	var errs []error
	var ext *corev3.TypedExtensionConfig
	var httpFilter *hcmv3.HttpFilter
	var listener *listenerv3.Listener
	for _, p := range f.GetConfigPatches() {
		m, err := PatchValue(p)
		if err != nil {
			return err
		}
		switch v := m.(type) {
		case *corev3.TypedExtensionConfig:
			ext = v
		case *hcmv3.HttpFilter:
			httpFilter = v
			if p.GetMatch().GetListener().GetPortNumber() != port || p.GetPatch().GetOperation() != istionet.EnvoyFilter_Patch_INSERT_BEFORE ||
				p.GetMatch().GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName() != "envoy.filters.http.router" {
				errs = append(errs, fmt.Errorf("HTTP_FILTER: want INSERT_BEFORE the router on port %d", port))
			}
		case *listenerv3.Listener:
			listener = v
			if p.GetMatch().GetListener().GetPortNumber() != port {
				errs = append(errs, fmt.Errorf("LISTENER: want the buffer limit on port %d, the filter's", port))
			}
		}
	}
	if ext == nil || httpFilter == nil || listener == nil {
		return errors.New("want EXTENSION_CONFIG, HTTP_FILTER and LISTENER patches")
	}
	w := &wasmhttpv3.Wasm{}
	if err := ext.GetTypedConfig().UnmarshalTo(w); err != nil {
		return fmt.Errorf("EXTENSION_CONFIG: %w", err)
	}
	cd := httpFilter.GetConfigDiscovery()
	if httpFilter.GetName() != ext.GetName() || cd == nil || !slices.Equal(cd.GetTypeUrls(), []string{"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"}) {
		errs = append(errs, fmt.Errorf("HTTP_FILTER %q must load extension config %q over ECDS as a Wasm filter", httpFilter.GetName(), ext.GetName()))
	}
	pc := w.GetConfig()
	if err := CheckFailurePolicy(pc, wasmpluginv3.FailurePolicy_FAIL_OPEN); err != nil {
		errs = append(errs, err)
	}
	if !pc.GetAllowOnHeadersStopIteration().GetValue() {
		errs = append(errs, errors.New("allow_on_headers_stop_iteration must be true: it is why this EnvoyFilter exists"))
	}
	if u := pc.GetVmConfig().GetCode().GetRemote().GetHttpUri().GetUri(); u != wasmURL {
		errs = append(errs, fmt.Errorf("module %q, want the WasmPlugin's %q", u, wasmURL))
	}
	cfg, err := PluginConfigOf(w)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if cfg.RouteOn != config.RouteBody {
		errs = append(errs, fmt.Errorf("route_on %q, want body", cfg.RouteOn))
	}
	if err := CheckPickerSettings(cfg, cluster, authority, pool); err != nil {
		errs = append(errs, err)
	}
	if lim := listener.GetPerConnectionBufferLimitBytes().GetValue(); int(lim) <= cfg.MaxRequestBodyBytes {
		errs = append(errs, fmt.Errorf("per_connection_buffer_limit_bytes %d must exceed max_request_body_bytes %d", lim, cfg.MaxRequestBodyBytes))
	}
	return errors.Join(errs...)
}

// CheckPoolCluster: istio/envoyfilter-pool-cluster.yaml gives the pool's
// cluster override_host on the filter's header, and strips a client's copy
// of that header on every HTTP listener of the gateway (CheckGatewayStrip).
func CheckPoolCluster(doc []byte, poolSvc string, port int) error {
	_, f, err := EnvoyFilter(doc)
	if err != nil {
		return err
	}
	var cluster, strip []*istionet.EnvoyFilter_EnvoyConfigObjectPatch
	for _, p := range f.GetConfigPatches() {
		switch p.GetApplyTo() {
		case istionet.EnvoyFilter_CLUSTER:
			cluster = append(cluster, p)
		case istionet.EnvoyFilter_NETWORK_FILTER:
			strip = append(strip, p)
		default:
			return fmt.Errorf("unexpected %s patch", p.GetApplyTo())
		}
	}
	if len(cluster) != 1 || len(strip) != 1 {
		return errors.New("want one CLUSTER patch (override_host) and one NETWORK_FILTER patch (the header strip)")
	}
	if err := CheckGatewayStrip(strip[0]); err != nil {
		return fmt.Errorf("NETWORK_FILTER: %w", err)
	}
	p := cluster[0]
	if got := p.GetMatch().GetCluster(); got.GetService() != poolSvc || int(got.GetPortNumber()) != port {
		return fmt.Errorf("cluster match %s:%d, want %s:%d (the pool's Service and targetPortNumber)", got.GetService(), got.GetPortNumber(), poolSvc, port)
	}
	m, err := PatchValue(p)
	if err != nil {
		return err
	}
	pols := m.(*clusterv3.Cluster).GetLoadBalancingPolicy().GetPolicies()
	oh := &overridehostv3.OverrideHost{}
	if len(pols) != 1 || pols[0].GetTypedExtensionConfig().GetTypedConfig().UnmarshalTo(oh) != nil {
		return errors.New("want one override_host load_balancing_policy")
	}
	if len(oh.GetOverrideHostSources()) != 1 || oh.GetOverrideHostSources()[0].GetHeader() != pickapi.HeaderDestinationEndpoint {
		return fmt.Errorf("override_host must read header %s", pickapi.HeaderDestinationEndpoint)
	}
	return nil
}

// CheckGatewayStrip: a MERGE into every gateway HTTP connection manager
// (no port, so also listeners that route to the pool without the filter)
// whose early header mutations remove the destination header.
func CheckGatewayStrip(p *istionet.EnvoyFilter_EnvoyConfigObjectPatch) error {
	m := p.GetMatch()
	if m.GetContext() != istionet.EnvoyFilter_GATEWAY || p.GetPatch().GetOperation() != istionet.EnvoyFilter_Patch_MERGE {
		return errors.New("want a MERGE in context GATEWAY")
	}
	l := m.GetListener()
	if l.GetPortNumber() != 0 || l.GetName() != "" || l.GetFilterChain().GetFilter().GetSubFilter() != nil ||
		l.GetFilterChain().GetFilter().GetName() != "envoy.filters.network.http_connection_manager" {
		return errors.New("want every gateway listener's envoy.filters.network.http_connection_manager (no port or name)")
	}
	v, err := PatchValue(p)
	if err != nil {
		return err
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := v.(*listenerv3.Filter).GetTypedConfig().UnmarshalTo(h); err != nil {
		return fmt.Errorf("typed_config: %w", err)
	}
	return CheckEarlyStrip(h)
}

// MeshInferencePoolSpec is the v1alpha2 InferencePool of the mesh path as
// picker-svc reads it.
type MeshInferencePoolSpec struct {
	TargetPortNumber int               `json:"targetPortNumber"`
	Selector         map[string]string `json:"selector"`
	ExtensionRef     struct {
		Name string `json:"name"`
	} `json:"extensionRef"`
}

// MeshInferencePool decodes an inference.networking.x-k8s.io/v1alpha2
// InferencePool strictly (picker-svc's own parser, internal to it, reads the
// static file in its tests).
func MeshInferencePool(doc []byte) (Object, MeshInferencePoolSpec, error) {
	var o Object
	var spec MeshInferencePoolSpec
	j, err := YAMLToJSON(doc)
	if err != nil {
		return o, spec, err
	}
	if err := StrictJSON(j, &o); err != nil {
		return o, spec, fmt.Errorf("InferencePool: %w", err)
	}
	if o.APIVersion != "inference.networking.x-k8s.io/v1alpha2" || o.Kind != "InferencePool" {
		return o, spec, fmt.Errorf("want inference.networking.x-k8s.io/v1alpha2 InferencePool, got %s %s", o.APIVersion, o.Kind)
	}
	if err := StrictJSON(o.Spec, &spec); err != nil {
		return o, spec, fmt.Errorf("InferencePool %q: spec: %w", o.Metadata.Name, err)
	}
	if o.Metadata.Name == "" || spec.TargetPortNumber < 1 || spec.TargetPortNumber > 65535 || len(spec.Selector) == 0 || spec.ExtensionRef.Name == "" {
		return o, spec, fmt.Errorf("InferencePool %q: want a name, a target port, a selector and an extensionRef", o.Metadata.Name)
	}
	return o, spec, nil
}
