package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func benchChatRequest(size int, stream bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"model":"meta-llama/Llama-3.1-8B-Instruct","temperature":0.7,"max_completion_tokens":512,"stream":%v,"messages":[`, stream)
	b.WriteString(`{"role":"system","content":"You are a helpful assistant for an online shop."}`)
	turn := `,{"role":"user","content":"My order #12345 arrived with a damaged box; the manual is missing. Can you help?"},{"role":"assistant","content":"I am sorry to hear that. I can send a replacement manual or a PDF link."}`
	for b.Len()+len(turn)+2 < size {
		b.WriteString(turn)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func benchJSONResponse(size int) []byte {
	content := strings.Repeat("word ", (size-300)/5)
	return []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1763700000,"model":"meta-llama/Llama-3.1-8B-Instruct",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"` + content + `"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":4000,"completion_tokens":400,"total_tokens":4400}}`)
}

// benchSSE builds a vLLM-style stream of about size bytes, with usage.
func benchSSE(size int) []byte {
	var b bytes.Buffer
	chunk := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1763700000,"model":"m","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}]}` + "\n\n"
	for b.Len()+len(chunk) < size-200 {
		b.WriteString(chunk)
	}
	b.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1763700000,"model":"m","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5000,"total_tokens":5010}}` + "\n\ndata: [DONE]\n\n")
	return b.Bytes()
}

// split cuts b into pieces of n bytes, as Envoy would deliver them.
func split(b []byte, n int) [][]byte {
	var out [][]byte
	for i := 0; i < len(b); i += n {
		out = append(out, b[i:min(i+n, len(b))])
	}
	return out
}

// BenchmarkCycle is one request and its response through the filter: the
// whole set of callbacks Envoy makes, with the body in 16 KiB pieces.
func BenchmarkCycle(b *testing.B) {
	cases := []struct {
		name string
		ex   exchange
	}{
		{"req16KiB_json2KiB", exchange{
			reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: split(benchChatRequest(16<<10, false), 16<<10),
			respHeaders: jsonResponse("200"), respChunks: [][]byte{benchJSONResponse(2 << 10)},
		}},
		{"req256KiB_json2KiB", exchange{
			reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: split(benchChatRequest(256<<10, false), 16<<10),
			respHeaders: jsonResponse("200"), respChunks: [][]byte{benchJSONResponse(2 << 10)},
		}},
		{"req16KiB_sse1MiB", exchange{
			reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: split(benchChatRequest(16<<10, true), 16<<10),
			respHeaders: sseResponse(), respChunks: split(benchSSE(1<<20), 4<<10),
		}},
	}
	for _, mode := range []string{"native", "wasm"} {
		for _, c := range cases {
			b.Run(mode+"/"+c.name, func(b *testing.B) {
				var vm types.VMContext = &vmContext{}
				if mode == "wasm" {
					vm = wasmVM(b)
				}
				host := startHost(b, vm, "")
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					run(b, host, c.ex)
				}
			})
		}
	}
}
