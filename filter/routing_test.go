package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/pickapi"
)

const bodyRouting = `{"route_on":"body","picker_cluster":"picker","picker_authority":"picker.local","pool":"pool-a","picker_timeout_ms":70}`

// routedHost starts a host with routing configured and counts calls to
// Envoy's clear_route_cache foreign function (the emulator aborts on an
// unregistered one, as a reminder that Envoy must provide it).
func routedHost(t *testing.T, vm types.VMContext, config string) (proxytest.HostEmulator, *int) {
	host := startHost(t, vm, config)
	cleared := new(int)
	host.RegisterForeignFunction("clear_route_cache", func([]byte) []byte { *cleared++; return []byte{0} })
	return host, cleared
}

func picks(outcome string) string {
	return stats.Name(stats.Picks, stats.Tag{Name: stats.TagOutcome, Value: outcome})
}

func pickerErrors(reason string) string {
	return stats.Name(stats.PickerErrors, stats.Tag{Name: stats.TagReason, Value: reason})
}

// startRouted drives a request up to its pick in body mode and returns the
// stream and the pick call the filter made.
func startRouted(t *testing.T, host proxytest.HostEmulator, headers [][2]string, body []byte) (uint32, proxytest.HttpCalloutAttribute) {
	t.Helper()
	id := host.InitializeHttpContext()
	require.Equal(t, types.ActionPause, host.CallOnRequestHeaders(id, headers, false), "headers are held for the body")
	require.Equal(t, types.ActionPause, host.CallOnRequestBody(id, body, true), "the body is held for the pick")
	calls := host.GetCalloutAttributesFromContext(id)
	require.Len(t, calls, 1)
	c := calls[0]
	c.Body = append([]byte(nil), c.Body...) // the emulator's copy points into VM memory
	return id, c
}

func answer(host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute, status int, body string) {
	host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", fmt.Sprint(status)}, {"content-type", "application/json"}}, nil, []byte(body))
}

func TestRouteOnBodyPick(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, cleared := routedHost(t, vm, bodyRouting)
		req := fixture(t, "chat_request.json")
		id, call := startRouted(t, host, llmRequest("/v1/chat/completions", [2]string{"content-length", fmt.Sprint(len(req))}), req)

		// The pick call: to the configured cluster, with what Envoy requires.
		require.Equal(t, "picker", call.Upstream)
		for _, h := range [][2]string{{":method", "POST"}, {":path", "/v1/pick"}, {":authority", "picker.local"}} {
			v, ok := header(call.Headers, h[0])
			require.True(t, ok, h[0])
			require.Equal(t, h[1], v)
		}
		pr, err := pickapi.ParsePickRequest(call.Body)
		require.NoError(t, err, string(call.Body))
		require.Equal(t, "pool-a", pr.Pool)
		require.Equal(t, "tweet-summary", pr.Model)
		want := pickapi.PrefixHashes(nil, "tweet-summary", []byte(gjson.GetBytes(req, "messages").Raw))
		require.NotEmpty(t, want)
		require.Equal(t, want, pr.PrefixHashes, "prefix hashes from the reference implementation")

		answer(host, call, 200, `{"endpoint":"10.1.2.3:8000","target_model":"tweet-summary-2","strategy":"PREFIX_CACHE","pool":"pool-a","fallbacks":["10.1.2.4:8000"]}`)
		require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id), "resumed after the pick")
		hs := host.GetCurrentRequestHeaders(id)
		ep, _ := header(hs, pickapi.HeaderDestinationEndpoint)
		require.Equal(t, "10.1.2.3:8000", ep)
		body := append([]byte(nil), host.GetCurrentRequestBody(id)...)
		require.Equal(t, "tweet-summary-2", gjson.GetBytes(body, "model").Str, "model rewritten to the target")
		require.Equal(t, gjson.GetBytes(req, "messages").Raw, gjson.GetBytes(body, "messages").Raw)
		cl, _ := header(hs, "content-length")
		require.Equal(t, fmt.Sprint(len(body)), cl, "content-length follows the rewrite")
		require.Equal(t, 1, *cleared, "route cache cleared after the header changed")

		host.CallOnResponseHeaders(id, jsonResponse("200"), false)
		host.CallOnResponseBody(id, fixture(t, "chat_response.json"), true)
		host.CompleteHttpContext(id)
		deleteContext(t, id)

		require.Equal(t, uint64(1), counter(t, host, picks("picked")))
		require.Equal(t, uint64(131), counter(t, host, promptTokens("tweet-summary", "tweet-summary-2")), "target_model is the picker's choice")
		require.Equal(t, "10.1.2.3:8000", property(t, host, stats.StateEndpoint))
		require.Equal(t, "picked", property(t, host, stats.StateRoute))
		require.Equal(t, "PREFIX_CACHE", property(t, host, stats.StateStrategy))
		require.Equal(t, "tweet-summary-2", property(t, host, stats.StateTargetModel))
		property(t, host, stats.StatePickMillis)
	})
}

// A request's end is reported on the VM's next pick with the id its pick
// was given; a pick without an id (an older picker) is never reported,
// and a refused request never had a pick to report.
func TestRouteReportsEndsOnTheNextPick(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		req := fixture(t, "chat_request.json")
		pickOnce := func(pickAnswer string) pickapi.PickRequest {
			id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), req)
			pr, err := pickapi.ParsePickRequest(call.Body)
			require.NoError(t, err, string(call.Body))
			answer(host, call, 200, pickAnswer)
			host.CallOnResponseHeaders(id, jsonResponse("200"), false)
			host.CallOnResponseBody(id, fixture(t, "chat_response.json"), true)
			host.CompleteHttpContext(id)
			deleteContext(t, id)
			return pr
		}
		require.Empty(t, pickOnce(`{"endpoint":"10.1.2.3:8000","pick_id":41}`).Done)
		require.Equal(t, []uint64{41}, pickOnce(`{"endpoint":"10.1.2.3:8000","pick_id":9223372036854775807}`).Done)
		require.Equal(t, []uint64{9223372036854775807}, pickOnce(`{"endpoint":"10.1.2.3:8000"}`).Done)

		// Refused, then a client that goes away mid-response: only the
		// second had a pick, and it is reported.
		id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), req)
		answer(host, call, 429, string(pickapi.ErrorBody(429, pickapi.ErrTypeRateLimited, "busy")))
		host.CompleteHttpContext(id)
		id, call = startRouted(t, host, llmRequest("/v1/chat/completions"), req)
		pr, err := pickapi.ParsePickRequest(call.Body)
		require.NoError(t, err)
		require.Empty(t, pr.Done, "the answer without an id and the refusal report nothing")
		answer(host, call, 200, `{"endpoint":"10.1.2.3:8000","pick_id":7}`)
		host.CallOnResponseHeaders(id, sseResponse(), false)
		host.CompleteHttpContext(id)
		require.Equal(t, []uint64{7}, pickOnce(`{"endpoint":"10.1.2.3:8000"}`).Done)
	})
}

// The objective header is forwarded once the picker has shown (with a
// pick_id) that it reads the field; the first of the upstream's names wins.
func TestRouteForwardsObjective(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		req := fixture(t, "chat_request.json")
		pickWith := func(headers [][2]string, pickAnswer string) pickapi.PickRequest {
			id, call := startRouted(t, host, llmRequest("/v1/chat/completions", headers...), req)
			pr, err := pickapi.ParsePickRequest(call.Body)
			require.NoError(t, err, string(call.Body))
			answer(host, call, 200, pickAnswer)
			host.CompleteHttpContext(id)
			return pr
		}
		batch := [][2]string{{"x-gateway-inference-objective", "batch"}}
		require.Empty(t, pickWith(batch, `{"endpoint":"10.1.2.3:8000"}`).Objective, "an older picker would refuse the field")
		require.Empty(t, pickWith(batch, `{"endpoint":"10.1.2.3:8000","pick_id":5}`).Objective, "still unknown when this pick was sent")
		require.Equal(t, "batch", pickWith(batch, `{"endpoint":"10.1.2.3:8000","pick_id":6}`).Objective)
		require.Equal(t, "new", pickWith([][2]string{{"x-gateway-inference-objective", "old"},
			{"x-llm-d-router-inference-objective", "new"}}, `{"endpoint":"10.1.2.3:8000"}`).Objective)
		require.Empty(t, pickWith([][2]string{{"x-gateway-inference-objective", strings.Repeat("o", pickapi.MaxNameLen+1)}},
			`{"endpoint":"10.1.2.3:8000"}`).Objective, "too long to name an object: none")
		require.Empty(t, pickWith(nil, `{"endpoint":"10.1.2.3:8000"}`).Objective)
	})
}

// max_tokens, the ends' completion tokens and the explanation request go
// only to a picker that said it reads them (api 2): an older one would
// refuse the pick. A 400 from the picker (a rollback) stops them again.
func TestRouteSendsLevelTwoFieldsToAPickerThatReadsThem(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		req := fixture(t, "chat_request.json") // max_completion_tokens 128; the response reports 15 completion tokens
		explain := [2]string{pickapi.HeaderExplain, "1"}
		pickOnce := func(status int, pickAnswer string) pickapi.PickRequest {
			id, call := startRouted(t, host, llmRequest("/v1/chat/completions", explain), req)
			pr, err := pickapi.ParsePickRequest(call.Body)
			require.NoError(t, err, string(call.Body))
			answer(host, call, status, pickAnswer)
			if status == 200 {
				host.CallOnResponseHeaders(id, jsonResponse("200"), false)
				host.CallOnResponseBody(id, fixture(t, "chat_response.json"), true)
			}
			host.CompleteHttpContext(id)
			deleteContext(t, id)
			return pr
		}
		pr := pickOnce(200, `{"endpoint":"10.1.2.3:8000","pick_id":1}`)
		require.Zero(t, pr.MaxTokens, "no level yet")
		require.False(t, pr.Explain)
		pr = pickOnce(200, `{"endpoint":"10.1.2.3:8000","pick_id":2,"api":2}`)
		require.Zero(t, pr.MaxTokens, "sent before the picker said 2")
		require.Equal(t, []uint64{1}, pr.Done)
		require.Nil(t, pr.DoneTokens)
		pr = pickOnce(200, `{"endpoint":"10.1.2.3:8000","pick_id":3,"api":2}`)
		require.Equal(t, 128, pr.MaxTokens)
		require.True(t, pr.Explain)
		require.Equal(t, []uint64{2}, pr.Done)
		require.Equal(t, []int{15}, pr.DoneTokens, "the end carries the response's completion tokens")

		// The refused pick carried end 3 (lost: the pod's scrapes show it
		// a moment later).
		require.Equal(t, []uint64{3}, pickOnce(400, string(pickapi.ErrorBody(400, pickapi.ErrTypeBadRequest, `unknown field "max_tokens"`))).Done)
		pr = pickOnce(200, `{"endpoint":"10.1.2.3:8000","pick_id":4}`)
		require.Zero(t, pr.MaxTokens, "after a 400 the newer fields stop")
		require.False(t, pr.Explain)
		pr = pickOnce(200, `{"endpoint":"10.1.2.3:8000","pick_id":5}`)
		require.Equal(t, []uint64{4}, pr.Done)
		require.Nil(t, pr.DoneTokens)
	})
}

// A request with the explain header gets the picker's explanation in the
// access log; in a response header only where the configuration says so,
// and only if it is printable.
func TestRouteExplainsAPick(t *testing.T) {
	const why = "LATENCY 10.1.2.3:8000 ttft=120ms total=10.00 predicted_ttft=1.00"
	for _, tc := range []struct {
		explain   string // pick_explain ("" the default)
		asked     bool
		answerWhy string
		logged    string
		header    string
	}{
		{explain: "", asked: true, answerWhy: why, logged: why},
		{explain: "header", asked: true, answerWhy: why, logged: why, header: why},
		{explain: "header", asked: false, answerWhy: why},
		{explain: "header", asked: true, answerWhy: "a\r\nx-evil: 1", logged: `a\x0d\x0ax-evil: 1`},
		{explain: "off", asked: true, answerWhy: why},
	} {
		t.Run(fmt.Sprintf("%s/%v/%q", tc.explain, tc.asked, tc.answerWhy), func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				cfg := bodyRouting
				if tc.explain != "" {
					cfg = strings.Replace(cfg, "{", `{"pick_explain":"`+tc.explain+`",`, 1)
				}
				host, _ := routedHost(t, vm, cfg)
				var hs [][2]string
				if tc.asked {
					hs = append(hs, [2]string{pickapi.HeaderExplain, "yes"})
				}
				// The first pick teaches the level; the second asks.
				for i, a := range []string{`{"endpoint":"10.1.2.3:8000","api":2}`,
					`{"endpoint":"10.1.2.3:8000","api":2,"explain":` + fmt.Sprintf("%q", tc.answerWhy) + `}`} {
					id, call := startRouted(t, host, llmRequest("/v1/chat/completions", hs...), fixture(t, "chat_request.json"))
					pr, err := pickapi.ParsePickRequest(call.Body)
					require.NoError(t, err)
					require.Equal(t, i == 1 && tc.asked && tc.explain != "off", pr.Explain)
					answer(host, call, 200, a)
					host.CallOnResponseHeaders(id, jsonResponse("200"), false)
					got, ok := header(host.GetCurrentResponseHeaders(id), pickapi.HeaderPickExplanation)
					if i == 1 && tc.header != "" {
						require.True(t, ok)
						require.Equal(t, tc.header, got)
					} else {
						require.False(t, ok, "no explanation header")
					}
					host.CallOnResponseBody(id, fixture(t, "chat_response.json"), true)
					host.CompleteHttpContext(id)
					if i == 1 && tc.logged != "" {
						require.Equal(t, tc.logged, property(t, host, stats.StatePickExplain))
					} else {
						noProperty(t, host, stats.StatePickExplain)
					}
					deleteContext(t, id)
				}
			})
		})
	}
}

func TestRouteRefusalIsLocalReply(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
		refusal := string(pickapi.ErrorBody(429, pickapi.ErrTypeRateLimited, "pool pool-a is saturated"))
		answer(host, call, 429, refusal)
		lr := host.GetSentLocalResponse(id)
		require.NotNil(t, lr)
		require.Equal(t, uint32(429), lr.StatusCode)
		require.Equal(t, refusal, string(lr.Data))
		ct, _ := header(lr.Headers, "content-type")
		require.Equal(t, "application/json", ct)
		require.Equal(t, uint64(1), counter(t, host, picks("refused")))
	})
}

func TestRoutePickerFailures(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		respond      func(host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute)
	}{
		{"timeout", "timeout", func(host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute) {
			host.CallOnHttpCallResponse(c.CalloutID, nil, nil, nil) // how Envoy reports a timeout or reset
		}},
		{"500", "status", func(host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute) { answer(host, c, 500, "boom") }},
		{"garbage", "garbage", func(host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute) {
			answer(host, c, 200, `{"endpoint":"attacker.example:80"}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				host, _ := routedHost(t, vm, bodyRouting)
				spoof := [2]string{pickapi.HeaderDestinationEndpoint, "169.254.169.254:80"}
				id, call := startRouted(t, host, llmRequest("/v1/chat/completions", spoof), fixture(t, "chat_request.json"))
				tc.respond(host, call)
				// Fail open: the request continues, unrouted; the client's
				// header is gone and nothing replaced it.
				require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
				require.Nil(t, host.GetSentLocalResponse(id))
				_, has := header(host.GetCurrentRequestHeaders(id), pickapi.HeaderDestinationEndpoint)
				require.False(t, has)
				require.Equal(t, uint64(1), counter(t, host, picks("failopen")))
				require.Equal(t, uint64(1), counter(t, host, pickerErrors(tc.reason)))
				require.Equal(t, "failopen", property(t, host, stats.StateRoute))
			})
		})
	}
}

func TestRouteFailClosed(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, strings.Replace(bodyRouting, "{", `{"failure_mode":"closed",`, 1))
		id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
		host.CallOnHttpCallResponse(call.CalloutID, nil, nil, nil)
		lr := host.GetSentLocalResponse(id)
		require.NotNil(t, lr)
		require.Equal(t, uint32(503), lr.StatusCode)
		require.Equal(t, int64(503), gjson.GetBytes(lr.Data, "error.code").Int())
		require.Equal(t, uint64(1), counter(t, host, picks("failclosed")))
	})
}

// With the picker down, the last ranked endpoints (kept in shared data) are
// used in turn, instead of falling back to the cluster's round robin.
func TestRouteFallbackCache(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		_, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
		answer(host, call, 200, `{"endpoint":"10.0.0.1:8000","target_model":"tweet-summary","strategy":"DEFAULT","pool":"pool-a","fallbacks":["10.0.0.2:8000","10.0.0.3:8000"]}`)

		seen := map[string]int{}
		for i := 0; i < 6; i++ {
			id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
			host.CallOnHttpCallResponse(call.CalloutID, nil, nil, nil)
			ep, ok := header(host.GetCurrentRequestHeaders(id), pickapi.HeaderDestinationEndpoint)
			require.True(t, ok)
			seen[ep]++
			require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
		}
		require.Equal(t, map[string]int{"10.0.0.1:8000": 2, "10.0.0.2:8000": 2, "10.0.0.3:8000": 2}, seen)
		require.Equal(t, uint64(6), counter(t, host, picks("fallback")))
	})
}

// Header mode works on every Envoy: a pool-level pick at header time, then
// the body is observed as usual (and may still get include_usage).
func TestRouteOnHeaders(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, `{"route_on":"headers","picker_cluster":"picker","picker_authority":"picker.local","pool":"pool-a"}`)
		id := host.InitializeHttpContext()
		require.Equal(t, types.ActionPause, host.CallOnRequestHeaders(id, llmRequest("/v1/chat/completions"), false))
		calls := host.GetCalloutAttributesFromContext(id)
		require.Len(t, calls, 1)
		pr, err := pickapi.ParsePickRequest(append([]byte(nil), calls[0].Body...))
		require.NoError(t, err)
		require.Equal(t, "", pr.Model, "a pool-level pick: the model is not known at header time")
		require.Equal(t, "pool-a", pr.Pool)
		answer(host, calls[0], 200, `{"endpoint":"10.0.0.9:8000","strategy":"DEFAULT","pool":"pool-a"}`)
		require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
		ep, _ := header(host.GetCurrentRequestHeaders(id), pickapi.HeaderDestinationEndpoint)
		require.Equal(t, "10.0.0.9:8000", ep)
		_, hasLen := header(host.GetCurrentRequestHeaders(id), "content-length")
		require.False(t, hasLen)

		require.Equal(t, types.ActionContinue, host.CallOnRequestBody(id, fixture(t, "chat_stream_request.json"), true))
		require.True(t, gjson.GetBytes(host.GetCurrentRequestBody(id), "stream_options.include_usage").Bool())
		host.CallOnResponseHeaders(id, sseResponse(), false)
		host.CallOnResponseBody(id, fixture(t, "chat_stream_usage.sse"), true)
		host.CompleteHttpContext(id)
		deleteContext(t, id)
		require.Equal(t, uint64(13), counter(t, host, completionTokens("tweet-summary", "tweet-summary-1")))
	})
}

// Without Envoy's allow_on_headers_stop_iteration the body never arrives
// while the headers are paused: the watchdog resumes the request after
// watchdog_ms (counted in ticks), logs why once, and the body that then
// arrives is observed but neither rewritten nor routed.
func TestRouteWatchdog(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, strings.Replace(bodyRouting, "{", `{"watchdog_ms":100,`, 1))
		require.Equal(t, uint32(25), host.GetTickPeriod())
		id := host.InitializeHttpContext()
		require.Equal(t, types.ActionPause, host.CallOnRequestHeaders(id, llmRequest("/v1/chat/completions"), false))
		for i := 0; i < 4; i++ {
			host.Tick()
			require.Equal(t, types.ActionPause, host.GetCurrentHttpStreamAction(id), "not before watchdog_ms (tick %d)", i+1)
		}
		host.Tick()
		require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id), "resumed by the watchdog")
		warn := strings.Join(host.GetWarnLogs(), "\n")
		require.Contains(t, warn, "allow_on_headers_stop_iteration")

		stream := fixture(t, "chat_stream_request.json")
		require.Equal(t, types.ActionContinue, host.CallOnRequestBody(id, stream, true))
		require.Empty(t, host.GetCalloutAttributesFromContext(id), "too late to route")
		require.Equal(t, string(stream), string(host.GetCurrentRequestBody(id)), "headers left with their length: the body keeps it")
		require.Equal(t, uint64(1), counter(t, host, picks("watchdog")))

		// A second stuck request logs nothing new.
		id2 := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id2, llmRequest("/v1/chat/completions"), false)
		for i := 0; i < 6; i++ {
			host.Tick()
		}
		require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id2))
		require.Equal(t, 1, strings.Count(strings.Join(host.GetWarnLogs(), "\n"), "allow_on_headers_stop_iteration"))
	})
}

// Oversize or unreadable bodies are not routed, and never held.
func TestRouteSkipsUnreadableBodies(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, strings.Replace(bodyRouting, "{", `{"max_request_body_bytes":256,`, 1))
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, llmRequest("/v1/chat/completions"), false)
		require.Equal(t, types.ActionContinue, host.CallOnRequestBody(id, fixture(t, "chat_request.json"), true))
		require.Empty(t, host.GetCalloutAttributesFromContext(id))

		id = host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, llmRequest("/v1/chat/completions"), false)
		require.Equal(t, types.ActionContinue, host.CallOnRequestBody(id, []byte(`{"prompt":"no model"}`), true))
		require.Empty(t, host.GetCalloutAttributesFromContext(id))
		require.Equal(t, uint64(2), counter(t, host, picks("skipped")))
	})
}

// A stream that gets include_usage and a new model: both splices land, and
// Content-Length follows (the injected body's offsets serve the rewrite).
func TestRouteInjectAndRewrite(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		req := []byte(`{"stream":"true","stream_options":null,"model":"tweet-summary","messages":[{"role":"user","content":"hi"}]}`)
		id, call := startRouted(t, host, llmRequest("/v1/chat/completions", [2]string{"content-length", fmt.Sprint(len(req))}), req)
		answer(host, call, 200, `{"endpoint":"10.0.0.7:8000","target_model":"tweet-summary-2","pool":"pool-a"}`)
		body := string(host.GetCurrentRequestBody(id))
		require.Equal(t, `{"stream":"true","stream_options":{"include_usage":true},"model":"tweet-summary-2","messages":[{"role":"user","content":"hi"}]}`, body)
		cl, _ := header(host.GetCurrentRequestHeaders(id), "content-length")
		require.Equal(t, fmt.Sprint(len(body)), cl)
		host.CompleteHttpContext(id)
		deleteContext(t, id)
	})
}
