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
