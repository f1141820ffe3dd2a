package bench

import (
	"io"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNormalizeArgs(t *testing.T) {
	got := normalizeArgs([]string{"--dataset_name", "random", "--lora-modules", "a", "b:2", "--num_prompts=5",
		"--metadata", "k=v", "--save-result", "-seed", "3"})
	assert.Equal(t, []string{"--dataset-name", "random", "--lora-modules=a", "--lora-modules=b:2", "--num-prompts=5",
		"--metadata=k=v", "--save-result", "--seed", "3"}, got)
}

func TestParseOptionsSeedsShape(t *testing.T) {
	// The seeds' command line, as vllm bench takes it.
	o, err := ParseOptions([]string{"--base-url", "http://gw:8081", "--dataset-name", "random", "--random-prefix-len", "10",
		"--random-input-len", "1550", "--random-output-len", "1800", "--random-range-ratio", "0.2",
		"--num-prompts", "3000", "--max-concurrency", "200", "--endpoint", "/v1/completions", "--save-result",
		"--metric-percentiles", "50,90,99", "--percentile-metrics", "ttft,tpot", "--request-rate", "inf"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, RandomConfig{InputLen: 1550, OutputLen: 1800, RangeRatio: 0.2, PrefixLen: 10}, o.Random)
	assert.Equal(t, 3000, o.NumPrompts)
	assert.Equal(t, 200, o.MaxConcurrency)
	assert.True(t, math.IsInf(o.RequestRate, 1))
	assert.Equal(t, []float64{50, 90, 99}, o.MetricPercentiles)
	assert.Equal(t, []string{"ttft", "tpot"}, o.PercentileMetrics)
	assert.Equal(t, "openai", o.Backend)
	assert.Equal(t, "http://gw:8081", o.Base())
	assert.True(t, o.IgnoreEOS)
	assert.Equal(t, "openai-infqps-concurrency200-Qwen2.5-7B-20260101-000000.json", o.resultFilename("Qwen/Qwen2.5-7B", "20260101-000000"))
}

func TestParseOptionsDefaultsAndChecks(t *testing.T) {
	o, err := ParseOptions(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8000", o.Base())
	assert.Equal(t, 1000, o.NumPrompts)
	assert.Equal(t, []string{"ttft", "tpot", "itl", "e2el"}, o.PercentileMetrics)
	assert.Equal(t, []float64{99}, o.MetricPercentiles)
	assert.Equal(t, RandomConfig{InputLen: 1024, OutputLen: 128}, o.Random)

	o, err = ParseOptions([]string{"--endpoint", "/v1/chat/completions", "--output-len", "7", "--input-len", "9",
		"--dataset-name", "multi-turn", "--lora-modules", "x:3", "y", "--request-rate", "2.5", "--label", "rr"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "openai-chat", o.Backend)
	assert.Equal(t, "multi_turn", o.DatasetName)
	assert.Equal(t, 7, o.MultiTurn.OutputLen)
	assert.Equal(t, 7, o.PrefixRepetition.OutputLen)
	assert.Equal(t, 9, o.Random.InputLen)
	assert.Equal(t, []LoRAModule{{"x", 3}, {"y", 1}}, o.LoRAModules)
	assert.Equal(t, "rr-2.5qps-m-d.json", o.resultFilename("m", "d"))

	for _, bad := range [][]string{
		{"--percentile-metrics", "ttft,nope"},
		{"--metric-percentiles", "101"},
		{"--backend", "openai-chat"},
		{"--endpoint", "/v1/chat/completions", "--backend", "openai"},
		{"--num-prompts", "0"},
		{"--lora-assignment", "weighted"},
		{"--extra-body", "[1]"},
		{"--metadata", "novalue"},
		{"stray"},
	} {
		_, err := ParseOptions(bad, io.Discard)
		assert.Error(t, err, "%v", bad)
	}
}

func TestBuildDatasetNeedsChatForMultiTurn(t *testing.T) {
	o, err := ParseOptions([]string{"--dataset-name", "multi_turn", "--num-prompts", "4"}, io.Discard)
	require.NoError(t, err)
	_, err = BuildDataset(o)
	assert.ErrorContains(t, err, "chat")
	o.DatasetName = "sharegpt"
	_, err = BuildDataset(o)
	assert.Error(t, err)
}

func TestPyFloat(t *testing.T) {
	assert.Equal(t, "inf", pyFloat(math.Inf(1)))
	assert.Equal(t, "10.0", pyFloat(10))
	assert.Equal(t, "0.5", pyFloat(0.5))
}
