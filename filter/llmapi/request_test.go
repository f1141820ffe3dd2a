package llmapi

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/" + name)
	require.NoError(t, err)
	return b
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body         string
		model              string
		stream, includeUsg bool
		maxTokens          int64
		prompt             string
		err                error
		needsInjection     bool
	}{
		{name: "chat", body: `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`,
			model: "m", maxTokens: 5, prompt: `[{"role":"user","content":"hi"}]`},
		{name: "max_completion_tokens wins", body: `{"model":"m","max_tokens":5,"max_completion_tokens":7,"prompt":"x"}`,
			model: "m", maxTokens: 7, prompt: `"x"`},
		{name: "responses api", body: `{"model":"m","input":"x","max_output_tokens":9}`, model: "m", maxTokens: 9, prompt: `"x"`},
		{name: "token ids", body: `{"model":"m","prompt":[1,2,3]}`, model: "m", maxTokens: -1, prompt: `[1,2,3]`},
		{name: "stream without usage", body: `{"model":"m","stream":true}`, model: "m", stream: true, maxTokens: -1, needsInjection: true},
		{name: "stream with usage", body: `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
			model: "m", stream: true, includeUsg: true, maxTokens: -1},
		{name: "stream false", body: `{"model":"m","stream":false}`, model: "m", maxTokens: -1},
		{name: "bad max_tokens ignored", body: `{"model":"m","max_tokens":-3}`, model: "m", maxTokens: -1},
		{name: "no model", body: `{"prompt":"x"}`, maxTokens: -1, prompt: `"x"`, err: ErrModelMissed},
		{name: "model not a string", body: `{"model":7}`, maxTokens: -1, err: ErrModelMissed},
		{name: "array", body: `[1]`, maxTokens: -1, err: ErrNotObject},
		{name: "malformed", body: `{"model":"m",`, maxTokens: -1, err: ErrNotJSON},
		{name: "empty", body: ``, maxTokens: -1, err: ErrNotJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tc.body))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.model, r.Model)
			require.Equal(t, tc.stream, r.Stream)
			require.Equal(t, tc.includeUsg, r.IncludeUsage)
			require.Equal(t, tc.maxTokens, r.MaxTokens)
			require.Equal(t, tc.prompt, string(r.Prompt))
			require.Equal(t, tc.needsInjection, r.NeedsUsageInjection())
		})
	}
}

func TestInjectIncludeUsage(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no stream_options", `{"model":"m","stream":true}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{"trailing space", "{\"model\":\"m\",\"stream\":true}  \n", "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}  \n"},
		{"empty stream_options", `{"model":"m","stream":true,"stream_options":{ }}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true }}`},
		{"other stream_options", `{"model":"m","stream":true,"stream_options":{"continuous_usage_stats":false}}`,
			`{"model":"m","stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":false}}`},
		{"include_usage false", `{"model":"m","stream":true,"stream_options":{"include_usage":false}}`,
			`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{"stream_options null", `{"model":"m","stream":true,"stream_options":null}`,
			`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{"nested braces in strings", `{"model":"m}","messages":[{"content":"{}}"}],"stream":true}`,
			`{"model":"m}","messages":[{"content":"{}}"}],"stream":true,"stream_options":{"include_usage":true}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tc.in))
			require.NoError(t, err)
			out, ok := r.InjectIncludeUsage([]byte(tc.in))
			require.True(t, ok)
			require.Equal(t, tc.want, string(out))
			again, err := ParseRequest(out)
			require.NoError(t, err)
			require.True(t, again.IncludeUsage)
			require.False(t, again.NeedsUsageInjection())
		})
	}
	// Nothing to do: not streaming, or usage already requested.
	for _, in := range []string{`{"model":"m"}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`} {
		r, err := ParseRequest([]byte(in))
		require.NoError(t, err)
		out, ok := r.InjectIncludeUsage([]byte(in))
		require.False(t, ok)
		require.Equal(t, in, string(out))
	}
}

func TestInjectFixture(t *testing.T) {
	body := fixture(t, "chat_stream_request.json")
	r, err := ParseRequest(body)
	require.NoError(t, err)
	out, ok := r.InjectIncludeUsage(body)
	require.True(t, ok)
	require.True(t, gjson.ValidBytes(out))
	require.True(t, gjson.GetBytes(out, "stream_options.include_usage").Bool())
	// Everything else is byte-identical: only the insertion differs.
	require.Equal(t, len(body)+len(`,"stream_options":{"include_usage":true}`), len(out))
}

func TestRewriteModel(t *testing.T) {
	out, ok := RewriteModel([]byte(`{"stream":true, "model" : "a","x":"model"}`), `b"\`)
	require.True(t, ok)
	require.Equal(t, `{"stream":true, "model" : "b\"\\","x":"model"}`, string(out))
	_, ok = RewriteModel([]byte(`{"x":1}`), "b")
	require.False(t, ok)
}

func TestIsLLMCall(t *testing.T) {
	paths := []string{"/v1/completions", "/v1/chat/completions"}
	require.True(t, IsLLMCall("POST", "/v1/chat/completions", "application/json", paths))
	require.True(t, IsLLMCall("POST", "/v1/completions?x=1", "Application/JSON; charset=utf-8", paths))
	require.False(t, IsLLMCall("GET", "/v1/completions", "application/json", paths))
	require.False(t, IsLLMCall("POST", "/v1/models", "application/json", paths))
	require.False(t, IsLLMCall("POST", "/v1/completions", "text/plain", paths))
	require.False(t, IsLLMCall("POST", "/v1/completions/", "application/json", paths))
	require.True(t, IsEventStream("text/event-stream; charset=utf-8"))
}

func FuzzParseRequest(f *testing.F) {
	for _, name := range []string{"chat_request.json", "chat_stream_request.json", "chat_stream_usage_request.json",
		"completions_stream_request.json", "embeddings_request.json"} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{"model":"m","stream":true,"stream_options":null}`))
	f.Add([]byte(`{"model":"m","stream":true,"stream_options":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRequest(body)
		if err != nil {
			return
		}
		out, ok := r.InjectIncludeUsage(body)
		if !ok {
			return
		}
		// Whatever the input, the injected body is valid JSON that asks
		// for usage and keeps the model.
		again, err := ParseRequest(out)
		if err != nil {
			t.Fatalf("injected body does not parse: %v\n%s", err, out)
		}
		if !again.IncludeUsage || again.Model != r.Model || !again.Stream {
			t.Fatalf("injected body lost something: %+v\n%s", again, out)
		}
	})
}
