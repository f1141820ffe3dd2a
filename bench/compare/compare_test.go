package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/e2e/stack"
)

func TestOrderAlternates(t *testing.T) {
	ps := []Policy{Policies["round_robin"], Policies["default"], Policies["prefix_cache"]}
	var got []string
	for _, o := range Order(ps, 3) {
		got = append(got, ps[o[0]].Name+itoa(o[1]+1))
	}
	require.Equal(t, []string{"round_robin1", "default1", "prefix_cache1", "prefix_cache2", "default2", "round_robin2",
		"round_robin3", "default3", "prefix_cache3"}, got)
}

func TestSeriesValue(t *testing.T) {
	p := parseVLLM(strings.NewReader("# HELP x\nvllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.25\n" +
		"vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 3\nvllm:generation_tokens_total{a=\"b c\"} 1e+03\nbroken\n"))
	require.Equal(t, PodSample{KVCacheUsage: 0.25, Waiting: 3, GenerationTokens: 1000}, p)
}

// TestSmokeComparison is the CI-sized comparison: two policies, one
// repetition, 30 prompts on two fast pods. It asserts that the report is
// produced and consistent with the simulators' own counters, never a speed.
func TestSmokeComparison(t *testing.T) {
	wasm, err := stack.LoadWasm()
	require.NoError(t, err)
	o, err := bench.ParseOptions(append(append([]string{}, benchDefaults...),
		"--dataset-name", "random", "--random-input-len", "64", "--random-output-len", "12", "--random-range-ratio", "0.5",
		"--random-prefix-len", "32", "--num-prompts", "30", "--max-concurrency", "8", "--seed", "3"), os.Stderr)
	require.NoError(t, err)
	preset := fleet.Presets["qwen2.5-7b-a10"]
	preset.Pods = 2
	names := []string{"round_robin", "prefix_cache"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runs, err := RunAll(ctx, Config{
		Workload: "smoke", Bench: o, Policies: []Policy{Policies[names[0]], Policies[names[1]]}, Repetitions: 1,
		Preset: preset, Speed: 100, SampleInterval: 20 * time.Millisecond, Wasm: wasm, Log: testLog{t},
	})
	require.NoError(t, err)
	require.Len(t, runs, 2)
	dir := t.TempDir()
	require.NoError(t, Write(dir, ReportInfo{Workload: "smoke", Command: "go test", Preset: "qwen2.5-7b-a10", Fleet: preset, Scale: "1", Speed: 100, Repetitions: 1, Dataset: describe(o)}, names, runs))

	var summary struct {
		Workload string                      `json:"workload"`
		Policies map[string][]map[string]any `json:"policies"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &summary))
	require.Equal(t, "smoke", summary.Workload)
	require.Len(t, summary.Policies, 2)
	for _, r := range runs {
		res := summary.Policies[r.Policy]
		require.Len(t, res, 1, r.Policy)
		got := res[0]
		for _, k := range []string{"median_ttft_ms", "p90_ttft_ms", "p99_ttft_ms", "output_throughput", "duration", "total_input_tokens"} {
			require.Contains(t, got, k, r.Policy)
		}
		for k, v := range got {
			_, isList := v.([]any)
			require.False(t, isList, "%s: summary.json is compact, but %s is a list", r.Policy, k)
		}
		for _, k := range []string{"p90_ttft_after_wave_ms", "max_ttft_ms", "kv_mean_pct", "preemptions"} {
			require.Contains(t, got, k, "%s: the report's own rows are in summary.json", r.Policy)
		}
		require.Greater(t, got["max_ttft_ms"], got["p99_ttft_ms"].(float64)-1e-9, r.Policy)
		require.Equal(t, 30.0, got["completed"], r.Policy)
		require.Equal(t, 0.0, got["failed"], r.Policy)
		require.Equal(t, map[string]any{}, got["failed_request_errors"], r.Policy)
		var prompt, gen uint64
		for _, s := range r.Sims {
			prompt += s.PromptTokens
			gen += s.GenerationTokens
		}
		require.Equal(t, float64(prompt), got["total_input_tokens"], "%s: client prompt tokens = simulators' prompt_tokens_total", r.Policy)
		require.Equal(t, float64(gen), got["total_output_tokens"], "%s: client output tokens = simulators' generation_tokens_total", r.Policy)
		sum := 0
		for _, n := range r.RequestsPerPod {
			sum += n
		}
		require.Equal(t, 30, sum, "%s: the gateway sent every request to a pod of the fleet", r.Policy)
		require.Len(t, r.TTFTs, 30)
		// The last scrape follows the last response: the sampled counters
		// are the simulators' final ones.
		last := r.Samples[len(r.Samples)-1]
		var sampled float64
		for _, p := range last.Pods {
			require.False(t, p.ScrapeFailed)
			sampled += p.GenerationTokens
		}
		require.Equal(t, float64(gen), sampled, r.Policy)
	}
	require.Equal(t, 30.0, runs[1].Gateway[`asm_llm_proxy_picks_total{outcome="picked"}`]+runs[1].Gateway[`asm_llm_proxy_picks_total{outcome="fallback"}`],
		"every LLM-aware request asked the picker: %v", runs[1].Gateway)

	var raw []struct {
		Policy   string               `json:"policy"`
		Requests map[string][]float64 `json:"requests"`
	}
	b, err = os.ReadFile(filepath.Join(dir, "samples.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &raw))
	require.Len(t, raw, 2)
	for _, r := range raw {
		for _, k := range []string{"latencies", "queue_times", "ttfts", "start_times"} {
			require.Len(t, r.Requests[k], 30, "%s: samples.json keeps every request's %s", r.Policy, k)
		}
	}

	report, err := os.ReadFile(filepath.Join(dir, "report.md"))
	require.NoError(t, err)
	for _, want := range []string{"| TTFT p90 (ms) |", "| round_robin | prefix_cache | prefix_cache / RR |", "go test", "ttft_cdf.png", "2 pods of Qwen"} {
		require.Contains(t, string(report), want)
	}
	for _, f := range []string{"ttft_cdf.png", "kv_usage.png", "queue_depth.png", "ttft_by_send_time.png", "output_throughput.png", "requests_per_pod.png"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		img, err := png.Decode(bytes.NewReader(b))
		require.NoError(t, err, f)
		require.Greater(t, img.Bounds().Dx(), 100, f)
	}
}

func TestCountErrors(t *testing.T) {
	outs := []bench.Output{{Success: true}, {Error: "503 a"}, {Error: "EOF"}, {Error: "503 a"}, {Success: true}}
	for i := 0; i < 6; i++ {
		outs = append(outs, bench.Output{Error: fmt.Sprintf("distinct %d", i)})
	}
	require.Equal(t, []ErrorCount{{"503 a", 2}, {"EOF", 1}, {"distinct 0", 1}, {"distinct 1", 1}, {"distinct 2", 1}, {"other errors", 3}}, countErrors(outs))
	require.Nil(t, countErrors([]bench.Output{{Success: true}}))
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// A rate the user gives in simulated requests a second is sent faster in
// wall time when the fleet runs faster than real time: at speed 4, 10
// requests a simulated second are 40 a wall second.
func TestWallRate(t *testing.T) {
	for _, c := range []struct{ rate, speed, want float64 }{
		{10, 4, 40},
		{10, 1, 10},
		{3, 0.5, 1.5},
		{math.Inf(1), 4, math.Inf(1)},
	} {
		if got := wallRate(c.rate, c.speed); got != c.want {
			t.Errorf("wallRate(%v, %v) = %v, want %v", c.rate, c.speed, got, c.want)
		}
	}
}
