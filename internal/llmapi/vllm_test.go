package llmapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// What vLLM reads from a request body, written down from how it reads one:
// FastAPI hands the body to Python's json.loads (a duplicated key: the last
// one wins; a UTF-8 BOM is skipped for bytes), then pydantic validates the
// fields of ChatCompletionRequest / CompletionRequest in lax mode:
//   - model: str | None; a non-string is refused (400).
//   - stream: bool | None = False; lax bool (pydantic-core str_as_bool,
//     int_as_bool, float_as_bool): true/false, 0/1, 0.0/1.0, and the strings
//     0/1 f/t n/y no/yes off/on false/true in any ASCII case; null is None
//     (no stream); anything else is refused.
//   - stream_options: StreamOptions | None; StreamOptions.include_usage:
//     bool | None = True (so {} asks for usage); null include_usage is None.
type vllmReads struct {
	refused      bool // 400: nothing is served
	model        string
	stream       bool
	includeUsage bool // a usage chunk ends the stream
}

var vllmTable = []struct {
	name string
	body string
	vllm vllmReads
}{
	{"plain", `{"model":"m","stream":true}`, vllmReads{model: "m", stream: true}},
	{"duplicate model: the last wins", `{"model":"base","model":"chat-model"}`, vllmReads{model: "chat-model"}},
	{"duplicate model, last not a string", `{"model":"base","model":7}`, vllmReads{refused: true}},
	{"stream as text", `{"model":"m","stream":"true"}`, vllmReads{model: "m", stream: true}},
	{"stream as YES", `{"model":"m","stream":"YES"}`, vllmReads{model: "m", stream: true}},
	{"stream as on", `{"model":"m","stream":"on"}`, vllmReads{model: "m", stream: true}},
	{"stream as t", `{"model":"m","stream":"t"}`, vllmReads{model: "m", stream: true}},
	{"stream as 1", `{"model":"m","stream":1}`, vllmReads{model: "m", stream: true}},
	{"stream as 1.0", `{"model":"m","stream":1.0}`, vllmReads{model: "m", stream: true}},
	{"stream as 1e0", `{"model":"m","stream":1e0}`, vllmReads{model: "m", stream: true}},
	{"stream as 0", `{"model":"m","stream":0}`, vllmReads{model: "m"}},
	{"stream as \"off\"", `{"model":"m","stream":"off"}`, vllmReads{model: "m"}},
	{"stream null", `{"model":"m","stream":null}`, vllmReads{model: "m"}},
	{"stream 2 is refused", `{"model":"m","stream":2}`, vllmReads{refused: true}},
	{"stream \" true\" is refused", `{"model":"m","stream":" true"}`, vllmReads{refused: true}},
	{"stream [] is refused", `{"model":"m","stream":[]}`, vllmReads{refused: true}},
	{"stream duplicated", `{"model":"m","stream":false,"stream":true}`, vllmReads{model: "m", stream: true}},
	{"stream refused, then valid", `{"model":"m","stream":"bad","stream":true}`, vllmReads{model: "m", stream: true}},
	{"usage asked", `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
		vllmReads{model: "m", stream: true, includeUsage: true}},
	{"usage default", `{"model":"m","stream":true,"stream_options":{}}`, vllmReads{model: "m", stream: true, includeUsage: true}},
	{"usage default beside other options", `{"model":"m","stream":true,"stream_options":{"continuous_usage_stats":true}}`,
		vllmReads{model: "m", stream: true, includeUsage: true}},
	{"usage as \"yes\"", `{"model":"m","stream":1,"stream_options":{"include_usage":"yes"}}`,
		vllmReads{model: "m", stream: true, includeUsage: true}},
	{"usage null", `{"model":"m","stream":true,"stream_options":{"include_usage":null}}`, vllmReads{model: "m", stream: true}},
	{"usage false", `{"model":"m","stream":true,"stream_options":{"include_usage":false}}`, vllmReads{model: "m", stream: true}},
	{"usage duplicated, last false", `{"model":"m","stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`,
		vllmReads{model: "m", stream: true}},
	{"usage duplicated, last true", `{"model":"m","stream":true,"stream_options":{"include_usage":0,"include_usage":"1"}}`,
		vllmReads{model: "m", stream: true, includeUsage: true}},
	{"options then null", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"stream_options":null}`,
		vllmReads{model: "m", stream: true}},
	{"null then options", `{"model":"m","stream":true,"stream_options":null,"stream_options":{"include_usage":true}}`,
		vllmReads{model: "m", stream: true, includeUsage: true}},
	{"options not an object", `{"model":"m","stream":true,"stream_options":"all"}`, vllmReads{refused: true}},
	{"usage refused", `{"model":"m","stream":true,"stream_options":{"include_usage":"maybe"}}`, vllmReads{refused: true}},
	{"UTF-8 BOM", "\xef\xbb\xbf" + `{"model":"m","stream":"1"}`, vllmReads{model: "m", stream: true}},
	{"escaped key", `{"mod\u0065l":"m","stre\u0061m":true}`, vllmReads{model: "m", stream: true}},
	{"escaped value", `{"model":"m\u002d1","stream":"tru\u0065"}`, vllmReads{model: "m-1", stream: true}},
	{"keys in nested objects do not count", `{"messages":[{"model":"x","stream":true}],"model":"m"}`, vllmReads{model: "m"}},
}

// TestReadsAsVLLM is the differential table: for each body, what vLLM reads
// (above), what the filter reads, and what vLLM reads from the body the
// filter forwards after injecting include_usage and rewriting the model.
// The forwarded body is read back by pythonReads, a reader written apart
// from ParseRequest (encoding/json tokens with last-key-wins).
func TestReadsAsVLLM(t *testing.T) {
	for _, tc := range vllmTable {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			require.Equal(t, tc.vllm, pythonReads(t, body), "the reference reader disagrees with the table")
			r, err := ParseRequest(body, DefaultMaxDepth)
			if tc.vllm.refused {
				// Routing it is harmless (vLLM answers 400); changing it
				// into a body vLLM accepts is not.
				out, injected := r.InjectIncludeUsage(body)
				require.False(t, injected)
				require.Equal(t, body, out)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.vllm.model, r.Model)
			require.Equal(t, tc.vllm.stream, r.Stream)
			if tc.vllm.stream {
				require.Equal(t, tc.vllm.includeUsage, r.IncludeUsage)
			}

			out, injected := r.InjectIncludeUsage(body)
			require.Equal(t, tc.vllm.stream && !tc.vllm.includeUsage, injected,
				"inject exactly when vLLM would stream without usage")
			after := pythonReads(t, out)
			require.False(t, after.refused)
			require.Equal(t, tc.vllm.stream, after.stream)
			if tc.vllm.stream {
				require.True(t, after.includeUsage, "every stream vLLM streams reports usage: %s", out)
			}

			again, err := ParseRequest(out, DefaultMaxDepth)
			require.NoError(t, err)
			rewritten, ok := again.RewriteModel(out, "sql-lora-1")
			require.True(t, ok)
			require.Equal(t, "sql-lora-1", pythonReads(t, rewritten).model, "vLLM serves the model the metrics name: %s", rewritten)
		})
	}
}

// pythonReads reads body the way the comment on vllmReads says vLLM does.
func pythonReads(t *testing.T, body []byte) vllmReads {
	t.Helper()
	body = bytes.TrimPrefix(body, utf8BOM)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	top := lastWins(t, dec)
	var r vllmReads
	if m, ok := top["model"]; ok {
		s, isStr := m.(string)
		if !isStr && m != nil {
			return vllmReads{refused: true}
		}
		r.model = s
	}
	var ok bool
	if r.stream, ok = pydanticBool(top["stream"]); !ok {
		return vllmReads{refused: true}
	}
	switch so := top["stream_options"].(type) {
	case nil:
	case map[string]any:
		r.includeUsage = true
		if v, present := so["include_usage"]; present {
			if r.includeUsage, ok = pydanticBool(v); !ok {
				return vllmReads{refused: true}
			}
		}
	default:
		return vllmReads{refused: true}
	}
	if !r.stream {
		r.includeUsage = false
	}
	return r
}

// lastWins decodes one JSON object from dec keeping the last of duplicate
// keys, as a Python dict does (nested objects too).
func lastWins(t *testing.T, dec *json.Decoder) map[string]any {
	t.Helper()
	top, ok := value(t, dec).(map[string]any)
	require.True(t, ok, "the body is an object")
	return top
}

func value(t *testing.T, dec *json.Decoder) any {
	t.Helper()
	tok, err := dec.Token()
	require.NoError(t, err)
	switch tok {
	case json.Delim('{'):
		out := map[string]any{}
		for dec.More() {
			k, err := dec.Token()
			require.NoError(t, err)
			out[k.(string)] = value(t, dec)
		}
		_, err = dec.Token()
		require.NoError(t, err)
		return out
	case json.Delim('['):
		var out []any
		for dec.More() {
			out = append(out, value(t, dec))
		}
		_, err = dec.Token()
		require.NoError(t, err)
		return out
	}
	return tok
}

func pydanticBool(v any) (bool, bool) {
	switch x := v.(type) {
	case nil:
		return false, true
	case bool:
		return x, true
	case json.Number:
		f, err := x.Float64()
		if err == nil && (f == 0 || f == 1) {
			return f == 1, true
		}
	case string:
		switch strings.ToLower(x) {
		case "0", "f", "n", "no", "off", "false":
			return false, true
		case "1", "t", "y", "yes", "on", "true":
			return true, true
		}
	}
	return false, false
}
