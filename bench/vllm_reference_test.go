package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The lists below are copied from vllm-project/vllm
// vllm/benchmarks/serve.py at 009e6d4a (vllm bench serve), benchmark() and
// main_async(), for a generation backend with a tokenizer, --max-concurrency
// and a finite --request-rate set, --goodput given, every
// --percentile-metrics metric selected and --metric-percentiles 99. They are
// written out by hand, section lines included, so the test does not share
// code with what it checks.

// vllmTableLines are the table's section lines and row labels, in order.
var vllmTableLines = []string{
	"============ Serving Benchmark Result ============",
	"Successful requests:",
	"Failed requests:",
	"Maximum request concurrency:",
	"Request rate configured (RPS):",
	"Benchmark duration (s):",
	"Total input tokens:",
	"Total generated tokens:",
	"Request throughput (req/s):",
	"Request goodput (req/s):",
	"Output token throughput (tok/s):",
	"Peak output token throughput (tok/s):",
	"Peak concurrent requests:",
	"Total token throughput (tok/s):",
	"---------------Time to First Token----------------",
	"Mean TTFT (ms):",
	"Median TTFT (ms):",
	"P99 TTFT (ms):",
	"-----Time per Output Token (excl. 1st token)------",
	"Mean TPOT (ms):",
	"Median TPOT (ms):",
	"P99 TPOT (ms):",
	"---------------Inter-token Latency----------------",
	"Mean ITL (ms):",
	"Median ITL (ms):",
	"P99 ITL (ms):",
	"----------------End-to-end Latency----------------",
	"Mean E2EL (ms):",
	"Median E2EL (ms):",
	"P99 E2EL (ms):",
	"---------------Client-side Queueing---------------",
	"Mean Client Queue Time (ms):",
	"Median Client Queue Time (ms):",
	"P99 Client Queue Time (ms):",
	"--------Queue-inclusive End-to-end Latency--------",
	"Mean E2EL incl. Client Queue (ms):",
	"Median E2EL incl. Client Queue (ms):",
	"P99 E2EL incl. Client Queue (ms):",
	"==================================================",
}

// vllmResultKeys are the saved result's keys, in order, with --save-detailed
// and one --metadata key ("policy").
var vllmResultKeys = []string{
	"date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts", "policy",
	"request_rate", "burstiness", "max_concurrency",
	"duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
	"request_goodput", "output_throughput", "total_token_throughput", "input_lens", "output_lens", "ttfts", "itls",
	"latencies", "start_times", "queue_times", "generated_texts", "errors", "max_output_tokens_per_s",
	"max_concurrent_requests", "rtfx",
	"mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms",
	"mean_tpot_ms", "median_tpot_ms", "std_tpot_ms", "p99_tpot_ms",
	"mean_itl_ms", "median_itl_ms", "std_itl_ms", "p99_itl_ms",
	"mean_e2el_ms", "median_e2el_ms", "std_e2el_ms", "p99_e2el_ms",
	"mean_client_queue_time_ms", "median_client_queue_time_ms", "std_client_queue_time_ms", "p99_client_queue_time_ms",
	"mean_e2el_including_client_queue_ms", "median_e2el_including_client_queue_ms",
	"std_e2el_including_client_queue_ms", "p99_e2el_including_client_queue_ms",
}

var allMetrics = []string{"ttft", "tpot", "itl", "e2el", "client_queue_time", "e2el_including_client_queue"}

func TestTableLabelsAreVllms(t *testing.T) {
	m := Calculate(trace(), 2, MetricsOptions{Percentiles: []float64{99}, MaxConcurrencySet: true, RateFinite: true,
		Goodput: map[string]float64{"ttft": 200}})
	var b bytes.Buffer
	WriteTable(&b, m, TableInfo{MaxConcurrency: 4, RequestRate: 5, Duration: 2, PercentileMetrics: allMetrics})
	var got []string
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if len(line) == 50 && strings.Trim(line, "=-") != line {
			got = append(got, line) // a section line
			continue
		}
		require.Greater(t, len(line), 41, "a row: {:<40} {:<10}")
		assert.Equal(t, " ", line[40:41])
		got = append(got, strings.TrimRight(line[:40], " "))
	}
	assert.Equal(t, vllmTableLines, got)
}

func TestResultKeysAreVllmsThenExtras(t *testing.T) {
	m := Calculate(trace(), 2, MetricsOptions{Percentiles: []float64{99}, MaxConcurrencySet: true, RateFinite: true,
		Goodput: map[string]float64{"e2el": 100}})
	ignore := true
	saved := SavedResult(ResultInfo{Date: "20260101-000000", Backend: "vllm", ModelID: "m", NumPrompts: 5,
		Metadata: [][2]string{{"policy", "default"}}, RequestRate: 5, Burstiness: 1, MaxConcurrency: 4,
		DatasetName: "random", IgnoreEOS: &ignore, Warmups: &WarmupTotals{Sent: 2, InputTokens: 20, OutputTokens: 8}},
		m, trace(), 2, allMetrics, true)
	var vllmKeys, extras []string
	for _, f := range saved {
		if strings.HasPrefix(f.Key, "meshllm_") {
			extras = append(extras, f.Key)
			continue
		}
		require.Empty(t, extras, "%s: vllm's keys come first, the extras after them", f.Key)
		vllmKeys = append(vllmKeys, f.Key)
	}
	assert.Equal(t, vllmResultKeys, vllmKeys)
	assert.Equal(t, []string{"meshllm_dataset_name", "meshllm_ignore_eos", "meshllm_warmup_requests",
		"meshllm_warmup_failed", "meshllm_warmup_input_tokens", "meshllm_warmup_output_tokens",
		"meshllm_served_models", "meshllm_response_models"}, extras)

	b, err := json.Marshal(saved)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	assert.InDelta(t, 0.5, got["request_goodput"], 1e-12, "one request of four within 100 ms E2EL, over 2 s")
	assert.Equal(t, true, got["meshllm_ignore_eos"])
	assert.Equal(t, 2.0, got["meshllm_warmup_requests"])
}
