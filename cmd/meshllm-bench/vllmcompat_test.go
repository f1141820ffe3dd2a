package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// These tests run vllm's own command lines and check what they mean here:
// the benchmark vllm bench serve would run, and the tokens a server (or a
// gateway in front of it) counts.

func startSim(t *testing.T, cfg vllmsim.Config) *vllmsim.Fleet {
	t.Helper()
	cfg.Speed = 200
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	fleet, err := vllmsim.StartFleet(ctx, []vllmsim.Config{cfg})
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); _ = fleet.Close() })
	return fleet
}

// The product documents' command (benchmark_serving.py of early 2025),
// verbatim, then later flags shrinking it to a test and pointing it at a
// simulated server that serves their model name.
func TestProductDocumentsCommandRuns(t *testing.T) {
	fleet := startSim(t, vllmsim.Config{Model: "/model/qwen"})
	u, err := url.Parse(fleet.URLs()[0])
	require.NoError(t, err)
	args := strings.Fields(`--backend vllm --model /models/DeepSeek-R1-Distill-Qwen-7B --served-model-name /model/qwen
		--trust-remote-code --dataset-name random --random-prefix-len 10 --random-input-len 1550
		--random-output-len 1800 --random-range-ratio 0.2 --num-prompts 3000 --max-concurrency 200
		--host GW_IP --port 8080 --endpoint /v1/completions --save-result`)
	args = append(args, "--host", u.Hostname(), "--port", u.Port(), "--num-prompts", "12", "--max-concurrency", "4",
		"--random-input-len", "40", "--random-output-len", "6")
	r := runBench(t, args...)
	assert.Contains(t, r.stderr, "--trust-remote-code: accepted, has no effect here (")
	assert.Contains(t, r.stdout, "ignore_eos: true (vllm bench serve's default for random since November 2025")
	assert.Contains(t, r.stdout, "Starting initial single prompt test run...\nSkipping endpoint ready check.\nStarting main benchmark run...\n")
	assert.Equal(t, float64(12), r.saved["completed"])
	assert.Equal(t, "/models/DeepSeek-R1-Distill-Qwen-7B", r.saved["model_id"])
	assert.Equal(t, "vllm", r.saved["backend"])
	prompt, gen, finished := totals(fleet)
	assert.Equal(t, float64(prompt), r.saved["total_input_tokens"])
	assert.Equal(t, float64(gen), r.saved["total_output_tokens"])
	assert.Equal(t, 12, finished, "every output ran to its length (ignore_eos)")
}

// The server counts the test run and the warm-ups; the totals leave them
// out and the extras give them, so the two reconcile exactly.
func TestWarmupTokensReconcileWithTheServer(t *testing.T) {
	fleet := startSim(t, vllmsim.Config{})
	r := runBench(t, "--base-url", fleet.URLs()[0], "--num-prompts", "10", "--random-input-len", "30",
		"--random-output-len", "5", "--max-concurrency", "3", "--ready-check-timeout-sec", "10", "--num-warmups", "2")
	assert.Contains(t, r.stdout, "Waiting for endpoint to become up in 10 seconds\nInitial test run completed.\n"+
		"Warming up with 2 requests...\nWarmup run completed.\nStarting main benchmark run...\n")
	assert.Equal(t, float64(10), r.saved["completed"])
	assert.Equal(t, float64(3), r.saved["meshllm_warmup_requests"], "one test run, two warm-ups")
	assert.Equal(t, float64(0), r.saved["meshllm_warmup_failed"])
	prompt, gen, _ := totals(fleet)
	assert.Equal(t, float64(prompt), r.saved["total_input_tokens"].(float64)+r.saved["meshllm_warmup_input_tokens"].(float64))
	assert.Equal(t, float64(gen), r.saved["total_output_tokens"].(float64)+r.saved["meshllm_warmup_output_tokens"].(float64))
	assert.Positive(t, r.saved["meshllm_warmup_input_tokens"])
	assert.Contains(t, r.stdout, "Warm-up requests (not in the totals):    3")
}

// A server whose model stops after 2 tokens: ignore_eos decides whether
// outputs run to their length of 4.
func TestIgnoreEOSAsVllmBenchServe(t *testing.T) {
	fleet := startSim(t, vllmsim.Config{OutputLen: vllmsim.OutputLen{Kind: "fixed", A: 2}})
	base := []string{"--base-url", fleet.URLs()[0], "--num-prompts", "6", "--output-len", "4", "--max-concurrency", "3"}
	for _, c := range []struct {
		args   []string
		output int
		header string
	}{
		{[]string{"--dataset-name", "random", "--random-input-len", "12"}, 4, "ignore_eos: true (vllm bench serve's default for random"},
		{[]string{"--dataset-name", "random", "--random-input-len", "12", "--no-ignore-eos"}, 2, "ignore_eos: false (--no-ignore-eos"},
		{[]string{"--dataset-name", "prefix_repetition", "--prefix-repetition-num-prefixes", "2",
			"--prefix-repetition-prefix-len", "8", "--prefix-repetition-suffix-len", "4"}, 2, "ignore_eos: false (vllm bench serve's default for prefix_repetition"},
		{[]string{"--dataset-name", "prefix_repetition", "--prefix-repetition-num-prefixes", "2",
			"--prefix-repetition-prefix-len", "8", "--prefix-repetition-suffix-len", "4", "--ignore-eos"}, 4, "ignore_eos: true (--ignore-eos"},
	} {
		r := runBench(t, append(append([]string{}, base...), c.args...)...)
		assert.Contains(t, r.stdout, c.header, "%v", c.args)
		assert.Equal(t, []int{c.output, c.output, c.output, c.output, c.output, c.output}, ints(t, r.saved["output_lens"]), "%v", c.args)
		assert.Equal(t, c.output == 4, r.saved["meshllm_ignore_eos"])
	}
}

func TestGoodputAndAppendedResults(t *testing.T) {
	fleet := startSim(t, vllmsim.Config{})
	file := t.TempDir() + "/all.json"
	for i := range 2 {
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		code := bench.Main(ctx, []string{"--base-url", fleet.URLs()[0], "--num-prompts", "5", "--random-input-len", "8",
			"--random-output-len", "3", "--goodput", "ttft:600000", "e2el:600000", "--append-result",
			"--result-filename", file, "--metadata", fmt.Sprintf("run=%d", i)}, &stdout, &stderr)
		cancel()
		require.Equal(t, 0, code, stderr.String())
		assert.Regexp(t, `\nRequest goodput \(req/s\):\s+\d`, stdout.String())
	}
	lines := readLines(t, file)
	require.Len(t, lines, 2, "one JSON object a line, as vllm's --append-result")
	for i, l := range lines {
		assert.Equal(t, fmt.Sprint(i), l["run"])
		assert.Equal(t, l["request_throughput"], l["request_goodput"], "every request within bounds of ten minutes")
	}
}

func readLines(t *testing.T, name string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	var out []map[string]any
	for _, line := range strings.Split(string(b), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		out = append(out, m)
	}
	return out
}
