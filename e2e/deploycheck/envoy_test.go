package deploycheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	wasmhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	overridehostv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wasmpluginv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/pickapi"
)

// The facts envoy.yaml promises (the e2e gateway host and docker-compose rely
// on the same ones).
var (
	vllmEndpoints = []string{"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"}
	pickerAddr    = "127.0.0.1:9002"
)

func read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../..", rel))
	require.NoError(t, err)
	return b
}

func loadBootstrap(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := Bootstrap(read(t, "envoy/envoy.yaml"))
	require.NoError(t, err)
	return b
}

// hcmOf returns the HTTP connection manager of a listener's only chain.
func hcmOf(l *listenerv3.Listener) (*hcmv3.HttpConnectionManager, error) {
	if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
		return nil, fmt.Errorf("listener %s: want one chain with one filter", l.GetName())
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(h); err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
	}
	return h, nil
}

func listenerOn(b *bootstrapv3.Bootstrap, port uint32) *listenerv3.Listener {
	for _, l := range b.GetStaticResources().GetListeners() {
		sa := l.GetAddress().GetSocketAddress()
		if sa.GetPortValue() == port && sa.GetAddress() == "0.0.0.0" {
			return l
		}
	}
	return nil
}

func clusterNamed(b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

func endpointsOf(c *clusterv3.Cluster) []string {
	var out []string
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	return out
}

// routeOf returns the single route's cluster and checks its timeouts: a
// whole-request timer would cut long generations, so it must be off (0s).
func routeOf(h *hcmv3.HttpConnectionManager) (string, error) {
	vhs := h.GetRouteConfig().GetVirtualHosts()
	if len(vhs) != 1 || len(vhs[0].GetRoutes()) != 1 {
		return "", errors.New("want one virtual host with one route")
	}
	r := vhs[0].GetRoutes()[0].GetRoute()
	if r.GetTimeout() == nil || r.GetTimeout().AsDuration() != 0 {
		return "", fmt.Errorf("route timeout %v: want 0s (no limit) for long LLM streams", r.GetTimeout())
	}
	if r.GetIdleTimeout().AsDuration().Minutes() < 5 {
		return "", fmt.Errorf("route idle_timeout %v: too short for a long non-streamed generation", r.GetIdleTimeout())
	}
	return r.GetCluster(), nil
}

// wasmFilterConfig returns the Wasm filter of an HCM and its parsed pluginConfig.
func wasmFilterConfig(h *hcmv3.HttpConnectionManager) (*wasmhttpv3.Wasm, config.Config, error) {
	var names []string
	for _, f := range h.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	if !slices.Equal(names, []string{"envoy.filters.http.wasm", "envoy.filters.http.router"}) {
		return nil, config.Config{}, fmt.Errorf("http_filters %v: want the wasm filter, then the router", names)
	}
	w := &wasmhttpv3.Wasm{}
	if err := h.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(w); err != nil {
		return nil, config.Config{}, err
	}
	cfg, err := PluginConfigOf(w)
	return w, cfg, err
}

// accessLogFormat returns the text format of the listener's stdout access log.
func accessLogFormat(h *hcmv3.HttpConnectionManager) (string, error) {
	if len(h.GetAccessLog()) != 1 {
		return "", errors.New("want one access log")
	}
	so := &streamv3.StdoutAccessLog{}
	if err := h.GetAccessLog()[0].GetTypedConfig().UnmarshalTo(so); err != nil {
		return "", err
	}
	return so.GetLogFormat().GetTextFormatSource().GetInlineString(), nil
}

// checkBootstrap holds every semantic promise of envoy.yaml.
func checkBootstrap(b *bootstrapv3.Bootstrap, poolName string) error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	// Clusters: plain shapes the gateway test host reads.
	vllm, llm, picker := clusterNamed(b, "vllm"), clusterNamed(b, "vllm_llm"), clusterNamed(b, "picker")
	if vllm == nil || llm == nil || picker == nil {
		return fmt.Errorf("want clusters vllm, vllm_llm and picker")
	}
	if vllm.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN || vllm.GetLoadBalancingPolicy() != nil {
		fail("cluster vllm: want plain ROUND_ROBIN")
	}
	for _, c := range []*clusterv3.Cluster{vllm, llm} {
		if got := endpointsOf(c); !slices.Equal(got, vllmEndpoints) {
			fail("cluster %s: endpoints %v, want %v", c.GetName(), got, vllmEndpoints)
		}
	}
	if got := endpointsOf(picker); !slices.Equal(got, []string{pickerAddr}) {
		fail("cluster picker: endpoints %v, want %s", got, pickerAddr)
	}
	pols := llm.GetLoadBalancingPolicy().GetPolicies()
	if len(pols) != 1 {
		fail("cluster vllm_llm: want exactly one load_balancing_policy (override_host)")
	} else {
		oh := &overridehostv3.OverrideHost{}
		if err := pols[0].GetTypedExtensionConfig().GetTypedConfig().UnmarshalTo(oh); err != nil {
			fail("cluster vllm_llm: %v", err)
		} else {
			if len(oh.GetOverrideHostSources()) != 1 || oh.GetOverrideHostSources()[0].GetHeader() != pickapi.HeaderDestinationEndpoint {
				fail("cluster vllm_llm: override_host must read only header %s", pickapi.HeaderDestinationEndpoint)
			}
			fb := oh.GetFallbackPolicy().GetPolicies()
			if len(fb) != 1 || !fb[0].GetTypedExtensionConfig().GetTypedConfig().MessageIs(&roundrobinv3.RoundRobin{}) {
				fail("cluster vllm_llm: fallback_policy must be round robin (the fail-open path)")
			}
		}
	}

	// Listener 8080: router only, to vllm.
	l80, l81 := listenerOn(b, 8080), listenerOn(b, 8081)
	if l80 == nil || l81 == nil {
		return errors.Join(append(errs, errors.New("want listeners on 0.0.0.0:8080 and 0.0.0.0:8081"))...)
	}
	formats := map[string]string{}
	for _, l := range []*listenerv3.Listener{l80, l81} {
		h, err := hcmOf(l)
		if err != nil {
			fail("%v", err)
			continue
		}
		if f, err := accessLogFormat(h); err != nil {
			fail("listener %s: %v", l.GetName(), err)
		} else {
			formats[l.GetName()] = f
			for _, k := range stats.StateKeys {
				if want := "%FILTER_STATE(wasm." + k + ":PLAIN)%"; !strings.Contains(f, want) {
					fail("listener %s: access log lacks %s", l.GetName(), want)
				}
			}
		}
		if err := CheckEarlyStrip(h); err != nil {
			fail("listener %s: %v", l.GetName(), err)
		}
		cluster, err := routeOf(h)
		if err != nil {
			fail("listener %s: %v", l.GetName(), err)
		}
		if l == l80 {
			if cluster != "vllm" {
				fail("listener 8080 routes to %q, want vllm", cluster)
			}
			if len(h.GetHttpFilters()) != 1 || h.GetHttpFilters()[0].GetName() != "envoy.filters.http.router" {
				fail("listener 8080: want the router alone (the plain baseline)")
			}
			continue
		}
		if cluster != "vllm_llm" {
			fail("listener 8081 routes to %q, want vllm_llm", cluster)
		}
		w, cfg, err := wasmFilterConfig(h)
		if err != nil {
			fail("listener 8081: %v", err)
			continue
		}
		pc := w.GetConfig()
		if err := CheckFailurePolicy(pc, wasmpluginv3.FailurePolicy_FAIL_RELOAD); err != nil {
			fail("listener 8081: %v", err)
		}
		if !pc.GetAllowOnHeadersStopIteration().GetValue() {
			fail("listener 8081: the wasm filter needs allow_on_headers_stop_iteration: true for body routing")
		}
		if pc.GetName() != "meshllm" || pc.GetRootId() != "meshllm" || pc.GetVmConfig().GetRuntime() != "envoy.wasm.runtime.v8" {
			fail("listener 8081: want name/root_id meshllm on the v8 runtime")
		}
		if cfg.RouteOn != config.RouteBody {
			fail("listener 8081: route_on %q, want body", cfg.RouteOn)
		}
		if clusterNamed(b, cfg.PickerCluster) == nil {
			fail("picker_cluster %q is not a cluster of this file (DispatchHttpCall would fail)", cfg.PickerCluster)
		}
		if cfg.PickerPath != pickapi.Path {
			fail("picker_path %q, want %q", cfg.PickerPath, pickapi.Path)
		}
		if cfg.Pool != poolName {
			fail("pool %q, want the sample InferencePool %q", cfg.Pool, poolName)
		}
		if lim := l.GetPerConnectionBufferLimitBytes().GetValue(); int(lim) <= cfg.MaxRequestBodyBytes {
			fail("listener 8081: per_connection_buffer_limit_bytes %d must exceed max_request_body_bytes %d (else 413)", lim, cfg.MaxRequestBodyBytes)
		}
	}
	if f80, f81 := formats[l80.GetName()], formats[l81.GetName()]; strings.Replace(f80, "listener=8080", "listener=8081", 1) != f81 {
		fail("the two listeners' access-log formats differ beyond the listener name")
	}

	// stats_tags: exactly the filter's tags (filter/stats has the same test;
	// here they also went through the strict proto decoding).
	var tags []string
	for i, st := range b.GetStatsConfig().GetStatsTags() {
		tags = append(tags, st.GetTagName())
		if st.GetRegex() != stats.TagRegex(st.GetTagName()) {
			fail("stats_tags[%d]: regex %q, want %q", i, st.GetRegex(), stats.TagRegex(st.GetTagName()))
		}
	}
	if !slices.Equal(tags, stats.AllTags) {
		fail("stats_tags %v, want %v", tags, stats.AllTags)
	}
	return errors.Join(errs...)
}

func TestEnvoyYAML(t *testing.T) {
	b := loadBootstrap(t)
	require.NoError(t, checkBootstrap(b, samplePoolName(t)))
	// The wasm path Envoy loads is the one docker-compose mounts.
	h, err := hcmOf(listenerOn(b, 8081))
	require.NoError(t, err)
	w, _, err := wasmFilterConfig(h)
	require.NoError(t, err)
	require.Equal(t, "/etc/envoy/meshllm.wasm", w.GetConfig().GetVmConfig().GetCode().GetLocal().GetFilename())
}

// mutate applies one textual change to envoy.yaml and fails the test if the
// change did not apply (so a negative test cannot silently test nothing).
func mutate(t *testing.T, src, old, new string) []byte {
	t.Helper()
	require.Contains(t, src, old, "mutation target missing")
	return []byte(strings.Replace(src, old, new, 1))
}

func TestEnvoyYAMLRejects(t *testing.T) {
	src := string(read(t, "envoy/envoy.yaml"))
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown top-level field", "stats_config:", "statz_config: {}\nstats_config:", "statz_config"},
		{"unknown field inside a typed_config Any", "allow_on_headers_stop_iteration: true", "allow_on_header_stop_iteration: true", "allow_on_header_stop_iteration"},
		{"unregistered @type", "envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.router.v3.Routerr", "Routerr"},
		{"duplicate key", "    connect_timeout: 0.25s\n", "    connect_timeout: 0.25s\n    connect_timeout: 1s\n", "already set"},
		{"validation rule at top level", "port_value: 8081}", "port_value: 80810}", "PortValue"},
		{"validation rule deep inside Anys", "override_host_sources:\n            - header: x-gateway-destination-endpoint", "override_host_sources: []", "OverrideHostSources"},
		{"early header mutation with no mutation", "              mutations:\n              - remove: x-gateway-destination-endpoint\n          stream_idle_timeout", "              mutations: []\n          stream_idle_timeout", "Mutations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Bootstrap(mutate(t, src, tc.old, tc.new))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestValidateAllStopsAtAny shows why ValidateDeep exists: the top-level
// ValidateAll accepts a bootstrap whose only error is inside an Any.
func TestValidateAllStopsAtAny(t *testing.T) {
	src := string(read(t, "envoy/envoy.yaml"))
	j, err := YAMLToJSON(mutate(t, src, "override_host_sources:\n            - header: x-gateway-destination-endpoint", "override_host_sources: []"))
	require.NoError(t, err)
	b := &bootstrapv3.Bootstrap{}
	require.NoError(t, strict.Unmarshal(j, b))
	require.NoError(t, b.ValidateAll(), "ValidateAll alone")
	require.Error(t, ValidateDeep(b))
}

// earlyStrip is envoy.yaml's early header mutation block, as written on both
// listeners.
const earlyStrip = `          early_header_mutation_extensions:
          - name: envoy.http.early_header_mutation.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation
              mutations:
              - remove: x-gateway-destination-endpoint
`

func TestEnvoyYAMLSemanticsReject(t *testing.T) {
	src := string(read(t, "envoy/envoy.yaml"))
	pool := samplePoolName(t)
	for _, tc := range []struct{ name, old, new, want string }{
		{"pluginConfig key the filter does not know", `"route_on": "body"`, `"route_onn": "body"`, "route_onn"},
		{"headers mode on the body listener", `"route_on": "body"`, `"route_on": "headers"`, "route_on"},
		{"picker cluster not defined", `"picker_cluster": "picker"`, `"picker_cluster": "pickr"`, "pickr"},
		{"flag missing", "allow_on_headers_stop_iteration: true", "allow_on_headers_stop_iteration: false", "allow_on_headers_stop_iteration"},
		{"route timeout", "timeout: 0s\n                  idle_timeout: 600s\n          http_filters:\n          - name: envoy.filters.http.wasm", "timeout: 15s\n                  idle_timeout: 600s\n          http_filters:\n          - name: envoy.filters.http.wasm", "route timeout"},
		{"buffer limit below the body cap", "per_connection_buffer_limit_bytes: 5242880", "per_connection_buffer_limit_bytes: 1048576", "413"},
		{"access-log field dropped", "endpoint=%FILTER_STATE(wasm.llm_endpoint:PLAIN)% route=", "route=", "llm_endpoint"},
		{"endpoint moved", "port_value: 8002}}}\n\n  # picker-svc", "port_value: 8003}}}\n\n  # picker-svc", "vllm_llm: endpoints"},
		{"no early strip on 8080", earlyStrip + "          # A streamed", "          # A streamed", "plain_8080: early_header_mutation_extensions"},
		{"early strip of another header on 8081", "- remove: x-gateway-destination-endpoint\n          stream_idle_timeout", "- remove: x-destination-endpoint\n          stream_idle_timeout", "llm_8081: early_header_mutation_extensions"},
		{"failure policy left to the default", "                failure_policy: FAIL_RELOAD\n", "", "failure_policy UNSPECIFIED"},
		{"failure policy changed without the docs", "failure_policy: FAIL_RELOAD", "failure_policy: FAIL_OPEN", "want FAIL_RELOAD"},
		{"deprecated fail_open beside failure_policy", "                failure_policy: FAIL_RELOAD\n", "                failure_policy: FAIL_RELOAD\n                fail_open: true\n", "fail_open is set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Bootstrap(mutate(t, src, tc.old, tc.new))
			if err == nil {
				err = checkBootstrap(b, pool)
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
