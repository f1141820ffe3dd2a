package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/filter/stats"
)

func promptTokens(model, target string) string {
	return stats.Name(stats.PromptTokens, stats.Tag{Name: stats.TagModel, Value: model}, stats.Tag{Name: stats.TagTargetModel, Value: target})
}

func completionTokens(model, target string) string {
	return stats.Name(stats.CompletionTokens, stats.Tag{Name: stats.TagModel, Value: model}, stats.Tag{Name: stats.TagTargetModel, Value: target})
}

func requests(model, class string) string {
	return stats.Name(stats.Requests, stats.Tag{Name: stats.TagModel, Value: model}, stats.Tag{Name: stats.TagResponseClass, Value: class})
}

func usageMissing(reason string) string {
	return stats.Name(stats.UsageMissing, stats.Tag{Name: stats.TagReason, Value: reason})
}

func TestChatCompletion(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		req := fixture(t, "chat_request.json")
		r := run(t, host, exchange{
			reqHeaders:  llmRequest("/v1/chat/completions"),
			reqChunks:   [][]byte{req[:100], req[100:]},
			respHeaders: jsonResponse("200"),
			respChunks:  [][]byte{fixture(t, "chat_response.json")},
		})
		require.Equal(t, []types.Action{types.ActionPause, types.ActionContinue}, r.reqBodyActions, "the request body is buffered to its end")
		require.Equal(t, req, r.upstreamBody, "a non-streaming request goes upstream unchanged")
		require.Equal(t, fixture(t, "chat_response.json"), r.clientBody)

		require.Equal(t, uint64(131), counter(t, host, promptTokens("tweet-summary", "tweet-summary-1")))
		require.Equal(t, uint64(15), counter(t, host, completionTokens("tweet-summary", "tweet-summary-1")))
		require.Equal(t, uint64(1), counter(t, host, requests("tweet-summary", "2xx")))

		require.Equal(t, "tweet-summary", property(t, host, "llm_model"))
		require.Equal(t, "tweet-summary-1", property(t, host, "llm_target_model"))
		require.Equal(t, "131", property(t, host, "llm_prompt_tokens"))
		require.Equal(t, "15", property(t, host, "llm_completion_tokens"))
		require.Equal(t, "false", property(t, host, "llm_stream"))
		require.Equal(t, "128", property(t, host, "llm_max_tokens"))
		require.Equal(t, "json", property(t, host, "llm_usage_source"))
		property(t, host, "llm_ttfb_ms")
		property(t, host, "llm_duration_ms")
	})
}

// The client asked for usage itself: the stream is observed, never changed,
// wherever the chunks are cut.
func TestStreamWithClientUsageEverySplit(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		req := fixture(t, "chat_stream_usage_request.json")
		stream := fixture(t, "chat_stream_usage.sse")
		for i := 0; i <= len(stream); i++ {
			r := run(t, host, exchange{
				reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{req},
				respHeaders: sseResponse(), respChunks: [][]byte{stream[:i], stream[i:]},
			})
			require.Equal(t, req, r.upstreamBody)
			require.Equal(t, string(stream), string(r.clientBody), "split at %d", i)
		}
		n := uint64(len(stream) + 1)
		require.Equal(t, 131*n, counter(t, host, promptTokens("tweet-summary", "tweet-summary-1")))
		require.Equal(t, 13*n, counter(t, host, completionTokens("tweet-summary", "tweet-summary-1")))
		require.Equal(t, "sse", property(t, host, "llm_usage_source"))
		require.Equal(t, "true", property(t, host, "llm_stream"))
	})
}

// The client did not ask for usage: the filter asks for it upstream and
// removes the extra usage-only chunk, so the client receives exactly the
// stream it would have received, and the tokens are still counted.
func TestStreamUsageInjectedAndStrippedEverySplit(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		req := fixture(t, "chat_stream_request.json")
		upstream := fixture(t, "chat_stream_usage.sse")
		want := fixture(t, "chat_stream_no_usage.sse")
		for i := 0; i <= len(upstream); i += 3 {
			r := run(t, host, exchange{
				reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{req},
				respHeaders: append(sseResponse(), [2]string{"content-length", fmt.Sprint(len(upstream))}),
				respChunks:  [][]byte{upstream[:i], upstream[i:]},
			})
			require.True(t, gjson.GetBytes(r.upstreamBody, "stream_options.include_usage").Bool(), "include_usage injected")
			require.Equal(t, gjson.GetBytes(req, "messages").Raw, gjson.GetBytes(r.upstreamBody, "messages").Raw)
			_, hasLen := header(r.upstreamHeaders, "content-length")
			require.False(t, hasLen, "the request's content-length is dropped, the body changed size")
			_, hasLen = header(r.clientHeaders, "content-length")
			require.False(t, hasLen, "the response's content-length is dropped, the body changed size")
			require.Equal(t, string(want), string(r.clientBody), "split at %d", i)
		}
		require.Equal(t, uint64(13), counter(t, host, completionTokens("tweet-summary", "tweet-summary-1"))/uint64(len(upstream)/3+1))
	})
}

func TestStreamInjectionDisabled(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, `{"inject_stream_usage": false}`)
		req := fixture(t, "chat_stream_request.json")
		r := run(t, host, exchange{
			reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{req},
			respHeaders: sseResponse(), respChunks: [][]byte{fixture(t, "chat_stream_no_usage.sse")},
		})
		require.Equal(t, req, r.upstreamBody)
		v, _ := header(r.upstreamHeaders, "content-length")
		require.Equal(t, "100", v, "content-length kept when the body cannot change")
		// Not reported is not zero: no token counter moved, and it is said why.
		_, err := host.GetCounterMetric(promptTokens("tweet-summary", "tweet-summary-1"))
		if err == nil {
			require.Zero(t, counter(t, host, promptTokens("tweet-summary", "tweet-summary-1")))
		}
		require.Equal(t, uint64(1), counter(t, host, usageMissing("not_reported")))
		require.Equal(t, "missing:not_reported", property(t, host, "llm_usage_source"))
		noProperty(t, host, "llm_prompt_tokens")
		noProperty(t, host, "llm_completion_tokens")
	})
}

func TestCompletionsSeveralChoicesCRLF(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		stream := fixture(t, "completions_stream_usage.sse")
		var chunks [][]byte
		for i := 0; i < len(stream); i += 97 {
			chunks = append(chunks, stream[i:min(i+97, len(stream))])
		}
		r := run(t, host, exchange{
			reqHeaders: llmRequest("/v1/completions"), reqChunks: [][]byte{fixture(t, "completions_stream_request.json")},
			respHeaders: sseResponse(), respChunks: chunks,
		})
		// include_usage was injected: the client sees the stream minus the
		// usage-only chunk, every other byte intact.
		require.NotContains(t, string(r.clientBody), `"usage":{`)
		require.Equal(t, strings.Count(string(stream), "\r\n\r\n")-1, strings.Count(string(r.clientBody), "\r\n\r\n"))
		m := "meta-llama/Llama-2-7b-hf"
		require.Equal(t, uint64(9), counter(t, host, promptTokens(m, m)))
		require.Equal(t, uint64(8), counter(t, host, completionTokens(m, m)))
	})
}

func TestEmbeddingsReportNoCompletion(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		run(t, host, exchange{
			reqHeaders: llmRequest("/v1/embeddings"), reqChunks: [][]byte{fixture(t, "embeddings_request.json")},
			respHeaders: jsonResponse("200"), respChunks: [][]byte{fixture(t, "embeddings_response.json")},
		})
		m := "e5-mistral-7b-instruct"
		require.Equal(t, uint64(12), counter(t, host, promptTokens(m, m)))
		require.Zero(t, counter(t, host, completionTokens(m, m)))
		require.Equal(t, "12", property(t, host, "llm_prompt_tokens"))
		noProperty(t, host, "llm_completion_tokens")
	})
}

func TestErrorResponses(t *testing.T) {
	for _, tc := range []struct{ file, status, class, errType string }{
		{"error_new.json", "404", "4xx", "NotFoundError"},
		{"error_old.json", "400", "4xx", "BadRequestError"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				host := startHost(t, vm, "")
				run(t, host, exchange{
					reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{fixture(t, "chat_request.json")},
					respHeaders: jsonResponse(tc.status), respChunks: [][]byte{fixture(t, tc.file)},
				})
				require.Equal(t, uint64(1), counter(t, host, requests("tweet-summary", tc.class)))
				require.Equal(t, tc.errType, property(t, host, "llm_error_type"))
				require.Equal(t, "none", property(t, host, "llm_usage_source"))
				_, err := host.GetCounterMetric(usageMissing("not_reported"))
				require.Error(t, err, "an error response is not expected to report usage")
			})
		})
	}
}

func TestMissingUsageIsNotZero(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		run(t, host, exchange{
			reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{fixture(t, "chat_request.json")},
			respHeaders: jsonResponse("200"), respChunks: [][]byte{fixture(t, "chat_response_no_usage.json")},
		})
		require.Equal(t, uint64(1), counter(t, host, usageMissing("not_reported")))
		require.Zero(t, counter(t, host, promptTokens("tweet-summary", "tweet-summary-1")))
		noProperty(t, host, "llm_prompt_tokens")
	})
}

func TestCompressedResponses(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(fixture(t, "chat_response.json"))
	require.NoError(t, zw.Close())
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		r := run(t, host, exchange{
			reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{fixture(t, "chat_request.json")},
			respHeaders: jsonResponse("200", [2]string{"content-encoding", "gzip"}),
			respChunks:  [][]byte{gz.Bytes()[:50], gz.Bytes()[50:]},
		})
		require.Equal(t, gz.Bytes(), r.clientBody, "the encoded body passes unchanged")
		require.Equal(t, uint64(15), counter(t, host, completionTokens("tweet-summary", "tweet-summary-1")), "gzip JSON is decoded for usage")

		run(t, host, exchange{
			reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{fixture(t, "chat_request.json")},
			respHeaders: jsonResponse("200", [2]string{"content-encoding", "br"}), respChunks: [][]byte{{0x1b, 0x2, 0x3}},
		})
		require.Equal(t, uint64(1), counter(t, host, usageMissing("encoded")), "brotli is counted as usage missing")
	})
}

func TestNonLLMTrafficUntouched(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		for _, hs := range [][][2]string{
			{{":method", "GET"}, {":path", "/v1/models"}},
			{{":method", "POST"}, {":path", "/v1/chat/completions"}, {"content-type", "text/plain"}},
			{{":method", "POST"}, {":path", "/upload"}, {"content-type", "application/json"}},
			{{":method", "PUT"}, {":path", "/v1/completions"}, {"content-type", "application/json"}},
		} {
			r := run(t, host, exchange{
				reqHeaders: hs, reqChunks: [][]byte{[]byte(`{"model":"x"}`), []byte(`more`)},
				respHeaders: jsonResponse("200"), respChunks: [][]byte{fixture(t, "chat_response.json")},
			})
			require.Equal(t, []types.Action{types.ActionContinue, types.ActionContinue}, r.reqBodyActions, "never buffered: %v", hs)
		}
		require.Zero(t, definedMetrics(t, host)-1, "only the overflow counter exists: %v", definedMetricNames(t, host))
	})
}

// A client-supplied routing header would let the client pick any upstream
// address: it is removed from every request, LLM or not.
func TestSpoofedDestinationHeaderRemoved(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		spoof := [2]string{"x-gateway-destination-endpoint", "169.254.169.254:80"}
		for _, ex := range []exchange{
			{reqHeaders: llmRequest("/v1/chat/completions", spoof), reqChunks: [][]byte{fixture(t, "chat_request.json")}},
			{reqHeaders: [][2]string{{":method", "GET"}, {":path", "/"}, spoof}},
			{reqHeaders: [][2]string{{":method", "POST"}, {":path", "/x"}, spoof}, reqChunks: [][]byte{[]byte("x")}},
		} {
			r := run(t, host, ex)
			_, ok := header(r.upstreamHeaders, "x-gateway-destination-endpoint")
			require.False(t, ok)
		}
	})
}

func TestOversizeAndMalformedRequests(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, `{"max_request_body_bytes": 1024}`)
		big := []byte(`{"model":"m","prompt":"` + strings.Repeat("x", 2000) + `"}`)
		r := run(t, host, exchange{
			reqHeaders: llmRequest("/v1/completions"), reqChunks: [][]byte{big[:600], big[600:1200], big[1200:]},
			respHeaders: jsonResponse("200"), respChunks: [][]byte{fixture(t, "chat_response.json")},
		})
		require.Equal(t, []types.Action{types.ActionPause, types.ActionContinue, types.ActionContinue}, r.reqBodyActions)
		require.Equal(t, big, r.upstreamBody, "an oversize body passes through whole, unparsed")
		require.Equal(t, uint64(1), counter(t, host, stats.Name(stats.OversizeBodies, stats.Tag{Name: stats.TagPhase, Value: "request"})))
		// The response is still observed; the model is unknown.
		require.Equal(t, uint64(131), counter(t, host, promptTokens("unknown", "tweet-summary-1")))

		bad := []byte(`{"model":"m", "prompt": `)
		r = run(t, host, exchange{
			reqHeaders: llmRequest("/v1/completions"), reqChunks: [][]byte{bad},
			respHeaders: jsonResponse("400"), respChunks: [][]byte{fixture(t, "error_new.json")},
		})
		require.Equal(t, bad, r.upstreamBody, "a malformed body goes upstream untouched (vLLM answers it)")
		require.Equal(t, uint64(1), counter(t, host, stats.Name(stats.ParseErrors, stats.Tag{Name: stats.TagPhase, Value: "request"})))
		require.Equal(t, uint64(1), counter(t, host, requests("unknown", "4xx")))

		// No model at all: parsed, counted as a parse error, still observed.
		run(t, host, exchange{reqHeaders: llmRequest("/v1/completions"), reqChunks: [][]byte{[]byte(`{"prompt":"x"}`)}})
		require.Equal(t, uint64(2), counter(t, host, stats.Name(stats.ParseErrors, stats.Tag{Name: stats.TagPhase, Value: "request"})))
	})
}

// A request that ends without a response (client reset, upstream timeout) is
// still counted, as response class "none".
func TestStreamResetCounted(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		stream := fixture(t, "chat_stream_usage.sse")
		run(t, host, exchange{reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{fixture(t, "chat_request.json")}})
		require.Equal(t, uint64(1), counter(t, host, requests("tweet-summary", "none")))

		// The stream breaks off mid-way: the response class is known, usage is not.
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, llmRequest("/v1/chat/completions"), false)
		host.CallOnRequestBody(id, fixture(t, "chat_stream_usage_request.json"), true)
		host.CallOnResponseHeaders(id, sseResponse(), false)
		host.CallOnResponseBody(id, stream[:300], false)
		host.CompleteHttpContext(id)
		require.Equal(t, uint64(1), counter(t, host, requests("tweet-summary", "2xx")))
		require.Equal(t, uint64(1), counter(t, host, usageMissing("not_reported")))
	})
}

func TestInvalidConfigFailsStart(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		for _, cfg := range []string{`{"bogus": 1}`, `{"max_request_body_bytes": "big"}`, `not json`} {
			opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte(cfg))
			host, reset := proxytest.NewHostEmulator(opt)
			require.Equal(t, types.OnPluginStartStatusFailed, host.StartPlugin(), cfg)
			logs := strings.Join(host.GetCriticalLogs(), "\n")
			require.Contains(t, logs, "invalid pluginConfig", cfg)
			reset()
		}
	})
}

func TestModelAllowlist(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, `{"model_allowlist":["tweet-summary","tweet-summary-1"]}`)
		for _, model := range []string{"tweet-summary", "evil-1", "evil-2"} {
			req := []byte(`{"model":"` + model + `","messages":[]}`)
			run(t, host, exchange{
				reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{req},
				respHeaders: jsonResponse("200"), respChunks: [][]byte{fixture(t, "chat_response.json")},
			})
		}
		require.Equal(t, uint64(131), counter(t, host, promptTokens("tweet-summary", "tweet-summary-1")))
		require.Equal(t, uint64(262), counter(t, host, promptTokens("other", "tweet-summary-1")))
		require.Equal(t, uint64(2), counter(t, host, stats.LabelOverflow))
	})
}
