package llmapi

import (
	"strings"
	"testing"
)

// chatRequest builds a realistic chat body of about size bytes: a system
// prompt, a few turns, sampling parameters.
func chatRequest(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"meta-llama/Llama-3.1-8B-Instruct","temperature":0.7,"top_p":0.95,"max_completion_tokens":512,"stream":true,"messages":[`)
	b.WriteString(`{"role":"system","content":"You are a helpful assistant for an online shop. Answer briefly and politely."}`)
	turn := `,{"role":"user","content":"My order #12345 arrived with a damaged box; the blender inside seems fine but the manual is missing. Can you help?"},{"role":"assistant","content":"I am sorry to hear that. I can send a replacement manual or a PDF link, and note the damaged packaging on your order."}`
	for b.Len()+len(turn)+2 < size {
		b.WriteString(turn)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkParseRequest16KiB(b *testing.B) {
	body := chatRequest(16 << 10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r, err := ParseRequest(body, DefaultMaxDepth)
		if err != nil || r.Model == "" {
			b.Fatal(err)
		}
	}
}

func BenchmarkInjectIncludeUsage16KiB(b *testing.B) {
	body := chatRequest(16 << 10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r, _ := ParseRequest(body, DefaultMaxDepth)
		if _, ok := r.InjectIncludeUsage(body); !ok {
			b.Fatal("not injected")
		}
	}
}

func BenchmarkObserveSSE(b *testing.B) {
	stream := fixture(b, "chat_stream_usage.sse")
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		o := NewResponseObserver("text/event-stream", "", true, testLimits)
		for j := 0; j < len(stream); j += 256 {
			o.Chunk(stream[j:min(j+256, len(stream))], j+256 >= len(stream))
		}
		if oc := o.Finish(); oc.Usage.CompletionTokens != 13 {
			b.Fatal(oc)
		}
	}
}
