package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/filter/resolution"
	"github.com/meshllm/meshllm/filter/route"
	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/pickapi"
)

// The tests below are the picker slow (a pick past picker_timeout_ms),
// down (no answer, a 5xx) and restarting (a new picker, the same or new
// objects), as the filter sees each: a request for a virtual model still
// reaches its pod with the model the picker would have chosen.

// virtualTable maps the fixtures' model, tweet-summary, to two adapters,
// the first weighted 0 so that every draw is the second (the draw itself
// is tested in pickapi and picker-svc/internal/resolve).
func virtualTable(pool string, weights ...int32) pickapi.Resolution {
	t := pickapi.Resolution{Pool: pool, Models: map[string][]pickapi.Target{
		"tweet-summary": {{Name: "tweet-summary-1", Weight: 0}, {Name: "tweet-summary-2", Weight: 1}},
	}}
	if len(weights) == 2 {
		t.Models["tweet-summary"][0].Weight, t.Models["tweet-summary"][1].Weight = weights[0], weights[1]
	}
	t.Seal()
	return t
}

func localResolutions(outcome string) string {
	return stats.Name(stats.LocalResolutions, stats.Tag{Name: stats.TagOutcome, Value: outcome})
}

func resolutionFetches(outcome string) string {
	return stats.Name(stats.ResolutionFetches, stats.Tag{Name: stats.TagOutcome, Value: outcome})
}

// pickAnswer is a pick of 10.0.0.1:8000 for tweet-summary naming the
// table version v ("" for none).
func pickAnswer(v string) string {
	a := pickapi.PickResponse{Endpoint: "10.0.0.1:8000", TargetModel: "tweet-summary-1", Pool: "pool-a",
		Fallbacks: []string{"10.0.0.2:8000"}, Resolution: v}
	return string(a.AppendJSON(nil))
}

// pickNaming makes one picked request whose answer names version v.
func pickNaming(t *testing.T, host proxytest.HostEmulator, v string) {
	t.Helper()
	id, call := startRouted(t, host, llmRequest("/v1/chat/completions"), fixture(t, "chat_request.json"))
	answer(host, call, 200, pickAnswer(v))
	require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
	host.CompleteHttpContext(id)
	deleteContext(t, id)
}

// rootCalls are the calls the filter dispatched from its root context.
func rootCalls(host proxytest.HostEmulator) []proxytest.HttpCalloutAttribute {
	return host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
}

// learn lets the filter learn table: a pick names its version, the next
// tick fetches it, the picker answers it.
func learn(t *testing.T, host proxytest.HostEmulator, table pickapi.Resolution) {
	t.Helper()
	before := len(rootCalls(host))
	pickNaming(t, host, table.Version)
	host.Tick()
	calls := rootCalls(host)
	require.Len(t, calls, before+1, "one fetch")
	answer(host, calls[len(calls)-1], 200, string(table.AppendJSON(nil)))
}

// failedPick sends chat_request.json and lets its pick time out; it
// returns the body and headers that went upstream.
func failedPick(t *testing.T, host proxytest.HostEmulator) (uint32, []byte, [][2]string) {
	t.Helper()
	req := fixture(t, "chat_request.json")
	id, call := startRouted(t, host, llmRequest("/v1/chat/completions", [2]string{"content-length", fmt.Sprint(len(req))}), req)
	host.CallOnHttpCallResponse(call.CalloutID, nil, nil, nil) // Envoy's timeout or reset
	require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id), "never held")
	return id, append([]byte(nil), host.GetCurrentRequestBody(id)...), host.GetCurrentRequestHeaders(id)
}

// A pick names the table's version; a tick fetches it from the root
// context; then every way a pick can fail routes the virtual model to its
// target: body rewritten (Content-Length follows), access-log field and
// token metrics name the target, counted.
func TestKeptResolutionWhenThePickFails(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		fail         func(host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute)
	}{
		{"slow", "timeout", func(host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute) {
			host.CallOnHttpCallResponse(c.CalloutID, nil, nil, nil) // picker_timeout_ms passed
		}},
		{"down", "status", func(host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute) {
			answer(host, c, 502, "upstream connect error")
		}},
		{"garbage", "garbage", func(host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute) {
			answer(host, c, 200, `{"endpoint":"x"}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				host, _ := routedHost(t, vm, bodyRouting)
				table := virtualTable("pool-a")
				pickNaming(t, host, table.Version)
				require.Empty(t, rootCalls(host), "no fetch before a tick")
				host.Tick()
				calls := rootCalls(host)
				require.Len(t, calls, 1)
				require.Equal(t, "picker", calls[0].Upstream)
				for _, h := range [][2]string{{":method", "GET"}, {":path", "/v1/resolution?pool=pool-a"}, {":authority", "picker.local"}} {
					v, ok := header(calls[0].Headers, h[0])
					require.True(t, ok, h[0])
					require.Equal(t, h[1], v)
				}
				answer(host, calls[0], 200, string(table.AppendJSON(nil)))
				require.Equal(t, uint64(1), counter(t, host, resolutionFetches("ok")))
				require.Contains(t, strings.Join(host.GetInfoLogs(), "\n"), "keeping the resolution table of pool \"pool-a\"")

				req := fixture(t, "chat_request.json")
				id, call := startRouted(t, host, llmRequest("/v1/chat/completions", [2]string{"content-length", fmt.Sprint(len(req))}), req)
				tc.fail(host, call)
				require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
				body := append([]byte(nil), host.GetCurrentRequestBody(id)...)
				require.Equal(t, "tweet-summary-2", gjson.GetBytes(body, "model").Str, "the kept table's target")
				require.Equal(t, gjson.GetBytes(req, "messages").Raw, gjson.GetBytes(body, "messages").Raw)
				hs := host.GetCurrentRequestHeaders(id)
				cl, _ := header(hs, "content-length")
				require.Equal(t, fmt.Sprint(len(body)), cl)
				ep, _ := header(hs, pickapi.HeaderDestinationEndpoint)
				require.Contains(t, []string{"10.0.0.1:8000", "10.0.0.2:8000"}, ep, "the fallback cache keeps the endpoint")
				host.CallOnResponseHeaders(id, jsonResponse("200"), false)
				host.CallOnResponseBody(id, fixture(t, "chat_response.json"), true)
				host.CompleteHttpContext(id)
				deleteContext(t, id)

				require.Equal(t, uint64(1), counter(t, host, pickerErrors(tc.reason)))
				require.Equal(t, uint64(1), counter(t, host, picks("fallback")))
				require.Equal(t, uint64(1), counter(t, host, localResolutions("rewritten")))
				require.Equal(t, "fallback", property(t, host, stats.StateRoute))
				require.Equal(t, "tweet-summary-2", property(t, host, stats.StateTargetModel))
				require.Equal(t, uint64(131), counter(t, host, promptTokens("tweet-summary", "tweet-summary-2")))
			})
		})
	}
}

// The table's age counts from when a picker last named its version: past
// resolution_max_age_ms it is not used; a pick naming it again (a picker
// back, or restarted with the same objects) makes it current without a
// fetch; a new version is fetched; a failed fetch is retried a step later.
func TestKeptResolutionAgeConfirmAndRefetch(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		v1 := virtualTable("pool-a")
		learn(t, host, v1)
		key := resolution.Key("pool-a")
		// The guest's clock (wazero's is a fake one, not the test's): the
		// table was seen when it was fetched.
		b, _, err := proxywasm.GetSharedData(key)
		require.NoError(t, err)
		k, err := resolution.Decode(b, "pool-a")
		require.NoError(t, err)
		now := time.UnixMilli(k.SeenMillis)
		setKept := func(seen time.Time, table pickapi.Resolution) {
			_, cas, err := proxywasm.GetSharedData(key)
			require.NoError(t, err)
			require.NoError(t, proxywasm.SetSharedData(key, resolution.Encode(seen.UnixMilli(), &table), cas))
		}
		modelAfterFailure := func() string {
			_, body, _ := failedPick(t, host)
			return gjson.GetBytes(body, "model").Str
		}

		setKept(now.Add(-5*time.Minute-time.Second), v1)
		require.Equal(t, "tweet-summary", modelAfterFailure(), "past its age: the model goes as it came")
		require.Equal(t, uint64(1), counter(t, host, localResolutions("expired")))
		setKept(now.Add(-5*time.Minute+10*time.Second), v1)
		require.Equal(t, "tweet-summary-2", modelAfterFailure(), "within its age")

		// Old again; a pick names the same version: confirmed, no fetch.
		setKept(now.Add(-time.Hour), v1)
		pickNaming(t, host, v1.Version)
		host.Tick()
		require.Len(t, rootCalls(host), 1, "the same version is not fetched again")
		require.Equal(t, "tweet-summary-2", modelAfterFailure(), "a picker naming it again makes it current")

		// New objects (a canary weight moved): the new version is fetched.
		v2 := virtualTable("pool-a", 1, 0)
		require.NotEqual(t, v1.Version, v2.Version)
		learn(t, host, v2)
		require.Equal(t, "tweet-summary-1", modelAfterFailure())

		// A fetch that fails is not retried within a step.
		v3 := virtualTable("pool-a", 0, 3)
		pickNaming(t, host, v3.Version)
		host.Tick()
		calls := rootCalls(host)
		require.Len(t, calls, 3)
		answer(host, calls[2], 500, "boom")
		require.Equal(t, uint64(1), counter(t, host, resolutionFetches("status")))
		pickNaming(t, host, v3.Version)
		host.Tick()
		require.Len(t, rootCalls(host), 3, "retried a step later, not at once")
		require.Equal(t, "tweet-summary-1", modelAfterFailure(), "the kept table still serves")
	})
}

// Shared data is writable by any plugin of the proxy: a value that is not
// a valid table of this pool, or claims a time far ahead, is not used (the
// body goes as it came), and that is logged once; an answer to a fetch that
// is not one is not kept.
func TestKeptResolutionDistrustsSharedData(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, bodyRouting)
		key := resolution.Key("pool-a")
		// One pick: a fallback cache, and the guest's clock (wazero's is
		// a fake one, not the test's).
		pickNaming(t, host, "")
		b, _, err := proxywasm.GetSharedData(route.CacheKey("pool-a"))
		require.NoError(t, err)
		now, cached, ok := route.DecodeCache(b)
		require.True(t, ok)
		other := virtualTable("pool-b")
		own := virtualTable("pool-a")
		// The table's target names an address: it is a model name, and
		// the endpoint never comes from the table.
		spoof := pickapi.Resolution{Pool: "pool-a", Models: map[string][]pickapi.Target{"tweet-summary": {{Name: "169.254.169.254:80", Weight: 1}}}}
		spoof.Seal()
		for i, v := range [][]byte{
			[]byte("not a table"),
			resolution.Encode(now, &other),
			resolution.Encode(now+10*60_000, &own),
			append(resolution.Encode(now, &own), '}'),
		} {
			_, cas, _ := proxywasm.GetSharedData(key)
			require.NoError(t, proxywasm.SetSharedData(key, v, cas))
			id, body, hs := failedPick(t, host)
			require.Equal(t, "tweet-summary", gjson.GetBytes(body, "model").Str, "value %d", i)
			ep, _ := header(hs, pickapi.HeaderDestinationEndpoint)
			require.Contains(t, cached, ep, "the cached endpoints, as ever")
			host.CompleteHttpContext(id)
			deleteContext(t, id)
		}
		require.Equal(t, uint64(4), counter(t, host, localResolutions("invalid")))
		require.Equal(t, 1, strings.Count(strings.Join(host.GetWarnLogs(), "\n"), "holds no valid resolution table"))

		_, cas, _ := proxywasm.GetSharedData(key)
		require.NoError(t, proxywasm.SetSharedData(key, resolution.Encode(now, &spoof), cas))
		_, body, hs := failedPick(t, host)
		require.Equal(t, "169.254.169.254:80", gjson.GetBytes(body, "model").Str, "a model name like any other")
		ep, _ := header(hs, pickapi.HeaderDestinationEndpoint)
		require.Contains(t, cached, ep, "never an address")

	})
}

// A fetch answer that is not a table of this pool is not kept: the kept
// value stays what it was, and the bad answer is counted.
func TestKeptResolutionRefusesBadFetchAnswers(t *testing.T) {
	own, other := virtualTable("pool-a"), virtualTable("pool-b")
	newer := virtualTable("pool-a", 2, 1)
	for name, c := range map[string]struct{ body, outcome string }{
		"another pool's table": {string(other.AppendJSON(nil)), "garbage"},
		"a malformed table":    {`{"version":"x","models":[{"model":"m"}]}`, "garbage"},
		"deeply nested":        {strings.Repeat("[", 5000), "garbage"},
		"oversize":             {`{"version":"x","pad":"` + strings.Repeat("x", pickapi.MaxResolutionSize) + `"}`, "oversize"},
	} {
		t.Run(name, func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				host, _ := routedHost(t, vm, bodyRouting)
				key := resolution.Key("pool-a")
				require.NoError(t, proxywasm.SetSharedData(key, resolution.Encode(time.Now().UnixMilli(), &own), 0))
				pickNaming(t, host, newer.Version)
				host.Tick()
				calls := rootCalls(host)
				require.Len(t, calls, 1)
				answer(host, calls[0], 200, c.body)
				require.Equal(t, uint64(1), counter(t, host, resolutionFetches(c.outcome)))
				kept, _, err := proxywasm.GetSharedData(key)
				require.NoError(t, err)
				k, err := resolution.Decode(kept, "pool-a")
				require.NoError(t, err)
				require.Equal(t, own, k.Table, "the kept value is what it was")
			})
		})
	}
}

// Header-time routing picks by load, before the model is read: the kept
// table resolves the model when the body comes, whether the pick answered
// or not; Content-Length was dropped so the body may change size.
func TestKeptResolutionAtHeaderTime(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, `{"route_on":"headers","picker_cluster":"picker","picker_authority":"picker.local","pool":"pool-a","inject_stream_usage":false}`)
		require.Equal(t, uint32(resolutionTickMillis), host.GetTickPeriod())
		table := virtualTable("pool-a")
		headerPick := func(answerWith func(c proxytest.HttpCalloutAttribute)) []byte {
			id := host.InitializeHttpContext()
			require.Equal(t, types.ActionPause, host.CallOnRequestHeaders(id, llmRequest("/v1/chat/completions"), false))
			_, hasLen := header(host.GetCurrentRequestHeaders(id), "content-length")
			require.False(t, hasLen)
			calls := host.GetCalloutAttributesFromContext(id)
			require.Len(t, calls, 1)
			answerWith(calls[0])
			require.Equal(t, types.ActionContinue, host.GetCurrentHttpStreamAction(id))
			require.Equal(t, types.ActionContinue, host.CallOnRequestBody(id, fixture(t, "chat_request.json"), true))
			body := append([]byte(nil), host.GetCurrentRequestBody(id)...)
			host.CompleteHttpContext(id)
			deleteContext(t, id)
			return body
		}
		poolPick := func(c proxytest.HttpCalloutAttribute) {
			answer(host, c, 200, `{"endpoint":"10.0.0.9:8000","strategy":"DEFAULT","pool":"pool-a","resolution":"`+table.Version+`"}`)
		}
		body := headerPick(poolPick)
		require.Equal(t, "tweet-summary", gjson.GetBytes(body, "model").Str, "nothing kept yet")
		require.Equal(t, uint64(1), counter(t, host, localResolutions("no_table")))
		host.Tick()
		calls := rootCalls(host)
		require.Len(t, calls, 1)
		answer(host, calls[0], 200, string(table.AppendJSON(nil)))

		require.Equal(t, "tweet-summary-2", gjson.GetBytes(headerPick(poolPick), "model").Str, "picked by load, model from the table")
		require.Equal(t, "tweet-summary-2", gjson.GetBytes(headerPick(func(c proxytest.HttpCalloutAttribute) {
			host.CallOnHttpCallResponse(c.CalloutID, nil, nil, nil)
		}), "model").Str, "the picker down: the same")
		require.Equal(t, uint64(2), counter(t, host, localResolutions("rewritten")))
	})
}

// With resolution_max_age_ms 0 nothing is kept: no tick work, no fetch, no
// rewrite; and a filter that does not route keeps nothing either.
func TestKeptResolutionOff(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host, _ := routedHost(t, vm, strings.Replace(bodyRouting, "{", `{"resolution_max_age_ms":0,`, 1))
		table := virtualTable("pool-a")
		pickNaming(t, host, table.Version)
		host.Tick()
		require.Empty(t, rootCalls(host))
		_, body, _ := failedPick(t, host)
		require.Equal(t, "tweet-summary", gjson.GetBytes(body, "model").Str)
		_, err := host.GetCounterMetric(localResolutions("no_table"))
		require.Error(t, err, "not counted: not kept")
	})
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		require.Zero(t, startHost(t, vm, `{}`).GetTickPeriod())
	})
}
