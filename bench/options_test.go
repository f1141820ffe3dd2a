package bench

import (
	"flag"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var someFlags = []string{"dataset-name", "lora-modules", "num-prompts", "num-warmups", "metadata", "save-result",
	"seed", "top-k", "goodput", "trust-remote-code"}

func TestNormalizeArgs(t *testing.T) {
	got, err := normalizeArgs([]string{"--dataset_name", "random", "--lora-modules", "a", "b:2", "--num_prompts=5",
		"--metadata", "k=v", "--save-result", "-seed", "3"}, someFlags)
	require.NoError(t, err)
	assert.Equal(t, []string{"--dataset-name", "random", "--lora-modules=a", "--lora-modules=b:2", "--num-prompts=5",
		"--metadata=k=v", "--save-result", "--seed", "3"}, got)
}

func TestNormalizeArgsTakesArgparseAbbreviations(t *testing.T) {
	// As argparse (allow_abbrev, on in vllm's parser): a unique prefix
	// names its flag, also before "=" and on multi-value flags.
	got, err := normalizeArgs([]string{"--num_prompt", "1", "--trust_remote", "--lora-mod", "a", "b", "--dataset=random"}, someFlags)
	require.NoError(t, err)
	assert.Equal(t, []string{"--num-prompts", "1", "--trust-remote-code", "--lora-modules=a", "--lora-modules=b",
		"--dataset-name=random"}, got)
	_, err = normalizeArgs([]string{"--num", "1"}, someFlags)
	assert.EqualError(t, err, "ambiguous option: --num could match --num-prompts, --num-warmups")
	got, err = normalizeArgs([]string{"--nope"}, someFlags)
	require.NoError(t, err)
	assert.Equal(t, []string{"--nope"}, got, "left to the flag package to refuse")

	for _, h := range []string{"-h", "--help"} {
		_, err = ParseOptions([]string{h}, io.Discard)
		assert.ErrorIs(t, err, flag.ErrHelp)
	}

	// A command of vllm's issue tracker (vllm-project/vllm#13333), as typed.
	o, err := ParseOptions(strings.Fields("--model DeepSeek-R1-Distill-Qwen-32B --host 10.238.154.81 --port 8001 "+
		"--dataset-name random --trust_remote_code --ignore-eos --num_prompt 1 --random-input-len 4096 --random-output-len 512"), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 1, o.NumPrompts)
	assert.Len(t, o.Notices, 1)
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

func TestNormalizeArgsKeepsNegativeValues(t *testing.T) {
	got, err := normalizeArgs([]string{"--top_k", "-1", "--goodput", "ttft:100", "e2el:900", "--seed", "-2"}, someFlags)
	require.NoError(t, err)
	assert.Equal(t, []string{"--top-k", "-1", "--goodput=ttft:100", "--goodput=e2el:900", "--seed", "-2"}, got)
}

// productCommand is the benchmark command of the product documents this
// project re-creates (their benchmark_serving.py of early 2025), verbatim
// but for the gateway address ($GW_IP).
func productCommand(port string) []string {
	return strings.Fields(`--backend vllm --model /models/DeepSeek-R1-Distill-Qwen-7B --served-model-name /model/qwen
		--trust-remote-code --dataset-name random --random-prefix-len 10 --random-input-len 1550
		--random-output-len 1800 --random-range-ratio 0.2 --num-prompts 3000 --max-concurrency 200
		--host 10.96.0.7 --port ` + port + ` --endpoint /v1/completions --save-result`)
}

func TestParseOptionsProductDocumentsCommand(t *testing.T) {
	for _, port := range []string{"8080", "8081"} {
		o, err := ParseOptions(productCommand(port), io.Discard)
		require.NoError(t, err)
		assert.Equal(t, "vllm", o.Backend)
		assert.Equal(t, "/models/DeepSeek-R1-Distill-Qwen-7B", o.Model)
		assert.Equal(t, "/model/qwen", o.ServedModelName)
		assert.Equal(t, "http://10.96.0.7:"+port, o.Base())
		assert.Equal(t, RandomConfig{InputLen: 1550, OutputLen: 1800, RangeRatio: 0.2, PrefixLen: 10}, o.Random)
		assert.Equal(t, 3000, o.NumPrompts)
		assert.Equal(t, 200, o.MaxConcurrency)
		assert.True(t, o.SaveResult)
		assert.Equal(t, []string{"--trust-remote-code: accepted, has no effect here (no tokenizer is loaded: token counts are the server's usage)"}, o.Notices)
		assert.True(t, o.IgnoreEOS, "vllm bench serve sends ignore_eos for random today")
		assert.Contains(t, o.EOSSemantics, "--no-ignore-eos for benchmark_serving.py's")
	}
	// The script those documents ran sent no ignore_eos: --no-ignore-eos
	// runs that benchmark.
	o, err := ParseOptions(append(productCommand("8081"), "--no-ignore-eos"), io.Discard)
	require.NoError(t, err)
	assert.False(t, o.IgnoreEOS)
}

// vllmFlags are the flags of vllm's benchmark, each with a sample value,
// copied from vllm-project/vllm: vllm/benchmarks/serve.py add_cli_args
// (009e6d4a; --trust-remote-code and --common-prefix-len from def9ce85),
// vllm/benchmarks/datasets/arg_utils.py add_dataset_parser (237145ea), the
// older vllm/benchmarks/datasets.py add_dataset_parser (--enable-multimodal-chat,
// --asr-*), benchmarks/benchmark_serving.py (0049e29c) and vllm bench serve
// v0.10's --endpoint-type (docs.vllm.ai/en/v0.10.1.1/cli/bench/serve.html).
var vllmFlags = [][]string{
	{"--label", "x"}, {"--backend", "vllm"}, {"--base-url", "http://h:1"}, {"--host", "h"}, {"--port", "1"},
	{"--endpoint", "/v1/completions"}, {"--header", "a=b", "c=d"}, {"--max-concurrency", "2"}, {"--model", "m"},
	{"--input-len", "8"}, {"--output-len", "4"}, {"--tokenizer", "t"}, {"--tokenizer-mode", "auto"},
	{"--use-beam-search"}, {"--logprobs", "1"}, {"--request-rate", "5"}, {"--burstiness", "1"},
	{"--probe-request-rate", "0"}, {"--disable-tqdm"}, {"--num-warmups", "1"}, {"--profile"}, {"--save-result"},
	{"--save-detailed"}, {"--append-result"}, {"--metadata", "k=v"}, {"--result-dir", "d"},
	{"--result-filename", "f.json"}, {"--ignore-eos"}, {"--self-timed"}, {"--no-self-timed"},
	{"--percentile-metrics", "ttft,tpot"}, {"--metric-percentiles", "50,99"}, {"--goodput", "ttft:100", "tpot:50"},
	{"--request-id-prefix", "p-"}, {"--top-p", "0.9"}, {"--top-k", "5"}, {"--min-p", "0.1"}, {"--temperature", "0"},
	{"--frequency-penalty", "0"}, {"--presence-penalty", "0"}, {"--repetition-penalty", "1"},
	{"--common-prefix-len", "4"}, {"--served-model-name", "s"}, {"--lora-modules", "a", "b"},
	{"--lora-assignment", "round-robin"}, {"--ramp-up-strategy", "linear"}, {"--ramp-up-start-rps", "1"},
	{"--ramp-up-end-rps", "2"}, {"--ready-check-timeout-sec", "0"}, {"--chat-template-kwargs", `{"thinking": true}`},
	{"--extra-body", `{"a": 1}`}, {"--skip-tokenizer-init"}, {"--insecure"}, {"--plot-timeline"},
	{"--timeline-itl-thresholds", "25,50"}, {"--plot-dataset-stats"}, {"--trust-remote-code"},
	{"--seed", "1"}, {"--num-prompts", "10"}, {"--dataset-name", "random"}, {"--no-stream"}, {"--dataset-path", "p"},
	{"--no-oversample"}, {"--skip-chat-template"}, {"--enable-multimodal-chat"}, {"--disable-shuffle"},
	{"--custom-output-len", "5"}, {"--spec-bench-output-len", "5"}, {"--spec-bench-category", "c"},
	{"--sonnet-input-len", "5"}, {"--sonnet-output-len", "5"}, {"--sonnet-prefix-len", "5"},
	{"--sharegpt-output-len", "5"}, {"--blazedit-min-distance", "0"}, {"--blazedit-max-distance", "1"},
	{"--asr-max-audio-len-sec", "30"}, {"--asr-min-audio-len-sec", "0"},
	{"--random-input-len", "8"}, {"--random-output-len", "4"}, {"--random-range-ratio", "0"},
	{"--random-prefix-len", "0"}, {"--random-batch-size", "1"}, {"--no-reranker"},
	{"--random-mm-base-items-per-request", "1"}, {"--random-mm-num-mm-items-range-ratio", "0"},
	{"--random-mm-limit-mm-per-prompt", `{"image": 1}`}, {"--random-mm-bucket-config", "{(256, 256, 1): 1.0}"},
	{"--hf-subset", "s"}, {"--hf-split", "train"}, {"--hf-name", "n"}, {"--hf-output-len", "5"},
	{"--prefix-repetition-prefix-len", "8"}, {"--prefix-repetition-suffix-len", "8"},
	{"--prefix-repetition-num-prefixes", "2"}, {"--prefix-repetition-output-len", "4"}, {"--endpoint-type", "openai"},
}

func TestParseOptionsTakesEveryVllmFlag(t *testing.T) {
	refused := map[string]bool{}
	var runnable []string
	for _, args := range vllmFlags {
		o, err := ParseOptions(args, io.Discard)
		if err != nil {
			require.Contains(t, err.Error(), "not supported here", "%v", args)
			require.True(t, strings.HasPrefix(err.Error(), args[0]+": "), "the error names the flag: %v", err)
			refused[args[0]] = true
			continue
		}
		runnable = append(runnable, args...)
		for _, n := range o.Notices {
			assert.Regexp(t, `^--[a-z-]+: accepted, has no effect here \(.+\)$`, n)
		}
	}
	// Only flags that would change the benchmark in ways not implemented
	// are refused.
	assert.Equal(t, map[string]bool{"--self-timed": true, "--no-self-timed": true, "--common-prefix-len": true,
		"--ramp-up-strategy": true, "--ramp-up-start-rps": true, "--ramp-up-end-rps": true, "--dataset-path": true}, refused)
	// Everything else together, as one vllm command line.
	o, err := ParseOptions(runnable, io.Discard)
	require.NoError(t, err)
	assert.Len(t, o.Notices, len(inertFlags), "one notice a flag with no effect here")
	assert.Equal(t, "vllm", o.Backend, "--backend wins over the older --endpoint-type")
}

func TestParseOptionsRefusesOnlyHarmfulValues(t *testing.T) {
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--probe-request-rate", "0"}, true},
		{[]string{"--probe-request-rate", "0.0"}, true},
		{[]string{"--probe-request-rate", "2"}, false},
		{[]string{"--random-batch-size", "1"}, true},
		{[]string{"--random-batch-size", "8"}, false},
	} {
		_, err := ParseOptions(c.args, io.Discard)
		if c.ok {
			assert.NoError(t, err, "%v", c.args)
		} else {
			assert.ErrorContains(t, err, "not supported here", "%v", c.args)
		}
	}
	_, err := ParseOptions([]string{"--no-such-flag"}, io.Discard)
	assert.ErrorContains(t, err, "flag provided but not defined", "a flag neither tool has is still an error")
}

func TestResolveIgnoreEOS(t *testing.T) {
	for _, c := range []struct {
		dataset        string
		ignore, noIgn  bool
		want           bool
		semanticsStart string
	}{
		{"random", false, false, true, "vllm bench serve's default for random since November 2025"},
		{"random", true, false, true, "--ignore-eos"},
		{"random", false, true, false, "--no-ignore-eos"},
		{"prefix_repetition", false, false, false, "vllm bench serve's default for prefix_repetition"},
		{"shared_prefix", false, false, false, "vllm bench serve's default for shared_prefix"},
		{"multi_turn", true, false, true, "--ignore-eos"},
		{"multi_turn", false, true, false, "--no-ignore-eos"},
	} {
		got, why, err := resolveIgnoreEOS(c.dataset, c.ignore, c.noIgn)
		require.NoError(t, err)
		assert.Equal(t, c.want, got, "%+v", c)
		assert.True(t, strings.HasPrefix(why, c.semanticsStart), "%q", why)
	}
	_, _, err := resolveIgnoreEOS("random", true, true)
	assert.Error(t, err)
	o, err := ParseOptions([]string{"--dataset-name", "prefix-repetition"}, io.Discard)
	require.NoError(t, err)
	assert.False(t, o.IgnoreEOS, "resolved after the dataset name is normalised")
	o, err = ParseOptions([]string{"--ignore-eos=false"}, io.Discard)
	require.NoError(t, err)
	assert.False(t, o.IgnoreEOS, "an explicit false still turns it off for random")
	assert.True(t, strings.HasPrefix(o.EOSSemantics, "--no-ignore-eos"))
}

func TestParseOptionsRequestFields(t *testing.T) {
	o, err := ParseOptions([]string{"--temperature", "0", "--top-k", "-1", "--top-p", "0.9", "--logprobs", "2",
		"--extra-body", `{"top_p": 0.5, "chat_template_kwargs": {"enable_thinking": false}}`}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"temperature": 0.0, "top_k": -1, "top_p": 0.5, "logprobs": 2,
		"chat_template_kwargs": map[string]any{"enable_thinking": false}}, o.ExtraBody, "--extra-body wins, as vllm merges them")

	o, err = ParseOptions([]string{"--endpoint", "/v1/chat/completions", "--logprobs", "2"}, io.Discard)
	require.NoError(t, err)
	assert.Nil(t, o.ExtraBody, "vllm sends logprobs on completions only")

	_, err = ParseOptions([]string{"--top-k", "2.5"}, io.Discard)
	assert.ErrorContains(t, err, "integer")

	o, err = ParseOptions([]string{"--endpoint-type", "openai-chat", "--endpoint", "/v1/chat/completions",
		"--ready-check-timeout-sec", "30", "--num-warmups", "3", "--disable-shuffle", "--append-result", "--insecure"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "openai-chat", o.Backend)
	assert.Equal(t, 30*time.Second, o.ReadyCheckTimeout)
	assert.Equal(t, 3, o.NumWarmups)
	assert.True(t, o.PrefixRepetition.NoShuffle && o.SharedPrefix.NoShuffle)
	assert.True(t, o.AppendResult && o.Insecure)

	for _, bad := range [][]string{
		{"--ready-check-timeout-sec", "-1"},
		{"--num-warmups", "-2"},
		{"--goodput", "ttft"},
		{"--ignore-eos", "--no-ignore-eos"},
	} {
		_, err := ParseOptions(bad, io.Discard)
		assert.Error(t, err, "%v", bad)
	}
}

func TestParseGoodput(t *testing.T) {
	slo, err := ParseGoodput([]string{"ttft:200", "tpot:50.5", "e2el:0"})
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{"ttft": 200, "tpot": 50.5, "e2el": 0}, slo)
	slo, err = ParseGoodput(nil)
	require.NoError(t, err)
	assert.Nil(t, slo)
	for _, bad := range []string{"ttft", "ttft:", "ttft:x", "itl:10", "ttft:-1", "ttft:1:2", ":5"} {
		_, err := ParseGoodput([]string{bad})
		assert.Error(t, err, bad)
	}
}
