package deploycheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	wasmhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	overridehostv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	wasmpluginv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/stretchr/testify/require"
	istioext "istio.io/api/extensions/v1alpha1"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istionet "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/internal/testsupport/envoystats"
	"github.com/meshllm/meshllm/pickapi"
)

// samplePool returns the envelope of istio/inferencepool.yaml (its content is
// checked by the picker's own parser in picker-svc/internal/inference).
func samplePool(t *testing.T) (name, namespace string, port int) {
	t.Helper()
	j, err := YAMLToJSON(read(t, "istio/inferencepool.yaml"))
	require.NoError(t, err)
	var o Object
	require.NoError(t, StrictJSON(j, &o))
	require.Equal(t, "InferencePool", o.Kind)
	var spec struct {
		TargetPortNumber int               `json:"targetPortNumber"`
		Selector         map[string]string `json:"selector"`
		ExtensionRef     struct {
			Name string `json:"name"`
		} `json:"extensionRef"`
	}
	require.NoError(t, StrictJSON(o.Spec, &spec))
	return o.Metadata.Name, o.Metadata.Namespace, spec.TargetPortNumber
}

func samplePoolName(t *testing.T) string {
	n, _, _ := samplePool(t)
	return n
}

// pickerCluster is Istio's name for the picker Service's cluster, from the
// Service in istio/picker-deployment.yaml.
func pickerCluster(t *testing.T) (cluster, authority string) {
	t.Helper()
	svc := pickerService(t)
	fqdn := fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, svc.Namespace)
	return fmt.Sprintf("outbound|%d||%s", svc.Spec.Ports[0].Port, fqdn), fqdn
}

func pickerService(t *testing.T) *corev1.Service {
	t.Helper()
	for _, o := range k8sObjects(t, "istio/picker-deployment.yaml") {
		if s, ok := o.(*corev1.Service); ok {
			require.Len(t, s.Spec.Ports, 1)
			return s
		}
	}
	t.Fatal("no Service in istio/picker-deployment.yaml")
	return nil
}

// checkPickerSettings: the routing keys shared by both Istio ways.
func checkPickerSettings(cfg config.Config, cluster, authority, pool string) error {
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

func checkWasmPlugin(doc []byte, cluster, authority, pool string) (*istioext.WasmPlugin, error) {
	_, w, err := WasmPlugin(doc)
	if err != nil {
		return nil, err
	}
	var errs []error
	if !strings.HasPrefix(w.GetUrl(), "oci://") {
		errs = append(errs, fmt.Errorf("url %q: want oci:// (wasm/Dockerfile's image)", w.GetUrl()))
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
	if err := checkPickerSettings(cfg, cluster, authority, pool); err != nil {
		errs = append(errs, err)
	}
	return w, errors.Join(errs...)
}

func TestWasmPlugin(t *testing.T) {
	cluster, authority := pickerCluster(t)
	w, err := checkWasmPlugin(read(t, "istio/wasmplugin.yaml"), cluster, authority, samplePoolName(t))
	require.NoError(t, err)
	require.Equal(t, []uint32{8081}, []uint32{w.GetMatch()[0].GetPorts()[0].GetNumber()})
}

func TestWasmPluginRejects(t *testing.T) {
	src := string(read(t, "istio/wasmplugin.yaml"))
	cluster, authority := pickerCluster(t)
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown spec field", "failStrategy: FAIL_OPEN", "failStrategy: FAIL_OPEN\n  allowOnHeadersStopIteration: true", "allowOnHeadersStopIteration"},
		{"bad enum", "failStrategy: FAIL_OPEN", "failStrategy: FAIL_SOMETIMES", "FAIL_SOMETIMES"},
		{"metadata typo", "namespace: istio-system", "namspace: istio-system", "namspace"},
		{"pluginConfig key the filter does not know", "route_on: headers", "route_onn: headers", "route_onn"},
		{"body mode without the flag", "route_on: headers", "route_on: body", "allow_on_headers_stop_iteration"},
		{"picker cluster in Envoy's plain form", "picker_cluster: outbound|9002||picker-svc.default.svc.cluster.local", "picker_cluster: picker", "picker_cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkWasmPlugin(mutate(t, src, tc.old, tc.new), cluster, authority, samplePoolName(t))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func checkEnvoyFilter(doc []byte, cluster, authority, pool, wasmURL string) error {
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
			if p.GetMatch().GetListener().GetPortNumber() != 8081 || p.GetPatch().GetOperation() != istionet.EnvoyFilter_Patch_INSERT_BEFORE ||
				p.GetMatch().GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName() != "envoy.filters.http.router" {
				errs = append(errs, errors.New("HTTP_FILTER: want INSERT_BEFORE the router on port 8081"))
			}
		case *listenerv3.Listener:
			listener = v
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
	if err := checkFailurePolicy(pc, wasmpluginv3.FailurePolicy_FAIL_OPEN); err != nil {
		errs = append(errs, err)
	}
	if !pc.GetAllowOnHeadersStopIteration().GetValue() {
		errs = append(errs, errors.New("allow_on_headers_stop_iteration must be true: it is why this EnvoyFilter exists"))
	}
	if u := pc.GetVmConfig().GetCode().GetRemote().GetHttpUri().GetUri(); u != wasmURL {
		errs = append(errs, fmt.Errorf("module %q, want the WasmPlugin's %q", u, wasmURL))
	}
	cfg, err := pluginConfigOf(w)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if cfg.RouteOn != config.RouteBody {
		errs = append(errs, fmt.Errorf("route_on %q, want body", cfg.RouteOn))
	}
	if err := checkPickerSettings(cfg, cluster, authority, pool); err != nil {
		errs = append(errs, err)
	}
	if lim := listener.GetPerConnectionBufferLimitBytes().GetValue(); int(lim) <= cfg.MaxRequestBodyBytes {
		errs = append(errs, fmt.Errorf("per_connection_buffer_limit_bytes %d must exceed max_request_body_bytes %d", lim, cfg.MaxRequestBodyBytes))
	}
	return errors.Join(errs...)
}

func wasmPluginURL(t *testing.T) string {
	_, w, err := WasmPlugin(read(t, "istio/wasmplugin.yaml"))
	require.NoError(t, err)
	return w.GetUrl()
}

func TestEnvoyFilter(t *testing.T) {
	cluster, authority := pickerCluster(t)
	require.NoError(t, checkEnvoyFilter(read(t, "istio/envoyfilter.yaml"), cluster, authority, samplePoolName(t), wasmPluginURL(t)))
}

func TestEnvoyFilterRejects(t *testing.T) {
	src := string(read(t, "istio/envoyfilter.yaml"))
	cluster, authority := pickerCluster(t)
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown Istio field", "workloadSelector:", "workloadSelectr:", "workloadSelectr"},
		{"unknown Envoy field in a patch value", "allow_on_headers_stop_iteration: true", "allow_on_header_stop_iteration: true", "allow_on_header_stop_iteration"},
		{"Envoy validation rule in a patch value", "timeout: 30s", "timeout: -30s", "Timeout"},
		{"flag off", "allow_on_headers_stop_iteration: true", "allow_on_headers_stop_iteration: false", "allow_on_headers_stop_iteration"},
		{"pluginConfig key the filter does not know", `"fallback_cache": true`, `"fallback_cachee": true`, "fallback_cachee"},
		{"filter name mismatch", "      value:\n        name: meshllm\n        config_discovery", "      value:\n        name: meshllm-x\n        config_discovery", "ECDS"},
		{"different module than the WasmPlugin", "uri: oci://registry.example.com/meshllm/meshllm-wasm:0.1.0", "uri: oci://registry.example.com/other:1", "module"},
		{"deprecated fail_open beside failure_policy", "            failure_policy: FAIL_OPEN\n", "            failure_policy: FAIL_OPEN\n            fail_open: true\n", "fail_open is set"},
		{"failure policy changed without the docs", "failure_policy: FAIL_OPEN", "failure_policy: FAIL_RELOAD", "want FAIL_OPEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkEnvoyFilter(mutate(t, src, tc.old, tc.new), cluster, authority, samplePoolName(t), wasmPluginURL(t))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// checkPoolCluster: istio/envoyfilter-pool-cluster.yaml gives the pool's
// cluster override_host on the filter's header, and strips a client's copy
// of that header on every HTTP listener of the gateway (checkGatewayStrip).
func checkPoolCluster(doc []byte, poolSvc string, port int) error {
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
	if err := checkGatewayStrip(strip[0]); err != nil {
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

// checkGatewayStrip: a MERGE into every gateway HTTP connection manager
// (no port, so also listeners that route to the pool without the filter)
// whose early header mutations remove the destination header.
func checkGatewayStrip(p *istionet.EnvoyFilter_EnvoyConfigObjectPatch) error {
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
	return checkEarlyStrip(h)
}

func TestPoolClusterEnvoyFilter(t *testing.T) {
	name, ns, port := samplePool(t)
	svc := fmt.Sprintf("%s.%s.svc.cluster.local", name, ns)
	src := string(read(t, "istio/envoyfilter-pool-cluster.yaml"))
	require.NoError(t, checkPoolCluster([]byte(src), svc, port))
	for _, tc := range []struct{ old, new, want string }{
		{"header: x-gateway-destination-endpoint", "header: x-dest", "override_host"},
		{"portNumber: 8000", "portNumber: 8001", "cluster match"},
		{"override_host_sources:\n                - header: x-gateway-destination-endpoint", "override_host_sources: []", "OverrideHostSources"},
		{"fallback_policy:", "fallback_polcy:", "fallback_polcy"},
		{"              - remove: x-gateway-destination-endpoint", "              - remove: x-destination-endpoint", "must remove x-gateway-destination-endpoint"},
		{"              mutations:\n              - remove: x-gateway-destination-endpoint", "              mutations:\n              - remov: x-gateway-destination-endpoint", "remov"},
		{"              mutations:\n              - remove: x-gateway-destination-endpoint", "              mutations: []", "Mutations"},
		{"      operation: MERGE\n      value:\n        typed_config:", "      operation: REPLACE\n      value:\n        typed_config:", "StatPrefix"}, // a REPLACE must be a whole filter
		{"      context: GATEWAY\n      listener:\n        filterChain:", "      context: SIDECAR_INBOUND\n      listener:\n        filterChain:", "context GATEWAY"},
		{"      context: GATEWAY\n      listener:\n        filterChain:", "      context: GATEWAY\n      listener:\n        portNumber: 8081\n        filterChain:", "every gateway listener"},
		{"  - applyTo: NETWORK_FILTER", "  - applyTo: NETWORK_FILTERS", "NETWORK_FILTERS"},
	} {
		require.ErrorContains(t, checkPoolCluster(mutate(t, src, tc.old, tc.new), svc, port), tc.want)
	}
	// The override without the strip: a client could pick the pod.
	i := strings.Index(src, "  # A client must never choose the pod.")
	require.Positive(t, i)
	require.ErrorContains(t, checkPoolCluster([]byte(src[:i]), svc, port), "the header strip")
}

// meshStats decodes istio/telemetry.yaml: an IstioOperator whose only content
// is spec.meshConfig, decoded strictly as istio.io/api's MeshConfig.
func meshStats(doc []byte) (*meshv1alpha1.MeshConfig, error) {
	j, err := YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	var o Object
	if err := StrictJSON(j, &o); err != nil {
		return nil, err
	}
	if o.APIVersion != "install.istio.io/v1alpha1" || o.Kind != "IstioOperator" {
		return nil, fmt.Errorf("want an IstioOperator, got %s %s", o.APIVersion, o.Kind)
	}
	var spec struct {
		MeshConfig json.RawMessage `json:"meshConfig"`
	}
	if err := StrictJSON(o.Spec, &spec); err != nil {
		return nil, err
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := strict.Unmarshal(spec.MeshConfig, mc); err != nil {
		return nil, fmt.Errorf("meshConfig: %w", err)
	}
	return mc, ValidateDeep(mc)
}

func TestTelemetry(t *testing.T) {
	mc, err := meshStats(read(t, "istio/telemetry.yaml"))
	require.NoError(t, err)
	pc := mc.GetDefaultConfig()

	// Every tag the filter emits becomes a label.
	tags := pc.GetExtraStatTags()
	require.ElementsMatch(t, stats.AllTags, tags)

	// Names as the filter builds them (model first, see filter/metrics.go),
	// as Envoy stores them (wasmcustom. namespace).
	names := []string{
		"wasmcustom." + stats.Name(stats.PromptTokens, stats.Tag{Name: stats.TagModel, Value: "tweet-summary"}, stats.Tag{Name: stats.TagTargetModel, Value: "tweet-summary-2"}),
		"wasmcustom." + stats.Name(stats.Requests, stats.Tag{Name: stats.TagModel, Value: "sql-lora"}, stats.Tag{Name: stats.TagResponseClass, Value: "2xx"}),
		"wasmcustom." + stats.LabelOverflow,
	}
	// proxyStatsMatcher: Envoy's regex matchers match the whole name.
	for _, n := range names {
		ok := false
		for _, re := range pc.GetProxyStatsMatcher().GetInclusionRegexps() {
			ok = ok || regexp.MustCompile("^(?:"+re+")$").MatchString(n)
		}
		require.True(t, ok, "stat %q is not included by proxyStatsMatcher", n)
	}
	// Istio renders each extra tag as (<tag>=\.=(.*?);\.;) (unanchored, see
	// istio/istio tools/packaging/common/envoy_bootstrap.json); with the
	// model segment first the labels come out right.
	var specs []envoystats.TagSpecifier
	for _, tag := range tags {
		specs = append(specs, envoystats.TagSpecifier{TagName: tag, Regex: `(` + tag + `=\.=(.*?);\.;)`})
	}
	ex, err := envoystats.NewExtractor(specs)
	require.NoError(t, err)
	require.Equal(t, `asm_llm_proxy_prompt_tokens{model="tweet-summary",target_model="tweet-summary-2"}`, ex.Of(strings.TrimPrefix(names[0], "wasmcustom.")))

	src := string(read(t, "istio/telemetry.yaml"))
	_, err = meshStats(mutate(t, src, "      extraStatTags:\n", "      extraStatTag:\n"))
	require.ErrorContains(t, err, "extraStatTag")
	_, err = meshStats(mutate(t, src, "  meshConfig:\n", "  meshConfg:\n"))
	require.ErrorContains(t, err, "meshConfg")
}
