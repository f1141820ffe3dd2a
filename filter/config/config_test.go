package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseDefaults(t *testing.T) {
	for _, in := range []string{"", "  ", "{}"} {
		c, err := Parse([]byte(in))
		require.NoError(t, err)
		require.Equal(t, Default(), c)
	}
}

func TestParseValues(t *testing.T) {
	c, err := Parse([]byte(`{"llm_paths":["/v1/chat/completions"],"max_request_body_bytes":1024,
		"max_response_body_bytes":2048,"max_sse_event_bytes":4096,"inject_stream_usage":false,
		"model_label_limit":5,"model_allowlist":["llama"],"decode_gzip":false}`))
	require.NoError(t, err)
	want := Default()
	want.LLMPaths, want.MaxRequestBodyBytes, want.MaxResponseBodyBytes, want.MaxSSEEventBytes = []string{"/v1/chat/completions"}, 1024, 2048, 4096
	want.InjectStreamUsage, want.ModelLabelLimit, want.ModelAllowlist, want.DecodeGzip = false, 5, []string{"llama"}, false
	require.Equal(t, want, c)

	c, err = Parse([]byte(`{"route_on":"body","picker_cluster":"outbound|9002||picker-svc.default.svc.cluster.local",
		"picker_authority":"picker-svc","picker_path":"/pick","picker_timeout_ms":80,"pool":"p","failure_mode":"closed",
		"watchdog_ms":500,"fallback_cache":false,"clear_route_cache":false,"resolution_max_age_ms":0,"resolution_path":"/r","pick_explain":"header"}`))
	require.NoError(t, err)
	want = Default()
	want.ResolutionMaxAgeMillis, want.ResolutionPath = 0, "/r"
	want.PickExplain = ExplainHeader
	want.RouteOn, want.PickerCluster, want.PickerAuthority, want.PickerPath = RouteBody, "outbound|9002||picker-svc.default.svc.cluster.local", "picker-svc", "/pick"
	want.PickerTimeoutMillis, want.Pool, want.FailClosed, want.WatchdogMillis, want.FallbackCache, want.ClearRouteCache = 80, "p", true, 500, false, false
	require.Equal(t, want, c)
}

// Every error quotes what was wrong.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"max_body":1}`, `unknown key "max_body"`},
		{`{"max_request_body_bytes":"4MiB"}`, `max_request_body_bytes: want an integer, got "4MiB"`},
		{`{"max_request_body_bytes":1.5}`, `max_request_body_bytes: want an integer, got 1.5`},
		{`{"max_request_body_bytes":0}`, `max_request_body_bytes: 0 is out of range`},
		{`{"model_label_limit":100000}`, `model_label_limit: 100000 is out of range`},
		{`{"inject_stream_usage":"yes"}`, `inject_stream_usage: want true or false, got "yes"`},
		{`{"llm_paths":"/v1/completions"}`, `llm_paths: want an array of strings, got "/v1/completions"`},
		{`{"llm_paths":[]}`, `llm_paths: empty list`},
		{`{"llm_paths":["v1/completions"]}`, `llm_paths: "v1/completions" is not a path`},
		{`{"llm_paths":["/a?b=1"]}`, `llm_paths: "/a?b=1" is not a path`},
		{`{"model_allowlist":[1]}`, `model_allowlist: want strings, got 1`},
		{`{"model_allowlist":[""]}`, `model_allowlist: empty string`},
		{`{"x":`, `pluginConfig is not valid JSON: "{\"x\":"`},
		{`[1]`, `pluginConfig must be a JSON object, got [1]`},
		{`{"route_on":"always"}`, `route_on: want one of body, headers, none, got "always"`},
		{`{"route_on":"body"}`, `route_on "body" needs picker_cluster`},
		{`{"route_on":"headers","picker_cluster":"picker"}`, `route_on "headers" needs picker_authority`},
		{`{"failure_mode":"sometimes"}`, `failure_mode: want one of open, closed, got "sometimes"`},
		{`{"pick_explain":true}`, `pick_explain: want one of off, log, header, got true`},
		{`{"picker_timeout_ms":0}`, `picker_timeout_ms: 0 is out of range`},
		{`{"picker_path":"pick"}`, `picker_path: "pick" is not a path`},
		{`{"pool":""}`, `pool: want a non-empty string, got ""`},
		{`{"max_json_depth":0}`, `max_json_depth: 0 is out of range [1, 1000]`},
		{`{"max_json_depth":5000}`, `max_json_depth: 5000 is out of range [1, 1000]`},
		{`{"endpoint_cidrs":"10.0.0.0/8"}`, `endpoint_cidrs: want an array of strings, got "10.0.0.0/8"`},
		{`{"endpoint_cidrs":[]}`, `endpoint_cidrs: empty list`},
		{`{"endpoint_cidrs":["10.0.0.0"]}`, `endpoint_cidrs: "10.0.0.0" is not a CIDR`},
		{`{"endpoint_cidrs":["vllm.svc/8"]}`, `endpoint_cidrs: "vllm.svc/8" is not a CIDR`},
		{`{"a":` + strings.Repeat("[", 100) + `}`, `pluginConfig is not valid JSON`},
		{`{"resolution_max_age_ms":-1}`, `resolution_max_age_ms: -1 is out of range [0, 86400000]`},
		{`{"resolution_max_age_ms":86400001}`, `resolution_max_age_ms: 86400001 is out of range`},
		{`{"resolution_path":"/v1/resolution?pool=x"}`, `resolution_path: "/v1/resolution?pool=x" is not a path`},
		{`{"resolution_path":""}`, `resolution_path: want a non-empty string`},
	} {
		_, err := Parse([]byte(tc.in))
		require.ErrorContains(t, err, tc.want, tc.in)
	}
}

func TestParseGuards(t *testing.T) {
	c, err := Parse([]byte(`{"max_json_depth":16,"endpoint_cidrs":["10.1.2.3/8","fd00::/8","192.168.7.9/32"]}`))
	require.NoError(t, err)
	require.Equal(t, 16, c.MaxJSONDepth)
	// Host bits are masked, so what the operator meant is what is checked.
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("192.168.7.9/32")}, c.EndpointCIDRs)
}
