package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteTableLayout(t *testing.T) {
	m := Calculate(trace(), 2.0, MetricsOptions{Percentiles: []float64{90, 99.9}, MaxConcurrencySet: true})
	var b bytes.Buffer
	WriteTable(&b, m, TableInfo{MaxConcurrency: 8, RequestRate: 10, Duration: 2.0,
		PercentileMetrics: []string{"ttft", "tpot", "itl", "e2el", "client_queue_time", "e2el_including_client_queue"}})
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	// vllm bench's labels, in its order, "{:<40} {:<10}" / "{:<40} {:<10.2f}".
	want := []string{
		"============ Serving Benchmark Result ============",
		"Successful requests:                     4         ",
		"Failed requests:                         1         ",
		"Maximum request concurrency:             8         ",
		"Request rate configured (RPS):           10.00     ",
		"Benchmark duration (s):                  2.00      ",
		"Total input tokens:                      36        ",
		"Total generated tokens:                  9         ",
		"Request throughput (req/s):              2.00      ",
		"Output token throughput (tok/s):         4.50      ",
		"Peak output token throughput (tok/s):    6.00      ",
		"Peak concurrent requests:                2.00      ",
		"Total token throughput (tok/s):          22.50     ",
		"---------------Time to First Token----------------",
		"Mean TTFT (ms):                          162.50    ",
		"Median TTFT (ms):                        150.00    ",
		"P90 TTFT (ms):                           270.00    ",
		"P99.9 TTFT (ms):                         299.70    ",
		"-----Time per Output Token (excl. 1st token)------",
		"Mean TPOT (ms):                          66.67     ",
		"Median TPOT (ms):                        66.67     ",
		"P90 TPOT (ms):                           93.33     ",
		"P99.9 TPOT (ms):                         99.93     ",
		"---------------Inter-token Latency----------------",
		"Mean ITL (ms):                           60.00     ",
		"Median ITL (ms):                         50.00     ",
		"P90 ITL (ms):                            100.00    ",
		"P99.9 ITL (ms):                          100.00    ",
		"----------------End-to-end Latency----------------",
		"Mean E2EL (ms):                          237.50    ",
		"Median E2EL (ms):                        250.00    ",
		"P90 E2EL (ms):                           370.00    ",
		"P99.9 E2EL (ms):                         399.70    ",
		"---------------Client-side Queueing---------------",
		"Mean Client Queue Time (ms):             75.00     ",
		"Median Client Queue Time (ms):           50.00     ",
		"P90 Client Queue Time (ms):              170.00    ",
		"P99.9 Client Queue Time (ms):            199.70    ",
		"==================================================",
	}
	assert.Equal(t, want, lines, "no queue-inclusive E2EL: the rate is inf in these metrics")

	// Unset concurrency and an infinite rate drop their rows; only the
	// selected metrics are printed.
	b.Reset()
	WriteTable(&b, m, TableInfo{RequestRate: math.Inf(1), Duration: 2, PercentileMetrics: []string{"ttft"}})
	out := b.String()
	assert.NotContains(t, out, "Maximum request concurrency")
	assert.NotContains(t, out, "Request rate configured")
	assert.Contains(t, out, "Mean TTFT (ms):")
	assert.NotContains(t, out, "TPOT")
}

func TestSavedResultKeys(t *testing.T) {
	outs := trace()
	m := Calculate(outs, 2.0, MetricsOptions{Percentiles: []float64{90, 99}})
	info := ResultInfo{Date: "20260101-000000", Backend: "openai", ModelID: "Qwen/Qwen2.5-7B", NumPrompts: 5,
		Metadata: [][2]string{{"policy", "round_robin"}}, RequestRate: math.Inf(1), Burstiness: 1, DatasetName: "random"}
	pm := []string{"ttft", "tpot", "itl", "e2el"}
	b, err := json.Marshal(SavedResult(info, m, outs, 2.0, pm, false))
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	for _, k := range []string{"date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts",
		"request_rate", "burstiness", "max_concurrency", "duration", "completed", "failed", "total_input_tokens",
		"total_output_tokens", "request_throughput", "request_goodput", "output_throughput", "total_token_throughput",
		"latencies", "queue_times", "max_output_tokens_per_s", "max_concurrent_requests",
		"mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p90_ttft_ms", "p99_ttft_ms",
		"mean_tpot_ms", "median_tpot_ms", "std_tpot_ms", "p90_tpot_ms", "p99_tpot_ms",
		"mean_itl_ms", "median_itl_ms", "std_itl_ms", "p90_itl_ms", "p99_itl_ms",
		"mean_e2el_ms", "median_e2el_ms", "std_e2el_ms", "p90_e2el_ms", "p99_e2el_ms", "policy"} {
		assert.Contains(t, got, k)
	}
	for _, k := range []string{"ttfts", "itls", "input_lens", "output_lens", "errors", "generated_texts", "start_times"} {
		assert.NotContains(t, got, k, "per-request lists need --save-detailed, as in vllm")
	}
	assert.Equal(t, "inf", got["request_rate"])
	assert.Nil(t, got["max_concurrency"])
	assert.Equal(t, float64(4), got["completed"])
	assert.Equal(t, float64(1), got["failed"])
	assert.Equal(t, float64(36), got["total_input_tokens"])
	assert.InDelta(t, 270, got["p90_ttft_ms"], 1e-9)
	assert.Equal(t, "round_robin", got["policy"])
	// Key order follows vllm's dict.
	assert.True(t, strings.Index(string(b), `"date"`) < strings.Index(string(b), `"completed"`))
	assert.True(t, strings.Index(string(b), `"completed"`) < strings.Index(string(b), `"mean_ttft_ms"`))

	b, err = json.Marshal(SavedResult(info, m, outs, 2.0, pm, true))
	require.NoError(t, err)
	got = map[string]any{}
	require.NoError(t, json.Unmarshal(b, &got))
	assert.Equal(t, []any{10.0, 20.0, 30.0, 5.0, 1.0}, got["input_lens"])
	assert.Equal(t, []any{4.0, 1.0, 0.0, 3.0, 1.0}, got["output_lens"])
	assert.Equal(t, []any{0.1, 0.3, 0.0, 0.2, 0.05}, got["ttfts"])
	assert.Equal(t, []any{}, got["itls"].([]any)[2], "a failed request has an empty ITL list, not null")
	assert.Equal(t, "429 Too Many Requests", got["errors"].([]any)[2])
	assert.Equal(t, "", got["errors"].([]any)[0])
}

func TestObjectOrderAndSet(t *testing.T) {
	var o Object
	o.Set("b", 1)
	o.Set("a", "x")
	o.Set("b", 2)
	b, err := json.Marshal(o)
	require.NoError(t, err)
	assert.Equal(t, `{"b":2,"a":"x"}`, string(b))
}

func TestCenterIsPythons(t *testing.T) {
	assert.Equal(t, "==ab===", center("ab", 7, '='))
	assert.Equal(t, "abc", center("abc", 2, '='))
}
