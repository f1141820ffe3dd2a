package vllmsim

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeRequest: any body either decodes to a usable request or yields a
// vLLM-style 400/404 error whose body is valid JSON; never a panic.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","prompt":"hello","max_tokens":5}`,
		`{"prompt":["a","b"],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":[1,2,3],"ignore_eos":true,"min_tokens":2}`,
		`{"prompt":[[1],[2,3]],"n":1}`,
		`{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":3}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		`{"messages":[{"role":"assistant","content":null}],"temperature":0.5}`,
		`{"model":"a","prompt":"x","max_tokens":-1}`,
		`{"prompt":{"x":1}}`, `[]`, `null`, `{`, `{"prompt":"x"} {}`, `{"prompt":"\ud800"}`,
		`{"prompt":[-5]}`, `{"max_tokens":1e99,"prompt":"x"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	models := map[string]int{"m": -1, "a": 0}
	f.Fuzz(func(t *testing.T, body []byte, chat bool) {
		r, err := decodeRequest(body, chat, models, "m")
		if err != nil {
			if err.status != 400 && err.status != 404 {
				t.Fatalf("status %d for %q", err.status, body)
			}
			for _, legacy := range []bool{false, true} {
				var v map[string]any
				if jerr := json.Unmarshal(err.body(legacy), &v); jerr != nil {
					t.Fatalf("error body is not JSON: %v: %s", jerr, err.body(legacy))
				}
			}
			return
		}
		if len(r.prompts) == 0 || r.maxTokens < 0 || r.minTokens < 0 {
			t.Fatalf("bad decode %+v of %q", r, body)
		}
		if _, ok := models[r.model]; !ok {
			t.Fatalf("unknown model %q accepted", r.model)
		}
		if r.includeUsage && !r.stream {
			t.Fatalf("include_usage without stream")
		}
	})
}
