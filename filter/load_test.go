package main

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/internal/labelguard"
	"github.com/meshllm/meshllm/internal/testsupport/envoystats"
)

// TestWasmHundredThousandRandomModels pushes 100,000 requests, each with a
// new random model name (echoed as the served model, so both labels are
// hostile), through the compiled filter. The label guard must keep every
// metric family at model_label_limit label sets plus "other", and the VM's
// linear memory must stop growing once warm: nothing per request is kept.
func TestWasmHundredThousandRandomModels(t *testing.T) {
	const (
		total  = 100_000
		warmup = 10_000
		limit  = 100
	)
	vm := newWasmVM(t) // a VM of its own: a clean memory baseline
	defer vm.Close()
	host := startHost(t, vm, fmt.Sprintf(`{"model_label_limit": %d}`, limit))
	rng := rand.New(rand.NewSource(1))
	prompt := strings.Repeat("tell me about gateways ", 40)
	stream := fixture(t, "chat_stream_usage.sse")
	var baseline int
	for i := 0; i < total; i++ {
		model := fmt.Sprintf("m-%d-%x", i, rng.Uint64())
		req := []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"` + prompt + `"}],"stream":true}`)
		ex := exchange{reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{req[:200], req[200:]}}
		if i%2 == 0 {
			resp := []byte(`{"model":"` + model + `","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5}}`)
			ex.respHeaders, ex.respChunks = jsonResponse("200"), [][]byte{resp}
		} else {
			ex.respHeaders, ex.respChunks = sseResponse(), [][]byte{stream[:1000], stream[1000:]}
		}
		run(t, host, ex)
		if i == warmup {
			baseline = wasmMemoryBytes(t, vm)
		}
	}
	final := wasmMemoryBytes(t, vm)
	t.Logf("wasm linear memory: %d KiB after %d requests, %d KiB after %d", baseline>>10, warmup, final>>10, total)
	require.LessOrEqual(t, final, baseline+(1<<20), "linear memory kept growing after warm-up")

	// Count series per Prometheus metric, as Envoy would expose them.
	specs, err := envoystats.LoadStatsTags("../envoy/envoy.yaml")
	require.NoError(t, err)
	ex, err := envoystats.NewExtractor(specs)
	require.NoError(t, err)
	perMetric := map[string]int{}
	for _, name := range definedMetricNames(t, host) {
		series := ex.Of(name)
		perMetric[series[:strings.IndexAny(series+"{", "{")]]++
	}
	t.Logf("series per metric: %v", perMetric)
	for _, m := range []string{stats.PromptTokens, stats.CompletionTokens, stats.TTFBMillis, stats.DurationMillis, stats.Requests} {
		require.LessOrEqual(t, perMetric[m], limit+1, "%s has more than %d label sets plus other", m, limit)
		require.Greater(t, perMetric[m], 0)
	}
	// No tokens are lost to the guard: beyond the limit they count under other.
	var promptSum uint64
	for _, name := range definedMetricNames(t, host) {
		if strings.HasSuffix(name, ";.;"+stats.PromptTokens) {
			promptSum += counter(t, host, name)
		}
	}
	require.Equal(t, uint64(total/2*10+total/2*131), promptSum)
	require.Positive(t, counter(t, host, promptTokens(labelguard.Other, labelguard.Other)))
}
