package main

import (
	"fmt"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/pickapi"
)

// envoyRequest drives one request the way Envoy's filter manager does, with
// or without the Wasm filter's allow_on_headers_stop_iteration, and records
// the headers at the moment they leave for the upstream: that is when the
// router (override_host) reads the destination, and later changes do not
// move the request.
//
// Sources: proxy-wasm-cpp-host src/context.cc turns a Pause from the headers
// callback into StopAllIterationAndWatermark unless the plugin sets
// allow_on_headers_stop_iteration (cpp-host PR #434, Envoy PR #40213); then
// it is StopIteration, and Envoy delivers body data, which a Continue from
// the body callback sends on, headers first. proxytest delivers whatever the
// test calls, so this driver withholds the body itself.
type envoyRequest struct {
	t       *testing.T
	host    proxytest.HostEmulator
	id      uint32
	allow   bool
	chunks  [][]byte
	next    int  // chunks delivered
	gone    bool // headers left upstream
	sent    [][2]string
	sentAt  string // what released them
	actions []types.Action
}

func startEnvoyRequest(t *testing.T, host proxytest.HostEmulator, allow bool, headers [][2]string, chunks ...[]byte) *envoyRequest {
	r := &envoyRequest{t: t, host: host, id: host.InitializeHttpContext(), allow: allow, chunks: chunks}
	if a := host.CallOnRequestHeaders(r.id, headers, false); a == types.ActionContinue {
		r.leave("headers")
	}
	r.deliver()
	return r
}

// deliver sends body chunks for as long as Envoy would.
func (r *envoyRequest) deliver() {
	for r.next < len(r.chunks) && (r.gone || r.allow) {
		end := r.next == len(r.chunks)-1
		a := r.host.CallOnRequestBody(r.id, r.chunks[r.next], end)
		r.next++
		r.actions = append(r.actions, a)
		if a == types.ActionContinue && !r.gone {
			r.leave(fmt.Sprintf("body chunk %d", r.next))
		}
	}
}

// after is called once the test did something to the host (a pick answer,
// a tick): a resumed stream leaves, and Envoy then delivers the body.
func (r *envoyRequest) after(what string) {
	if !r.gone && r.host.GetCurrentHttpStreamAction(r.id) == types.ActionContinue && r.host.GetSentLocalResponse(r.id) == nil {
		r.leave(what)
	}
	r.deliver()
}

func (r *envoyRequest) leave(what string) {
	r.gone, r.sentAt = true, what
	r.sent = append([][2]string(nil), r.host.GetCurrentRequestHeaders(r.id)...)
}

// Every route_on with and without the Envoy flag: the endpoint the access
// log and the picks metric claim is the one the request left with.
func TestRouteOnEveryModeAndFlag(t *testing.T) {
	const pick = `{"endpoint":"10.0.0.7:8000","target_model":"tweet-summary","strategy":"DEFAULT","pool":"pool-a"}`
	for _, tc := range []struct {
		routeOn  string
		allow    bool
		routed   bool   // leaves with the picked endpoint
		outcome  string // llm_route, "" for none
		released string // what sends the headers
	}{
		{"body", true, true, "picked", "pick answer"},
		{"body", false, false, "watchdog", "watchdog"},
		{"headers", true, true, "picked", "pick answer"},
		{"headers", false, true, "picked", "pick answer"},
		{"none", true, false, "", "headers"},
		{"none", false, false, "", "headers"},
	} {
		t.Run(fmt.Sprintf("%s/allow=%v", tc.routeOn, tc.allow), func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				cfg := `{"picker_cluster":"picker","picker_authority":"picker.local","pool":"pool-a","watchdog_ms":100,"route_on":"` + tc.routeOn + `"}`
				host, _ := routedHost(t, vm, cfg)
				body := fixture(t, "chat_request.json")
				spoof := [2]string{pickapi.HeaderDestinationEndpoint, "10.0.0.66:8000"}
				r := startEnvoyRequest(t, host, tc.allow, llmRequest("/v1/chat/completions", spoof), body[:64], body[64:])
				if calls := host.GetCalloutAttributesFromContext(r.id); len(calls) > 0 {
					require.Len(t, calls, 1)
					require.False(t, r.gone, "the headers wait for the pick")
					answer(host, calls[0], 200, pick)
					r.after("pick answer")
				}
				for i := 0; i < 10 && !r.gone; i++ {
					host.Tick()
					r.after("watchdog")
				}
				require.True(t, r.gone, "the request never hangs")
				require.Equal(t, tc.released, r.sentAt)
				require.Equal(t, len(r.chunks), r.next, "the whole body was delivered")
				require.Equal(t, body, host.GetCurrentRequestBody(r.id), "the body goes on as it came")

				ep, has := header(r.sent, pickapi.HeaderDestinationEndpoint)
				if tc.routed {
					require.Equal(t, "10.0.0.7:8000", ep)
				} else {
					require.False(t, has, "no destination: the client's was removed (%s)", ep)
				}
				host.CallOnResponseHeaders(r.id, jsonResponse("200"), false)
				host.CallOnResponseBody(r.id, fixture(t, "chat_response.json"), true)
				host.CompleteHttpContext(r.id)
				deleteContext(t, r.id)

				if tc.outcome == "" {
					noProperty(t, host, stats.StateRoute)
				} else {
					require.Equal(t, tc.outcome, property(t, host, stats.StateRoute))
					require.Equal(t, uint64(1), counter(t, host, picks(tc.outcome)))
				}
				if tc.routed {
					require.Equal(t, ep, property(t, host, stats.StateEndpoint), "the log names where it went")
				} else {
					noProperty(t, host, stats.StateEndpoint)
				}
				target := "tweet-summary-1" // the response's model
				if tc.routed {
					target = "tweet-summary" // the picker's
				}
				require.Equal(t, uint64(131), counter(t, host, promptTokens("tweet-summary", target)))
			})
		})
	}
}

// A pick answer that arrives after the request was answered or reset
// changes nothing (and does not trap).
func TestLatePickAnswer(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
		host.CompleteHttpContext(id) // the client went away
		answer(host, call, 200, `{"endpoint":"10.0.0.7:8000","pool":"pool-a"}`)
		_, has := header(host.GetCurrentRequestHeaders(id), pickapi.HeaderDestinationEndpoint)
		require.False(t, has)
		require.Empty(t, host.GetErrorLogs())
		deleteContext(t, id)
	})
}

// TestPhaseNames: every phase has its own name, and an impossible value
// still prints (a log line about a corrupt state must not panic).
func TestPhaseNames(t *testing.T) {
	seen := map[string]bool{}
	for p := phaseIgnored; p <= phaseFinished; p++ {
		n := p.String()
		require.NotContains(t, n, "phase(", "phase %d has no name", p)
		require.False(t, seen[n], "two phases named %q", n)
		seen[n] = true
	}
	require.Equal(t, "phase(200)", phase(200).String())
}
