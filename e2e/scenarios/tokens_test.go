package scenarios

import (
	"context"
	"fmt"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/loadgen"
	"github.com/meshllm/meshllm/e2e/stack"
	"github.com/meshllm/meshllm/internal/metricnames"
)

// Token metrics equal the simulator's own counters exactly, for streaming
// requests with and without the client's include_usage (the filter, or the
// picker over ext_proc, injects it and hides the extra chunk) and
// non-streaming ones, chat and completions: at the gateway (the filter's
// asm_llm_proxy_*), and at the picker on the ext_proc path.
func TestTokenMetricsMatchSimulator(t *testing.T) {
	for _, path := range routePaths {
		t.Run(path.name, func(t *testing.T) { tokenMetricsMatch(t, path) })
	}
}

func tokenMetricsMatch(t *testing.T, path routePath) {
	s := start(t, stack.Config{Sims: sims(3, "base", 100, "a1"), Objects: objects("DEFAULT"), Pool: "sim-pool", PluginConfig: routed("")})
	rng := rand.New(rand.NewSource(11))
	var reqs []loadgen.Request
	for i := 0; i < 120; i++ {
		model := []string{"base", "a1"}[i%2]
		prompt := loadgen.Words(rng, 10+rng.Intn(200))
		n := 1 + rng.Intn(60)
		switch i % 4 {
		case 0: // streaming, client asked for usage
			reqs = append(reqs, loadgen.Request{Body: loadgen.Completion(model, prompt, n, true)})
		case 1: // streaming, no usage asked: the filter injects it
			reqs = append(reqs, loadgen.Request{Body: []byte(fmt.Sprintf(`{"model":%q,"prompt":%q,"max_tokens":%d,"ignore_eos":true,"stream":true}`, model, prompt, n))})
		case 2: // non-streaming
			reqs = append(reqs, loadgen.Request{Body: loadgen.Completion(model, prompt, n, false)})
		case 3: // chat, streaming without usage
			reqs = append(reqs, loadgen.Request{Path: "/v1/chat/completions",
				Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_completion_tokens":%d,"ignore_eos":true,"stream":true}`, model, prompt, n))})
		}
	}
	results := client.Run(context.Background(), path.url(s), reqs, 8, nil)
	for i, r := range results {
		require.True(t, r.OK(), "%d: %d %s %v", i, r.Status, r.Body, r.Err)
		if i%4 == 1 || i%4 == 3 {
			require.False(t, r.HasUsage, "the client that did not ask for usage must not get the usage chunk")
		}
	}
	for _, srv := range s.Fleet.Servers {
		srv.Engine().WaitIdle()
	}
	var prompt, gen uint64
	for _, st := range s.Fleet.Stats() {
		prompt += st.PromptTokens
		gen += st.GenerationTokens
	}
	// The same series on both paths: the gateway's /stats/prometheus with
	// the filter, the picker's /metrics over ext_proc.
	prom := s.PrometheusText()
	if path.name == "ext_proc" {
		prom = pickerMetrics(t, s)
	}
	require.Equal(t, float64(prompt), sumSeries(prom, metricnames.PromptTokens))
	require.Equal(t, float64(gen), sumSeries(prom, metricnames.CompletionTokens))
	require.Zero(t, sumSeries(prom, metricnames.UsageMissing))
	require.Equal(t, float64(len(reqs)), sumSeries(prom, metricnames.Requests))
	t.Logf("%s: prompt tokens %d, completion tokens %d: metrics and simulators agree", path.name, prompt, gen)
}
