package llmapi

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/internal/jsonscan"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
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
		{name: "broken further in", body: `{"model":"m","messages":[{"role":}]}`, maxTokens: -1, err: ErrNotJSON},
		{name: "too deep", body: `{"model":"m","messages":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, maxTokens: -1, err: ErrTooDeep},
		{name: "token limit as text", body: `{"model":"m","max_tokens":"12"}`, model: "m", maxTokens: 12},
		{name: "token limit as float", body: `{"model":"m","max_tokens":12.0}`, model: "m", maxTokens: 12},
		{name: "BOM", body: "\xef\xbb\xbf" + `{"model":"m","stream":true}`, model: "m", stream: true, maxTokens: -1, needsInjection: true},
		{name: "empty", body: ``, maxTokens: -1, err: ErrNotJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tc.body), DefaultMaxDepth)
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
		{"include_usage false", `{"model":"m","stream":true,"stream_options":{"include_usage":false}}`,
			`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{"stream_options null", `{"model":"m","stream":true,"stream_options":null}`,
			`{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{"nested braces in strings", `{"model":"m}","messages":[{"content":"{}}"}],"stream":true}`,
			`{"model":"m}","messages":[{"content":"{}}"}],"stream":true,"stream_options":{"include_usage":true}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tc.in), DefaultMaxDepth)
			require.NoError(t, err)
			out, ok := r.InjectIncludeUsage([]byte(tc.in))
			require.True(t, ok)
			require.Equal(t, tc.want, string(out))
			again, err := ParseRequest(out, DefaultMaxDepth)
			require.NoError(t, err)
			require.True(t, again.IncludeUsage)
			require.False(t, again.NeedsUsageInjection())
		})
	}
	// Nothing to do: not streaming, or usage already requested.
	for _, in := range []string{`{"model":"m"}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","stream":true,"stream_options":{}}`,                        // vLLM's include_usage defaults to true
		`{"model":"m","stream":true,"stream_options":{"include_usage":"maybe"}}`, // vLLM refuses it: leave it so
		`{"model":"m","stream":"maybe"}`, `{"model":"m","stream":true,"stream_options":5}`} {
		r, err := ParseRequest([]byte(in), DefaultMaxDepth)
		require.NoError(t, err)
		out, ok := r.InjectIncludeUsage([]byte(in))
		require.False(t, ok)
		require.Equal(t, in, string(out))
	}
}

func TestInjectFixture(t *testing.T) {
	body := fixture(t, "chat_stream_request.json")
	r, err := ParseRequest(body, DefaultMaxDepth)
	require.NoError(t, err)
	out, ok := r.InjectIncludeUsage(body)
	require.True(t, ok)
	require.True(t, gjson.ValidBytes(out))
	require.True(t, gjson.GetBytes(out, "stream_options.include_usage").Bool())
	// Everything else is byte-identical: only the insertion differs.
	require.Equal(t, len(body)+len(`,"stream_options":{"include_usage":true}`), len(out))
}

func TestRewriteModel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"stream":true, "model" : "a","x":"model"}`, `{"stream":true, "model" : "b\"\\","x":"model"}`},
		// vLLM reads the last "model": that is the one rewritten.
		{`{"model":"base","model":"chat-model"}`, `{"model":"base","model":"b\"\\"}`},
		{"\xef\xbb\xbf" + `{"model":"a"}`, "\xef\xbb\xbf" + `{"model":"b\"\\"}`},
	} {
		r, err := ParseRequest([]byte(tc.in), DefaultMaxDepth)
		require.NoError(t, err)
		out, ok := r.RewriteModel([]byte(tc.in), `b"\`)
		require.True(t, ok)
		require.Equal(t, tc.want, string(out))
		again, err := ParseRequest(out, DefaultMaxDepth)
		require.NoError(t, err)
		require.Equal(t, `b"\`, again.Model)
	}
	for _, in := range []string{`{"x":1}`, `{"model":"a","model":7}`} {
		r, _ := ParseRequest([]byte(in), DefaultMaxDepth)
		_, ok := r.RewriteModel([]byte(in), "b")
		require.False(t, ok, in)
	}
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
		r, err := ParseRequest(body, DefaultMaxDepth)
		if err != nil {
			return
		}
		out, ok := r.InjectIncludeUsage(body)
		if !ok {
			return
		}
		// Whatever the input, the injected body is valid JSON that asks
		// for usage and keeps the model.
		again, err := ParseRequest(out, DefaultMaxDepth)
		if err != nil {
			t.Fatalf("injected body does not parse: %v\n%s", err, out)
		}
		if !again.IncludeUsage || again.Model != r.Model || !again.Stream {
			t.Fatalf("injected body lost something: %+v\n%s", again, out)
		}
	})
}

// After an injection the same Request rewrites the new body: its offsets
// followed the splice, wherever it was.
func TestInjectThenRewrite(t *testing.T) {
	for _, in := range []string{
		`{"model":"m","stream":true}`,
		`{"stream":true,"stream_options":null,"model":"m","x":1}`,
		`{"stream":true,"stream_options":{"include_usage":false},"model":"m"}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":0}}`,
	} {
		r, err := ParseRequest([]byte(in), DefaultMaxDepth)
		require.NoError(t, err)
		injected, ok := r.InjectIncludeUsage([]byte(in))
		require.True(t, ok, in)
		out, ok := r.RewriteModel(injected, "sql-lora-1")
		require.True(t, ok, in)
		again, err := ParseRequest(out, DefaultMaxDepth)
		require.NoError(t, err, "%s", out)
		require.Equal(t, "sql-lora-1", again.Model, "%s", out)
		require.True(t, again.IncludeUsage, "%s", out)
		_, ok = r.InjectIncludeUsage(injected)
		require.False(t, ok, "nothing left to inject")
	}
}

// parseRequestGjson is ParseRequest as it was before the one-pass read
// (commit 2bc678d, verbatim): check the whole body, then walk its top-level
// members with gjson. FuzzParseRequestMatchesGjson compares with it.
func parseRequestGjson(body []byte, maxDepth int) (Request, error) {
	r := Request{MaxTokens: -1, modelAt: -1, includeUsageAt: -1, streamOptionsNullAt: -1}
	base := 0
	if bytes.HasPrefix(body, utf8BOM) {
		base = len(utf8BOM)
	}
	b := body[base:]
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	if err := jsonscan.Check(b, maxDepth); err != nil {
		if errors.Is(err, jsonscan.ErrTooDeep) {
			return r, ErrTooDeep
		}
		return r, ErrNotJSON
	}
	first, last := firstNonSpace(b), lastNonSpace(b)
	if b[first] != '{' {
		return r, ErrNotObject
	}
	root := gjson.Parse(unsafeString(b))
	var maxTokens, maxCompletion, maxOutput int64 = -1, -1, -1
	var messages, prompt, input []byte
	streamOK, optionsOK := true, true // per key: the last occurrence decides
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			r.Model, r.modelAt, r.modelLen = "", -1, 0
			if v.Type == gjson.String {
				r.Model = strings.Clone(v.Str) // v.Str may alias body
				r.modelAt, r.modelLen = base+v.Index, len(v.Raw)
			}
		case "stream":
			r.Stream, streamOK = laxBool(v)
		case "stream_options":
			r.IncludeUsage, r.includeUsageAt, r.includeUsageLen, r.streamOptionsNullAt = false, -1, 0, -1
			optionsOK = true
			switch {
			case v.IsObject():
				r.IncludeUsage = true // vLLM's default for include_usage
				v.ForEach(func(k, iu gjson.Result) bool {
					if k.Str == "include_usage" {
						var ok bool
						r.IncludeUsage, ok = laxBool(iu)
						optionsOK = ok // the last include_usage is the one read
						r.includeUsageAt, r.includeUsageLen = base+iu.Index, len(iu.Raw)
					}
					return true
				})
			case v.Type == gjson.Null:
				r.streamOptionsNullAt = base + v.Index
			default: // vLLM refuses the request (400)
				optionsOK = false
			}
		case "max_tokens":
			maxTokens = laxInt(v)
		case "max_completion_tokens":
			maxCompletion = laxInt(v)
		case "max_output_tokens":
			maxOutput = laxInt(v)
		case "messages":
			messages = rawOfGjson(body, base, v)
		case "prompt":
			prompt = rawOfGjson(body, base, v)
		case "input":
			input = rawOfGjson(body, base, v)
		}
		return true
	})
	switch {
	case maxCompletion >= 0:
		r.MaxTokens = maxCompletion
	case maxTokens >= 0:
		r.MaxTokens = maxTokens
	case maxOutput >= 0:
		r.MaxTokens = maxOutput
	}
	switch {
	case messages != nil:
		r.Prompt = messages
	case prompt != nil:
		r.Prompt = prompt
	default:
		r.Prompt = input
	}
	r.closeAt = base + last
	r.refused = !streamOK || !optionsOK
	if r.Model == "" {
		return r, ErrModelMissed
	}
	return r, nil
}

// rawOfGjson is v's raw text as a slice of body (b = body[base:] was parsed).
func rawOfGjson(body []byte, base int, v gjson.Result) []byte {
	at := base + v.Index
	if v.Index <= 0 || at+len(v.Raw) > len(body) {
		return nil
	}
	return body[at : at+len(v.Raw)]
}

// FuzzParseRequestMatchesGjson: the one-pass read (jsonscan.Members) gives
// what checking and then walking the body with gjson gives, field for
// field, offsets included, and error for error.
func FuzzParseRequestMatchesGjson(f *testing.F) {
	for _, name := range []string{"chat_request.json", "chat_stream_request.json", "chat_stream_usage_request.json",
		"completions_stream_request.json", "embeddings_request.json"} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte("\xef\xbb\xbf" + `{"model":"m","stream":"yes","stream_options":{"include_usage":0,"include_usage":true},"max_tokens":"12","prompt":[1,2]}`))
	f.Add([]byte(`{"m\u006fdel":"a","model":1,"max_completion_tokens":3.0,"messages":[],"input":"x","stream_options":null}`))
	f.Add([]byte(` {"model":"m","stream":true,"stream_options":[]} `))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseRequest(body, 16)
		want, wantErr := parseRequestGjson(body, 16)
		if err != wantErr {
			t.Fatalf("%q: ParseRequest %v, want %v", body, err, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n one pass %+v\n gjson    %+v", body, got, want)
		}
	})
}
