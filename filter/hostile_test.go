package main

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/pickapi"
)

// Hostile clients and a hostile (or broken) picker: nothing here may trap
// the VM, hang a request, route where the client says or grow memory for
// good. Every case runs natively and on the compiled wasm.

func deepBodies(t *testing.T) map[string][]byte {
	return map[string][]byte{
		"520 KB of [":          bytes.Repeat([]byte("["), 520<<10),
		"deep messages":        []byte(`{"model":"m","stream":true,"messages":` + strings.Repeat("[", 300<<10) + strings.Repeat("]", 300<<10) + `}`),
		"deep unclosed object": []byte(`{"model":"m","x":` + strings.Repeat(`{"a":`, 100<<10)),
		"just past the limit":  []byte(`{"model":"m","messages":` + strings.Repeat("[", 128) + strings.Repeat("]", 128) + `}`),
	}
}

func deepDepthBodyRequest(t *testing.T, mode string) string {
	return `{"picker_cluster":"picker","picker_authority":"picker.local","pool":"pool-a","route_on":"` + mode + `"}`
}

// A body nested past max_json_depth goes upstream untouched and unrouted,
// and is counted, in every route_on mode.
func TestDeepRequestBodies(t *testing.T) {
	for _, mode := range []string{"body", "headers", "none"} {
		t.Run(mode, func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				host, _ := routedHost(t, vm, deepDepthBodyRequest(t, mode))
				n := 0
				for name, body := range deepBodies(t) {
					n++
					r := startEnvoyRequest(t, host, true, llmRequest("/v1/chat/completions"), body)
					if calls := host.GetCalloutAttributesFromContext(r.id); len(calls) > 0 {
						require.Equal(t, "headers", mode, "%s: no pick for a body that was not read", name)
						answer(host, calls[0], 200, `{"endpoint":"10.0.0.7:8000","pool":"pool-a"}`)
						r.after("pick answer")
					}
					require.True(t, r.gone, name)
					require.Equal(t, len(body), len(host.GetCurrentRequestBody(r.id)), name)
					require.True(t, bytes.Equal(body, host.GetCurrentRequestBody(r.id)), "%s: passed on untouched", name)
					host.CallOnResponseHeaders(r.id, jsonResponse("400"), false)
					host.CallOnResponseBody(r.id, []byte(`{"error":{"type":"BadRequestError"}}`), true)
					host.CompleteHttpContext(r.id)
					deleteContext(t, r.id)
					require.Equal(t, "too_deep", property(t, host, stats.StateRequestBody), name)
				}
				require.Equal(t, uint64(n), counter(t, host, stats.Name(stats.DeepBodies, stats.Tag{Name: stats.TagPhase, Value: "request"})))
				if mode == "body" {
					require.Equal(t, uint64(n), counter(t, host, picks("skipped")))
				}
				require.Empty(t, host.GetErrorLogs(), "no recovered panics either")
			})
		})
	}
}

// Deep JSON responses and SSE events are not read, counted, and passed on.
func TestDeepResponses(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		deep := `{"usage":` + strings.Repeat("[", 400<<10) + `}`
		r := run(t, host, exchange{
			reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{fixture(t, "chat_request.json")},
			respHeaders: jsonResponse("200"), respChunks: [][]byte{[]byte(deep[:1000]), []byte(deep[1000:])},
		})
		require.Equal(t, deep, string(r.clientBody))
		require.Equal(t, "missing:too_deep", property(t, host, stats.StateUsageSource))
		require.Equal(t, uint64(1), counter(t, host, usageMissing("too_deep")))

		event := "data: " + strings.Repeat(`{"a":`, 100<<10) + "\n\n"
		stream := append([]byte(event), fixture(t, "chat_stream_usage.sse")...)
		r = run(t, host, exchange{
			reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{fixture(t, "chat_stream_usage_request.json")},
			respHeaders: sseResponse(), respChunks: [][]byte{stream[:5000], stream[5000:]},
		})
		require.Equal(t, string(stream), string(r.clientBody))
		require.Equal(t, uint64(1), counter(t, host, stats.Name(stats.DeepBodies, stats.Tag{Name: stats.TagPhase, Value: "response_event"})))
		require.Equal(t, uint64(131), counter(t, host, promptTokens("tweet-summary", "tweet-summary-1")), "the rest of the stream is still counted")
	})
}

// A picker answer that is huge or deeply nested is not read (the huge one
// never enters the VM): the request fails open.
func TestHostilePickAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		body         []byte
	}{
		{"32 MiB", "oversize", []byte(`{"endpoint":"10.0.0.7:8000","pool":"` + strings.Repeat("p", 32<<20) + `"}`)},
		{"deep", "garbage", []byte(`{"endpoint":"10.0.0.7:8000","fallbacks":` + strings.Repeat("[", 8000) + `}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				host, _ := routedHost(t, vm, bodyRouting)
				before := 0
				if _, ok := vm.(*vmContext); !ok {
					before = wasmMemoryBytes(t, vm)
				}
				id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
				answer(host, call, 200, string(tc.body))
				require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
				_, has := header(host.GetCurrentRequestHeaders(id), pickapi.HeaderDestinationEndpoint)
				require.False(t, has)
				require.Equal(t, uint64(1), counter(t, host, pickerErrors(tc.reason)))
				if before > 0 {
					require.LessOrEqual(t, wasmMemoryBytes(t, vm)-before, 1<<20, "the answer was not copied into the VM")
				}
				host.CompleteHttpContext(id)
				deleteContext(t, id)
			})
		})
	}
}

// After any single hostile body, linear memory stays within a few MiB of
// its steady state.
func TestMemoryAfterHostileBodies(t *testing.T) {
	vm := newWasmVM(t)
	host, _ := routedHost(t, vm, deepDepthBodyRequest(t, "body"))
	normal := func() {
		r := startEnvoyRequest(t, host, true, llmRequest("/v1/chat/completions"), fixture(t, "chat_stream_request.json"))
		calls := host.GetCalloutAttributesFromContext(r.id)
		require.Len(t, calls, 1)
		answer(host, calls[0], 200, `{"endpoint":"10.0.0.7:8000","target_model":"tweet-summary-2","pool":"pool-a"}`)
		r.after("pick answer")
		host.CallOnResponseHeaders(r.id, sseResponse(), false)
		host.CallOnResponseBody(r.id, fixture(t, "chat_stream_usage.sse"), true)
		host.CompleteHttpContext(r.id)
		deleteContext(t, r.id)
	}
	for range 200 {
		normal()
	}
	// Steady state includes one honest body at the 4 MiB cap: copying a
	// body that size into the VM is what any gateway with that cap pays.
	// Interleaved with small requests, a few of them, until the heap has
	// found its size.
	big := []byte(`{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", (4<<20)-100) + `"}]}`)
	for i := range 4 {
		r := startEnvoyRequest(t, host, true, llmRequest("/v1/chat/completions"), big)
		answer(host, host.GetCalloutAttributesFromContext(r.id)[0], 200, `{"endpoint":"10.0.0.7:8000","pool":"pool-a"}`)
		r.after("pick answer")
		host.CompleteHttpContext(r.id)
		deleteContext(t, r.id)
		for range 20 {
			normal()
		}
		t.Logf("honest 4 MiB body %d: linear memory %d KiB", i+1, wasmMemoryBytes(t, vm)>>10)
	}
	steady := wasmMemoryBytes(t, vm)
	t.Logf("steady state: %d KiB", steady>>10)
	hostile := deepBodies(t)
	hostile["4 MiB of {\"a\":"] = []byte(strings.Repeat(`{"a":`, (4<<20)/5-10))
	for name, body := range hostile {
		r := startEnvoyRequest(t, host, true, llmRequest("/v1/chat/completions"), body)
		require.True(t, r.gone, name)
		host.CompleteHttpContext(r.id)
		deleteContext(t, r.id)
		for range 20 {
			normal()
		}
		grown := wasmMemoryBytes(t, vm) - steady
		t.Logf("after %s (%d KiB): linear memory %d KiB (steady %d KiB, +%d KiB)", name, len(body)>>10,
			wasmMemoryBytes(t, vm)>>10, steady>>10, grown>>10)
		// A body is copied into the VM once (and, large, may need fresh
		// pages of the Go heap); the reader adds nothing that scales with
		// depth. Before jsonscan a 200 KB nested body added 64 MiB.
		require.LessOrEqual(t, grown, len(body)+2<<20, "%s grew linear memory by %d KiB", name, grown>>10)
	}
	require.LessOrEqual(t, wasmMemoryBytes(t, vm)-steady, 4<<20+2<<20, "hostile bodies do not add up")
	runtime.KeepAlive(vm)
}

// {"model":"base","model":"chat-model"}: vLLM serves the last one, so the
// pick, the rewrite and the metrics all use it.
func TestDuplicateModelKey(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		body := []byte(`{"model":"base","messages":[{"role":"user","content":"hi"}],"model":"chat-model"}`)
		id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), body)
		pr, err := pickapi.ParsePickRequest(call.Body)
		require.NoError(t, err)
		require.Equal(t, "chat-model", pr.Model)
		answer(host, call, 200, `{"endpoint":"10.0.0.7:8000","target_model":"sql-lora-1","pool":"pool-a"}`)
		sent := string(host.GetCurrentRequestBody(id))
		require.Equal(t, `{"model":"base","messages":[{"role":"user","content":"hi"}],"model":"sql-lora-1"}`, sent)
		host.CallOnResponseHeaders(id, jsonResponse("200"), false)
		host.CallOnResponseBody(id, fixture(t, "chat_response.json"), true)
		host.CompleteHttpContext(id)
		deleteContext(t, id)
		require.Equal(t, uint64(131), counter(t, host, promptTokens("chat-model", "sql-lora-1")))
		require.Equal(t, "chat-model", property(t, host, stats.StateModel))
	})
}

// Streams vLLM streams are counted however the client spells "stream".
func TestLaxStreamFlagsCounted(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		stream := fixture(t, "chat_stream_usage.sse")
		withoutUsage := stripUsageChunk(t, stream)
		for i, body := range []string{
			`{"model":"tweet-summary","stream":"true","messages":[]}`,
			`{"model":"tweet-summary","stream":1,"messages":[]}`,
			`{"model":"tweet-summary","stream":true,"stream_options":{"include_usage":true},"stream_options":null}`,
			`{"model":"tweet-summary","stream":"yes","stream_options":{"include_usage":true,"include_usage":false}}`,
		} {
			r := run(t, host, exchange{
				reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{[]byte(body)},
				respHeaders: sseResponse(), respChunks: [][]byte{stream},
			})
			require.True(t, gjson.GetBytes(r.upstreamBody, "stream_options.include_usage").Bool(), "%d: include_usage injected: %s", i, r.upstreamBody)
			require.Equal(t, string(withoutUsage), string(r.clientBody), "%d: the client gets what it asked for", i)
			require.Equal(t, "sse", property(t, host, stats.StateUsageSource), "%d", i)
			require.Equal(t, uint64(13*(i+1)), counter(t, host, completionTokens("tweet-summary", "tweet-summary-1")), "%d", i)
		}
	})
}

// stripUsageChunk removes the usage-only event from an SSE fixture.
func stripUsageChunk(t *testing.T, stream []byte) []byte {
	var out []byte
	for _, ev := range bytes.SplitAfter(stream, []byte("\n\n")) {
		if bytes.Contains(ev, []byte(`"choices":[]`)) {
			continue
		}
		out = append(out, ev...)
	}
	require.Less(t, len(out), len(stream), "the fixture has a usage chunk")
	return out
}

// Access-log fields are printable and bounded: a newline in a model name
// cannot forge a log line, and a 1 MiB name is not logged whole.
func TestAccessLogValuesSafe(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, "")
		for _, tc := range []struct{ model, logged string }{
			{"m\n[01/Dec/2026] \"GET /admin\" 200", `m\x0a[01/Dec/2026] "GET /admin" 200`},
			{strings.Repeat("x", 1<<20), strings.Repeat("x", stats.MaxStateLen-3) + "..."},
		} {
			body, _ := fmtJSON(`{"model":%q,"prompt":"hi"}`, tc.model)
			run(t, host, exchange{reqHeaders: llmRequest("/v1/completions"), reqChunks: [][]byte{body},
				respHeaders: jsonResponse("200"), respChunks: [][]byte{fixture(t, "chat_response.json")}})
			require.Equal(t, tc.logged, property(t, host, stats.StateModel))
		}
	})
}

func fmtJSON(format string, args ...any) ([]byte, error) {
	return []byte(fmt.Sprintf(format, args...)), nil
}

// endpoint_cidrs: a picker (compromised, or misconfigured) that names an
// address outside the pool's networks does not route anything there, nor
// does the fallback cache.
func TestEndpointAllowlist(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, strings.Replace(bodyRouting, "{", `{"endpoint_cidrs":["10.0.0.0/16"],`, 1))
		for _, ep := range []string{"169.254.169.254:80", "127.0.0.1:15000", "10.1.0.1:8000"} {
			id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
			answer(host, call, 200, `{"endpoint":"`+ep+`","pool":"pool-a","fallbacks":["10.0.0.2:8000"]}`)
			require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
			_, has := header(host.GetCurrentRequestHeaders(id), pickapi.HeaderDestinationEndpoint)
			require.False(t, has, ep)
		}
		require.Equal(t, uint64(3), counter(t, host, pickerErrors("endpoint_not_allowed")))
		id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
		answer(host, call, 200, `{"endpoint":"10.0.3.3:8000","pool":"pool-a","fallbacks":["192.168.0.1:8000","10.0.0.2:8000"]}`)
		ep, _ := header(host.GetCurrentRequestHeaders(id), pickapi.HeaderDestinationEndpoint)
		require.Equal(t, "10.0.3.3:8000", ep)
		// Picker down: only allowed cached endpoints are used.
		for range 4 {
			id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
			host.CallOnHttpCallResponse(call.CalloutID, nil, nil, nil)
			ep, _ := header(host.GetCurrentRequestHeaders(id), pickapi.HeaderDestinationEndpoint)
			require.Contains(t, []string{"10.0.3.3:8000", "10.0.0.2:8000"}, ep)
		}
	})
}
