package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// override_host semantics: only a member of the cluster is honoured (first
// member of a comma-separated list); anything else is round robin.
func TestClusterPickOverrideHost(t *testing.T) {
	c := &cluster{spec: &ClusterSpec{Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80"}, OverrideHeader: "x-gateway-destination-endpoint"}, count: map[string]int{}}
	ep, _ := c.pick("10.0.0.2:80")
	require.Equal(t, "10.0.0.2:80", ep)
	ep, _ = c.pick("192.0.2.9:80, 10.0.0.1:80")
	require.Equal(t, "10.0.0.1:80", ep)
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		ep, _ = c.pick("169.254.169.254:80")
		require.Contains(t, c.spec.Endpoints, ep)
		seen[ep] = true
	}
	require.Len(t, seen, 2, "a non-member falls back to round robin over members")

	plain := &cluster{spec: &ClusterSpec{Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80"}}, count: map[string]int{}}
	a, _ := plain.pick("10.0.0.2:80")
	b, _ := plain.pick("10.0.0.2:80")
	require.NotEqual(t, a, b, "a cluster without override_host ignores the header")

	_, ok := (&cluster{spec: &ClusterSpec{}, count: map[string]int{}}).pick("")
	require.False(t, ok)
}

func TestAccessLogFormat(t *testing.T) {
	ex := &exchange{start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), method: "POST", path: "/v1/completions", proto: "HTTP/1.1",
		status: 200, flags: "-", upstream: "10.0.0.1:80", state: map[string]string{"wasm.llm_model": "m"}}
	got := formatAccessLog(`[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% up=%UPSTREAM_HOST% model=%FILTER_STATE(wasm.llm_model:PLAIN)% tokens=%FILTER_STATE(wasm.llm_prompt_tokens:PLAIN)% x=%UNKNOWN%`+"\n", ex)
	require.Equal(t, `[2026-01-02T03:04:05.000Z] "POST /v1/completions HTTP/1.1" 200 up=10.0.0.1:80 model=m tokens=- x=-`+"\n", got)
}

func TestLoadSpecFromEnvoyYAML(t *testing.T) {
	spec, err := LoadSpec("../../envoy/envoy.yaml")
	require.NoError(t, err)
	require.Equal(t, 9901, spec.AdminPort)
	require.Len(t, spec.Listeners, 2)
	byName := map[string]ListenerSpec{}
	for _, l := range spec.Listeners {
		byName[l.Name] = l
	}
	require.Nil(t, byName["plain_8080"].Wasm)
	require.Equal(t, "vllm", byName["plain_8080"].Cluster)
	llm := byName["llm_8081"]
	require.NotNil(t, llm.Wasm)
	require.True(t, llm.Wasm.AllowOnHeadersStopIteration)
	require.Contains(t, string(llm.Wasm.PluginConfig), `"route_on": "body"`)
	require.Equal(t, "x-gateway-destination-endpoint", spec.Clusters["vllm_llm"].OverrideHeader)
	require.Empty(t, spec.Clusters["vllm"].OverrideHeader)
	require.Equal(t, []string{"127.0.0.1:9002"}, spec.Clusters["picker"].Endpoints)
	require.NotEmpty(t, spec.StatsTags)
	require.Contains(t, llm.AccessLog, "%FILTER_STATE(wasm.llm_model:PLAIN)%")
}
