package scenarios

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/e2e/loadgen"
	"github.com/meshllm/meshllm/e2e/stack"
)

// A pod with a long queue and a pod with a nearly full KV cache get (almost)
// none of the new requests while a third pod is free: through the Wasm
// filter and through a gateway that calls the picker over ext_proc.
func TestQueueAndKVCacheAvoided(t *testing.T) {
	for _, path := range routePaths {
		t.Run(path.name, func(t *testing.T) {
			cfgs := sims(3, "base", 10)
			cfgs[0].MaxNumSeqs = 2                                // pod 0 queues quickly
			cfgs[1].NumGPUBlocks, cfgs[1].MaxModelLen = 300, 4800 // pod 1 fills its KV cache (4,800 tokens)
			s := start(t, stack.Config{Sims: cfgs, Objects: objects("DEFAULT"), Pool: "sim-pool", PluginConfig: routed("")})
			queued, full, free := s.Fleet.Addrs[0], s.Fleet.Addrs[1], s.Fleet.Addrs[2]

			loadDirect(t, queued, 10, loadgen.Completion("base", loadgen.Words(rand.New(rand.NewSource(1)), 50), 8000, true))
			loadDirect(t, full, 3, loadgen.Completion("base", loadgen.Words(rand.New(rand.NewSource(2)), 1400), 3000, true))
			eventually(t, 20*time.Second, "the picker to see the queue and the full cache", func() bool {
				return endpointState(t, s, queued).Get("waiting").Float() >= 5 && endpointState(t, s, full).Get("kv_cache_usage").Float() > 0.85
			})

			before := path.counts(s)
			for i := 0; i < 30; i++ {
				r := client.Do(context.Background(), path.url(s), loadgen.Request{Body: loadgen.Completion("base", "short question", 4, false)})
				require.True(t, r.OK(), "%d %s %v", r.Status, r.Body, r.Err)
			}
			after := path.counts(s)
			got := func(a string) int { return after[a] - before[a] }
			t.Logf("new requests: queued pod %d, full-cache pod %d, free pod %d", got(queued), got(full), got(free))
			logPicks(t, s)
			require.LessOrEqual(t, got(queued)+got(full), 2)
			require.GreaterOrEqual(t, got(free), 28)
		})
	}
}

// InferenceModel weights: 50/50 within 5% over 2,000 requests, and a 90/10
// canary; the response's model names the adapter that served it (so the
// body was rewritten on the way: by the filter, or by the picker's
// ext_proc body mutation).
func TestInferenceModelWeights(t *testing.T) {
	adapters := []string{"tweet-summary-1", "tweet-summary-2", "sql-lora-1", "sql-lora-2"}
	for _, path := range routePaths {
		t.Run(path.name, func(t *testing.T) {
			s := start(t, stack.Config{
				Sims: sims(2, "base", 200, adapters...),
				Objects: objects("DEFAULT",
					[3]string{"half", "Standard", "tweet-summary-1:50,tweet-summary-2:50"},
					[3]string{"canary", "Standard", "sql-lora-1:90,sql-lora-2:10"}),
				Pool: "sim-pool", PluginConfig: routed(""),
			})
			for _, tc := range []struct {
				model string
				want  map[string]float64
				n     int
			}{
				{"half", map[string]float64{"tweet-summary-1": 0.5, "tweet-summary-2": 0.5}, 2000},
				{"canary", map[string]float64{"sql-lora-1": 0.9, "sql-lora-2": 0.1}, 1000},
			} {
				reqs := make([]loadgen.Request, tc.n)
				for i := range reqs {
					reqs[i] = loadgen.Request{Body: loadgen.Completion(tc.model, "classify this", 1, i%2 == 0)}
				}
				counts := map[string]int{}
				for _, r := range client.Run(context.Background(), path.url(s), reqs, 16, nil) {
					require.True(t, r.OK(), "%d %s %v", r.Status, r.Body, r.Err)
					counts[r.Model]++
				}
				t.Logf("%s: %v", tc.model, counts)
				for adapter, share := range tc.want {
					require.InDelta(t, share, float64(counts[adapter])/float64(tc.n), 0.05, "%s -> %s", tc.model, adapter)
				}
				require.Len(t, counts, len(tc.want), "only the InferenceModel's targets serve it")
			}
		})
	}
}

// LoRA affinity: with max_loras below the number of adapters, requests for
// an adapter go where it is resident, so the fleet loads adapters far less
// often than under round robin.
func TestLoRAAffinity(t *testing.T) {
	adapters := []string{"a1", "a2", "a3", "a4", "a5", "a6"}
	run := func(listener string) (loads uint64) {
		cfgs := sims(3, "base", 10, adapters...)
		for i := range cfgs {
			cfgs[i].MaxLoRAs = 2
		}
		s := start(t, stack.Config{Sims: cfgs, Objects: objects("DEFAULT"), Pool: "sim-pool", PluginConfig: routed("")})
		rng := rand.New(rand.NewSource(7))
		reqs := make([]loadgen.Request, 300)
		for i := range reqs {
			reqs[i] = loadgen.Request{Body: loadgen.Completion(adapters[rng.Intn(len(adapters))], loadgen.Words(rng, 40), 120, true)}
		}
		for _, r := range client.Run(context.Background(), s.URL(listener), reqs, 12, nil) {
			require.True(t, r.OK(), "%d %s %v", r.Status, r.Body, r.Err)
		}
		for _, st := range s.Fleet.Stats() {
			loads += st.LoRALoads
		}
		return loads
	}
	rr, aware := run(stack.PlainListener), run(stack.LLMListener)
	t.Logf("adapter loads: round robin %d, LLM-aware %d", rr, aware)
	require.Less(t, float64(aware), 0.7*float64(rr))
}

// PREFIX_CACHE: requests that share a prefix land on the same pod, and the
// fleet's prefix-cache hit rate beats round robin's.
func TestPrefixCacheRouting(t *testing.T) {
	run := func(listener string) (hitRate float64, podsPerGroup float64) {
		s := start(t, stack.Config{Sims: sims(4, "base", 50), Objects: objects("PREFIX_CACHE"), Pool: "sim-pool", PluginConfig: routed("")})
		rng := rand.New(rand.NewSource(3))
		const groups = 8
		prefixes := make([]string, groups)
		for g := range prefixes {
			prefixes[g] = fmt.Sprintf("system %d: ", g) + loadgen.Words(rng, 600)
		}
		// First, three requests per group, one at a time, on the fresh fleet:
		// how many pods does one prefix end up on?
		cluster := stack.PlainCluster
		if listener == stack.LLMListener {
			cluster = stack.LLMCluster
		}
		pods := 0
		for g := range prefixes {
			before := s.Gateway.UpstreamCounts(cluster)
			for i := 0; i < 3; i++ {
				r := client.Do(context.Background(), s.URL(listener), loadgen.Request{Body: loadgen.Completion("base", prefixes[g]+loadgen.Words(rng, 30), 8, true)})
				require.True(t, r.OK())
			}
			for ep, n := range s.Gateway.UpstreamCounts(cluster) {
				if n > before[ep] {
					pods++
				}
			}
		}
		var reqs []loadgen.Request
		for i := 0; i < 160; i++ {
			g := rng.Intn(groups)
			reqs = append(reqs, loadgen.Request{Tag: fmt.Sprint(g),
				Body: loadgen.Completion("base", prefixes[g]+loadgen.Words(rng, 30), 8, true)})
		}
		for _, r := range client.Run(context.Background(), s.URL(listener), reqs, 4, nil) {
			require.True(t, r.OK(), "%d %s %v", r.Status, r.Body, r.Err)
		}
		var q, h uint64
		for _, st := range s.Fleet.Stats() {
			q += st.PrefixQueries
			h += st.PrefixHits
		}
		return float64(h) / float64(q), float64(pods) / groups
	}
	rr, rrPods := run(stack.PlainListener)
	aware, awarePods := run(stack.LLMListener)
	t.Logf("prefix-cache hit rate: round robin %.2f, PREFIX_CACHE %.2f; pods per prefix: %.2f vs %.2f", rr, aware, rrPods, awarePods)
	require.Greater(t, aware, rr+0.05)
	require.LessOrEqual(t, awarePods, 1.25, "a shared prefix stays on (nearly always) one pod")
	require.GreaterOrEqual(t, rrPods, 2.5)
}

// Under saturation Sheddable requests get the picker's 429 (an OpenAI-style
// body, through the filter's local reply or ext_proc's immediate response)
// and go nowhere, while Critical ones are routed: over both paths.
func TestCriticalityShedding(t *testing.T) {
	for _, path := range routePaths {
		t.Run(path.name, func(t *testing.T) {
			cfgs := sims(2, "base", 10)
			for i := range cfgs {
				cfgs[i].MaxNumSeqs = 1
			}
			s := start(t, stack.Config{Sims: cfgs, Pool: "sim-pool", PluginConfig: routed(""),
				Objects: objects("DEFAULT", [3]string{"batch", "Sheddable", "base:1"}, [3]string{"urgent", "Critical", "base:1"})})
			for _, a := range s.Fleet.Addrs {
				loadDirect(t, a, 9, loadgen.Completion("base", "keep busy", 8000, true))
			}
			eventually(t, 20*time.Second, "every pod saturated in the picker's view", func() bool {
				return endpointState(t, s, s.Fleet.Addrs[0]).Get("waiting").Float() > 5 && endpointState(t, s, s.Fleet.Addrs[1]).Get("waiting").Float() > 5
			})
			r := client.Do(context.Background(), path.url(s), loadgen.Request{Body: loadgen.Completion("batch", "later", 2, false)})
			require.NoError(t, r.Err)
			require.Equal(t, 429, r.Status, string(r.Body))
			require.Equal(t, float64(429), gjson.GetBytes(r.Body, "error.code").Num, string(r.Body))
			require.Equal(t, "RateLimitError", gjson.GetBytes(r.Body, "error.type").Str)
			require.Zero(t, sumUpstream(path.counts(s)), "a shed request goes nowhere")

			// Critical is never shed: it is routed (and queued) even now.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go client.Do(ctx, path.url(s), loadgen.Request{Body: loadgen.Completion("urgent", "now", 1, false)})
			eventually(t, 10*time.Second, "the critical request to be routed", func() bool {
				return sumUpstream(path.counts(s)) == 1
			})
			m := pickerMetrics(t, s)
			require.Equal(t, float64(1), counterValue(m, `meshllm_picker_picks_total{outcome="shed",strategy="DEFAULT"}`), m)
			if path.name == "wasm" {
				require.Equal(t, float64(1), counterValue(s.PrometheusText(), `asm_llm_proxy_picks_total{outcome="refused"}`))
			}
		})
	}
}

// The picker dies mid-run: no request fails (the filter fails open, using
// the cached ranked endpoints), the fallback is counted, and routing resumes
// when the picker is back.
func TestPickerKilledMidRun(t *testing.T) {
	s := start(t, stack.Config{Sims: sims(3, "base", 100), Objects: objects("DEFAULT"), Pool: "sim-pool", PluginConfig: routed("")})
	send := func(n int) {
		for i := 0; i < n; i++ {
			r := client.Do(context.Background(), s.URL(stack.LLMListener), loadgen.Request{Body: loadgen.Completion("base", "q", 2, i%2 == 0)})
			require.True(t, r.OK(), "request %d: %d %s %v", i, r.Status, r.Body, r.Err)
		}
	}
	send(20)
	require.NoError(t, s.StopPicker())
	send(30)
	prom := s.PrometheusText()
	down := counterValue(prom, `asm_llm_proxy_picks_total{outcome="fallback"}`) + counterValue(prom, `asm_llm_proxy_picks_total{outcome="failopen"}`)
	require.Equal(t, float64(30), down, prom)
	require.Equal(t, float64(30), sumSeries(prom, "asm_llm_proxy_picker_errors_total"))
	require.NoError(t, s.RestartPicker())
	picked := counterValue(prom, `asm_llm_proxy_picks_total{outcome="picked"}`)
	send(10)
	require.Equal(t, picked+10, counterValue(s.PrometheusText(), `asm_llm_proxy_picks_total{outcome="picked"}`))
}

// A client-supplied x-gateway-destination-endpoint pointing outside the pool
// is never used, whether the picker answers or not.
func TestSpoofedDestinationNeverUsed(t *testing.T) {
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	trap := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) })}
	go func() { _ = trap.Serve(ln) }()
	t.Cleanup(func() { _ = trap.Close() })

	s := start(t, stack.Config{Sims: sims(2, "base", 100), Objects: objects("DEFAULT"), Pool: "sim-pool", PluginConfig: routed("")})
	spoof := map[string]string{"x-gateway-destination-endpoint": ln.Addr().String()}
	for _, l := range []string{stack.LLMListener, stack.PlainListener} {
		for i := 0; i < 5; i++ {
			r := client.Do(context.Background(), s.URL(l), loadgen.Request{Headers: spoof, Body: loadgen.Completion("base", "q", 2, false)})
			require.True(t, r.OK(), "%s: %d %v", l, r.Status, r.Err)
		}
	}
	require.NoError(t, s.StopPicker())
	for i := 0; i < 5; i++ {
		r := client.Do(context.Background(), s.URL(stack.LLMListener), loadgen.Request{Headers: spoof, Body: loadgen.Completion("base", "q", 2, false)})
		require.True(t, r.OK())
	}
	require.Zero(t, hits.Load(), "the spoofed address received traffic")
	for ep := range s.Gateway.UpstreamCounts(stack.LLMCluster) {
		require.Contains(t, s.Fleet.Addrs, ep)
	}
}

// Body routing on an Envoy without allow_on_headers_stop_iteration: the
// request still completes, through the watchdog, and the cause is logged.
func TestBodyModeWithoutFlagUsesWatchdog(t *testing.T) {
	var logs strings.Builder
	no := false
	s := start(t, stack.Config{Sims: sims(1, "base", 100), Objects: objects("DEFAULT"), Pool: "sim-pool", Workers: 1,
		PluginConfig: routed(`,"watchdog_ms":150`), AllowOnHeadersStopIteration: &no, Log: &syncWriter{b: &logs}})
	for i := 0; i < 3; i++ {
		r := client.Do(context.Background(), s.URL(stack.LLMListener), loadgen.Request{Body: loadgen.Completion("base", "q", 2, true)})
		require.True(t, r.OK(), "%d %s %v", r.Status, r.Body, r.Err)
		require.Equal(t, int64(2), r.OutputTokens)
	}
	require.Equal(t, float64(3), counterValue(s.PrometheusText(), `asm_llm_proxy_picks_total{outcome="watchdog"}`))
	require.Equal(t, 1, strings.Count(logs.String(), "allow_on_headers_stop_iteration"), "logged once per VM: %s", logs.String())
}

// The picker dies and comes back mid-run. Through the Wasm filter every
// request for an InferenceModel's name keeps succeeding, served by one of
// its target adapters: the filter resolves the model with the table it
// keeps. Through a gateway on the ext_proc path (failureMode FailOpen) the
// same requests reach the engine unrewritten and fail with its 404, while
// requests for a model the engine serves succeed: what docs/deploy.md
// says an operator there can and cannot rely on.
func TestVirtualModelWhileThePickerIsAway(t *testing.T) {
	adapters := []string{"tweet-summary-1", "tweet-summary-2"}
	s := start(t, stack.Config{Sims: sims(2, "base", 200, adapters...), Pool: "sim-pool", PluginConfig: routed(""),
		Objects: objects("DEFAULT", [3]string{"half", "Standard", "tweet-summary-1:50,tweet-summary-2:50"}), ExtProcFailOpen: true})
	send := func(url, model string, n int) (served map[string]int, statuses map[int]int) {
		served, statuses = map[string]int{}, map[int]int{}
		for i := 0; i < n; i++ {
			r := client.Do(context.Background(), url, loadgen.Request{Body: loadgen.Completion(model, "q", 2, i%2 == 0)})
			require.NoError(t, r.Err)
			statuses[r.Status]++
			if r.OK() {
				served[r.Model]++
			}
		}
		return served, statuses
	}
	wasm := s.URL(stack.LLMListener)
	_, statuses := send(wasm, "half", 10)
	require.Equal(t, map[int]int{200: 10}, statuses)
	eventually(t, 20*time.Second, "the filter to keep the pool's resolution table", func() bool {
		return counterValue(s.PrometheusText(), `asm_llm_proxy_resolution_fetches_total{outcome="ok"}`) >= 1
	})

	require.NoError(t, s.StopPicker())
	served, statuses := send(wasm, "half", 30)
	t.Logf("picker down, through the filter: %v", served)
	require.Equal(t, map[int]int{200: 30}, statuses, "no request lost")
	require.Len(t, served, 2, "both targets, by weight")
	prom := s.PrometheusText()
	require.Equal(t, float64(30), counterValue(prom, `asm_llm_proxy_local_resolutions_total{outcome="rewritten"}`), prom)
	require.Equal(t, float64(30), counterValue(prom, `asm_llm_proxy_picks_total{outcome="fallback"}`)+
		counterValue(prom, `asm_llm_proxy_picks_total{outcome="failopen"}`))

	_, statuses = send(s.ExtProcGateway.URL(), "half", 4)
	require.Equal(t, map[int]int{404: 4}, statuses, "ext_proc failing open: the virtual model reaches the engine as it came")
	_, statuses = send(s.ExtProcGateway.URL(), "tweet-summary-1", 4)
	require.Equal(t, map[int]int{200: 4}, statuses, "a model the engine serves is fine")

	require.NoError(t, s.RestartPicker())
	picked := counterValue(s.PrometheusText(), `asm_llm_proxy_picks_total{outcome="picked"}`)
	_, statuses = send(wasm, "half", 10)
	require.Equal(t, map[int]int{200: 10}, statuses)
	require.Equal(t, picked+10, counterValue(s.PrometheusText(), `asm_llm_proxy_picks_total{outcome="picked"}`), "picks again")
}
