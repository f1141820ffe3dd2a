package wasmhost

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func benchBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"meta-llama/Llama-3.1-8B-Instruct","temperature":0.7,"max_completion_tokens":512,"messages":[`)
	b.WriteString(`{"role":"system","content":"You are a helpful assistant for an online shop."}`)
	turn := `,{"role":"user","content":"My order #12345 arrived with a damaged box; the manual is missing. Can you help?"},{"role":"assistant","content":"I am sorry to hear that. I can send a replacement manual or a PDF link."}`
	for b.Len()+len(turn)+2 < size {
		b.WriteString(turn)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkCycle: one request (16 KiB, in one chunk) and its 2 KiB JSON
// response through the compiled filter on this host: every callback Envoy
// makes, observability only (route_on none).
func BenchmarkCycle(b *testing.B) {
	for _, size := range []int{16 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("req%dKiB_json2KiB", size>>10), func(b *testing.B) {
			vm, err := New(context.Background(), Config{Wasm: filterWasm(b), PluginConfig: []byte(`{}`), Cache: testCache})
			if err != nil {
				b.Fatal(err)
			}
			defer vm.Close()
			body := benchBody(size)
			resp := []byte(`{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` +
				strings.Repeat("word ", 380) + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4000,"completion_tokens":400}}`)
			hdrs := [][2]string{{":method", "POST"}, {":path", "/v1/chat/completions"}, {":authority", "gw"}, {"content-type", "application/json"}}
			rh := [][2]string{{":status", "200"}, {"content-type", "application/json"}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, _ := vm.NewStream()
				_, _ = s.RequestHeaders(hdrs, false)
				for off := 0; off < len(body); off += 16 << 10 {
					end := min(off+16<<10, len(body))
					_, _, _ = s.RequestBody(body[off:end], end == len(body))
				}
				_, _ = s.ResponseHeaders(rh, false)
				_, _, _ = s.ResponseBody(resp, true)
				s.Done()
			}
		})
	}
}

// BenchmarkTokenChunk: one op is one streamed token, the SSE chunk vLLM's
// completions endpoint writes for it, through the compiled filter on a
// stream that stays open (observability only). A stream of 1,800 tokens
// pays this 1,800 times.
func BenchmarkTokenChunk(b *testing.B) {
	vm, err := New(context.Background(), Config{Wasm: filterWasm(b), PluginConfig: []byte(`{}`), Cache: testCache})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	s, _ := vm.NewStream()
	_, _ = s.RequestHeaders([][2]string{{":method", "POST"}, {":path", "/v1/completions"}, {":authority", "gw"}, {"content-type", "application/json"}}, false)
	_, _, _ = s.RequestBody([]byte(`{"model":"Qwen/Qwen2.5-7B-Instruct","prompt":"hello there","max_tokens":100000,"stream":true}`), true)
	_, _ = s.ResponseHeaders([][2]string{{":status", "200"}, {"content-type", "text/event-stream; charset=utf-8"}}, false)
	chunk := []byte(`data: {"id":"cmpl-8d3c1f0e2b7a4c9d","object":"text_completion","created":1764700000,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[{"index":0,"text":" the","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}` + "\n\n")
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := s.ResponseBody(chunk, false); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_, _, _ = s.ResponseBody([]byte("data: [DONE]\n\n"), true)
	s.Done()
}

// seedsPrompt is a completions body shaped like the seeds' random dataset:
// about 1,550 tokens of unrelated words (some 8 KB), streamed.
func seedsPrompt() []byte {
	words := []string{"river", "quantum", "basket", "lantern", "orbit", "velvet", "harbor", "cinder", "meadow", "pixel", "tundra", "saffron"}
	var b strings.Builder
	b.WriteString(`{"model":"Qwen/Qwen2.5-7B-Instruct","max_tokens":1800,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true},"prompt":"`)
	for i := 0; b.Len() < 8200; i++ {
		b.WriteString(words[(i*7+i/12)%len(words)])
		b.WriteByte(' ')
	}
	b.WriteString(`"}`)
	return []byte(b.String())
}

// BenchmarkRoutedRequest: one seeds-shaped request through the compiled
// filter, all but its token chunks (BenchmarkTokenChunk is one of those):
// headers, the 8 KB body, the response headers and the last chunk with
// usage. "none" observes only; "body" also hashes the prompt, asks the
// picker (the host answers at once) and applies the pick.
func BenchmarkRoutedRequest(b *testing.B) {
	for _, routeOn := range []string{"none", "body"} {
		b.Run("route_on="+routeOn, func(b *testing.B) {
			cfg := Config{Wasm: filterWasm(b), Cache: testCache, PluginConfig: []byte(`{}`)}
			if routeOn == "body" {
				cfg.PluginConfig = []byte(routed)
				cfg.AllowOnHeadersStopIteration = true
				cfg.Clusters = map[string]bool{"picker": true}
				cfg.Call = func(CallRequest) CallResponse {
					return CallResponse{Headers: [][2]string{{":status", "200"}},
						Body: []byte(`{"endpoint":"10.0.0.7:8000","target_model":"Qwen/Qwen2.5-7B-Instruct","strategy":"PREFIX_CACHE","pool":"p"}`)}
				}
				cfg.ForeignFunctions = map[string]func([]byte) []byte{"clear_route_cache": func([]byte) []byte { return nil }}
			}
			vm, err := New(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer vm.Close()
			body := seedsPrompt()
			hdrs := [][2]string{{":method", "POST"}, {":path", "/v1/completions"}, {":authority", "gw"}, {"content-type", "application/json"},
				{"content-length", fmt.Sprint(len(body))}}
			rh := [][2]string{{":status", "200"}, {"content-type", "text/event-stream; charset=utf-8"}}
			usage := []byte(`data: {"id":"cmpl-1","object":"text_completion","created":1764700000,"model":"Qwen/Qwen2.5-7B-Instruct","choices":[],"usage":{"prompt_tokens":1550,"total_tokens":3350,"completion_tokens":1800}}` + "\n\ndata: [DONE]\n\n")
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, _ := vm.NewStream()
				_, _ = s.RequestHeaders(hdrs, false)
				a, _, err := s.RequestBody(body, true)
				if err != nil {
					b.Fatal(err)
				}
				if a == Pause {
					if _, err := s.WaitRequest(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				_, _ = s.ResponseHeaders(rh, false)
				_, _, _ = s.ResponseBody(usage, true)
				if st := s.Done(); routeOn == "body" && st["wasm.llm_route"] != "picked" {
					b.Fatalf("route %q, want picked", st["wasm.llm_route"])
				}
			}
		})
	}
}
