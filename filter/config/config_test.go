package config

import (
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
	require.Equal(t, Config{LLMPaths: []string{"/v1/chat/completions"}, MaxRequestBodyBytes: 1024,
		MaxResponseBodyBytes: 2048, MaxSSEEventBytes: 4096, ModelLabelLimit: 5, ModelAllowlist: []string{"llama"}}, c)
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
	} {
		_, err := Parse([]byte(tc.in))
		require.ErrorContains(t, err, tc.want, tc.in)
	}
}
