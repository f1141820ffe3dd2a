package deploycheck

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/internal/testsupport/envoystats"
)

// samplePool returns the envelope of istio/inferencepool.yaml (its content is
// checked by the picker's own parser in picker-svc/internal/inference).
func samplePool(t *testing.T) (name, namespace string, port int) {
	t.Helper()
	o, spec, err := MeshInferencePool(read(t, "istio/inferencepool.yaml"))
	require.NoError(t, err)
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
	cluster, authority, err := PickerCluster(pickerService(t))
	require.NoError(t, err)
	return cluster, authority
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

func TestWasmPlugin(t *testing.T) {
	cluster, authority := pickerCluster(t)
	w, err := CheckWasmPlugin(read(t, "istio/wasmplugin.yaml"), cluster, authority, samplePoolName(t))
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
			_, err := CheckWasmPlugin(mutate(t, src, tc.old, tc.new), cluster, authority, samplePoolName(t))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func wasmPluginURL(t *testing.T) string {
	_, w, err := WasmPlugin(read(t, "istio/wasmplugin.yaml"))
	require.NoError(t, err)
	return w.GetUrl()
}

func TestEnvoyFilter(t *testing.T) {
	cluster, authority := pickerCluster(t)
	require.NoError(t, CheckEnvoyFilter(read(t, "istio/envoyfilter.yaml"), cluster, authority, samplePoolName(t), wasmPluginURL(t), 8081))
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
		{"buffer limit on another port", "      listener:\n        portNumber: 8081\n    patch:\n      operation: MERGE", "      listener:\n        portNumber: 8080\n    patch:\n      operation: MERGE", "LISTENER"},
		{"failure policy changed without the docs", "failure_policy: FAIL_OPEN", "failure_policy: FAIL_RELOAD", "want FAIL_OPEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckEnvoyFilter(mutate(t, src, tc.old, tc.new), cluster, authority, samplePoolName(t), wasmPluginURL(t), 8081)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestPoolClusterEnvoyFilter(t *testing.T) {
	name, ns, port := samplePool(t)
	svc := fmt.Sprintf("%s.%s.svc.cluster.local", name, ns)
	src := string(read(t, "istio/envoyfilter-pool-cluster.yaml"))
	require.NoError(t, CheckPoolCluster([]byte(src), svc, port))
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
		require.ErrorContains(t, CheckPoolCluster(mutate(t, src, tc.old, tc.new), svc, port), tc.want)
	}
	// The override without the strip: a client could pick the pod.
	i := strings.Index(src, "  # A client must never choose the pod.")
	require.Positive(t, i)
	require.ErrorContains(t, CheckPoolCluster([]byte(src[:i]), svc, port), "the header strip")
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
