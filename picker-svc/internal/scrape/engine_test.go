package scrape

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func fixture(tb testing.TB, name string) []byte {
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(tb, err)
	return b
}

func TestParseEngine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Engine
		err  string
	}{
		{in: "auto", want: EngineAuto},
		{in: "vllm", want: EngineVLLM},
		{in: "sglang", want: EngineSGLang},
		{in: "triton-trtllm", want: EngineTritonTRTLLM},
		{in: "", err: `engine "": want auto, vllm, sglang, triton-trtllm`},
		{in: "SGLang", err: `engine "SGLang"`},
		{in: "tgi", err: `engine "tgi": want auto, vllm, sglang, triton-trtllm`},
		{in: " vllm", err: `engine " vllm"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEngine(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// The realistic pages of each engine, read as their engine and
// auto-detected: the same snapshot either way.
func TestMapEnginePages(t *testing.T) {
	vllm := fixture(t, "vllm-v1.txt")
	sglang := fixture(t, "sglang.txt")
	triton := fixture(t, "triton-trtllm.txt")
	for _, tc := range []struct {
		name string
		page []byte
		want Snapshot
	}{
		{name: "vllm", page: vllm, want: Snapshot{Engine: EngineVLLM,
			Waiting: 4, Running: 27, KVCacheUsage: 0.6312, BaseModel: "meta-llama/Llama-3.1-8B-Instruct",
			MaxLoRA: 4, RunningAdapters: []string{"sql-lora", "tweet-summary-1"}, WaitingAdapters: []string{"tweet-summary-2"},
			BlockSize: 16, NumGPUBlocks: 27153,
			PrefixQueries: 4.812345e+06, PrefixHits: 2.101234e+06, FirstTokens: 4314, HasFirstTokens: true,
			Steps: 4314, HasSteps: true, PromptTokens: 4.812345e+06}},
		{name: "sglang", page: sglang, want: Snapshot{Engine: EngineSGLang,
			Waiting: 3, Running: 12, KVCacheUsage: 0.41, BaseModel: "meta-llama/Llama-3.1-8B-Instruct",
			BlockSize: 1, NumGPUBlocks: 161721,
			PrefixQueries: 8.128902e+06, PrefixHits: 2.513377e+06, FirstTokens: 1990, HasFirstTokens: true}},
		{name: "triton-trtllm", page: triton, want: Snapshot{Engine: EngineTritonTRTLLM,
			Waiting: 5, Running: 24, KVCacheUsage: 0.3125, BlockSize: 64, NumGPUBlocks: 6240}},
	} {
		for _, as := range []Engine{tc.want.Engine, EngineAuto} {
			t.Run(tc.name+" as "+string(as), func(t *testing.T) {
				s, err := Map(tc.page, as, t0)
				require.NoError(t, err)
				want := tc.want
				want.ScrapedAt, want.PageBytes = t0, len(tc.page)
				require.Equal(t, want, s)
			})
		}
	}
}

// A page read as the wrong engine lacks that engine's core gauges: an
// incomplete scrape naming what is missing, never an idle-looking snapshot.
func TestMapWrongEngineIsIncomplete(t *testing.T) {
	pages := map[Engine][]byte{
		EngineVLLM:         fixture(t, "vllm-v1.txt"),
		EngineSGLang:       fixture(t, "sglang.txt"),
		EngineTritonTRTLLM: fixture(t, "triton-trtllm.txt"),
	}
	for pageEngine, page := range pages {
		for _, as := range []Engine{EngineVLLM, EngineSGLang, EngineTritonTRTLLM} {
			if as == pageEngine {
				continue
			}
			t.Run(string(pageEngine)+" page as "+string(as), func(t *testing.T) {
				_, err := Map(page, as, t0)
				require.ErrorIs(t, err, ErrIncomplete)
				require.ErrorContains(t, err, engineCore[as])
			})
		}
	}
}

func TestMapSGLangTable(t *testing.T) {
	const lbl = `model_name="m",engine_type="unified",pp_rank="0"`
	core := "sglang:num_running_reqs{" + lbl + `,tp_rank="0"} 2` + "\n" +
		"sglang:num_queue_reqs{" + lbl + `,tp_rank="0"} 3` + "\n"
	for _, tc := range []struct {
		name, page string
		want       Snapshot
		err        string
	}{
		{name: "core only", page: core + "sglang:token_usage 0.5\n",
			want: Snapshot{Running: 2, Waiting: 3, KVCacheUsage: 0.5, BaseModel: "m"}},
		{name: "data-parallel ranks: queues summed, KV the highest", page: "" +
			`sglang:num_running_reqs{dp_rank="0",tp_rank="0"} 2` + "\n" + `sglang:num_running_reqs{dp_rank="1",tp_rank="4"} 5` + "\n" +
			`sglang:num_queue_reqs{dp_rank="0",tp_rank="0"} 1` + "\n" + `sglang:num_queue_reqs{dp_rank="1",tp_rank="4"} 7` + "\n" +
			`sglang:token_usage{dp_rank="0",tp_rank="0"} 0.2` + "\n" + `sglang:token_usage{dp_rank="1",tp_rank="4"} 0.6` + "\n",
			want: Snapshot{Running: 7, Waiting: 8, KVCacheUsage: 0.6}},
		// --enable-metrics-for-all-schedulers: every TP rank of one
		// scheduler group reports the same queue; counting it per rank would
		// make a TP=2 pod look twice as loaded.
		{name: "every TP rank of one group reporting: counted once", page: "" +
			`sglang:num_running_reqs{tp_rank="0"} 4` + "\n" + `sglang:num_running_reqs{tp_rank="1"} 4` + "\n" +
			`sglang:num_queue_reqs{tp_rank="0"} 6` + "\n" + `sglang:num_queue_reqs{tp_rank="1"} 6` + "\n" +
			`sglang:token_usage{tp_rank="0"} 0.3` + "\n" + `sglang:token_usage{tp_rank="1"} 0.3` + "\n",
			want: Snapshot{Running: 4, Waiting: 6, KVCacheUsage: 0.3}},
		{name: "KV pool in tokens", page: core + "sglang:token_usage 0\nsglang:max_total_num_tokens{" + lbl + `,tp_rank="0"} 98304` + "\n",
			want: Snapshot{Running: 2, Waiting: 3, BaseModel: "m", BlockSize: 1, NumGPUBlocks: 98304}},
		{name: "absurd KV pool ignored", page: core + "sglang:token_usage 0\nsglang:max_total_num_tokens 1e300\n",
			want: Snapshot{Running: 2, Waiting: 3, BaseModel: "m"}},
		{name: "cached tokens absent (none yet): zero hits", page: core + "sglang:token_usage 0\nsglang:prompt_tokens_total{model_name=\"m\"} 100\n",
			want: Snapshot{Running: 2, Waiting: 3, BaseModel: "m", PrefixQueries: 100}},
		{name: "TTFT count; buckets and sum ignored", page: core + "sglang:token_usage 0\n" +
			"sglang:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 9\nsglang:time_to_first_token_seconds_sum{model_name=\"m\"} 4.5\n" +
			"sglang:time_to_first_token_seconds_count{model_name=\"m\"} 9\n",
			want: Snapshot{Running: 2, Waiting: 3, BaseModel: "m", FirstTokens: 9, HasFirstTokens: true}},
		{name: "cache_hit_rate and LoRA slots are not read", page: core + "sglang:token_usage 0.1\nsglang:cache_hit_rate 0.9\n" +
			"sglang:lora_pool_slots_used 1\nsglang:lora_pool_slots_total 4\n",
			want: Snapshot{Running: 2, Waiting: 3, KVCacheUsage: 0.1, BaseModel: "m"}},
		// sglang:utilization is -1 on a prefill-disaggregated server
		// (scheduler_metrics_mixin.py calculate_utilization).
		{name: "negative series the picker does not read", page: core + "sglang:token_usage 0.1\nsglang:utilization -1\n",
			want: Snapshot{Running: 2, Waiting: 3, KVCacheUsage: 0.1, BaseModel: "m"}},
		{name: "KV above 1 is clamped", page: core + "sglang:token_usage 1.2\n", want: Snapshot{Running: 2, Waiting: 3, KVCacheUsage: 1, BaseModel: "m"}},
		{name: "no token_usage (before the first stats log)", page: core, err: "sglang page without"},
		{name: "no queue gauge", page: "sglang:num_running_reqs 1\nsglang:token_usage 0.1\n", err: ErrIncomplete.Error()},
		{name: "NaN in a read series", page: core + "sglang:token_usage NaN\n", err: "sglang:token_usage has value NaN"},
		{name: "negative queue", page: "sglang:num_running_reqs 1\nsglang:num_queue_reqs -2\nsglang:token_usage 0\n", err: "sglang:num_queue_reqs has value -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Map([]byte(tc.page), EngineSGLang, t0)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			tc.want.Engine, tc.want.ScrapedAt, tc.want.PageBytes = EngineSGLang, t0, len(tc.page)
			require.Equal(t, tc.want, s)
		})
	}
}

func TestMapTritonTRTLLMTable(t *testing.T) {
	req := func(model, typ, v string) string {
		return `nv_trt_llm_request_metrics{model="` + model + `",request_type="` + typ + `",version="1"} ` + v + "\n"
	}
	kv := func(model, typ, v string) string {
		return `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="` + typ + `",model="` + model + `",version="1"} ` + v + "\n"
	}
	core := req("a", "waiting", "2") + req("a", "scheduled", "3") + req("a", "active", "9")
	for _, tc := range []struct {
		name, page string
		want       Snapshot
		err        string
	}{
		{name: "core; active is not running", page: core + kv("a", "fraction", "0.5"),
			want: Snapshot{Waiting: 2, Running: 3, KVCacheUsage: 0.5}},
		{name: "two models: queues summed, KV the highest, sizes the largest", page: core + kv("a", "fraction", "0.25") +
			req("b", "waiting", "1") + req("b", "scheduled", "4") + kv("b", "fraction", "0.75") +
			kv("a", "tokens_per", "32") + kv("b", "tokens_per", "64") + kv("a", "max", "100") + kv("b", "max", "50"),
			want: Snapshot{Waiting: 3, Running: 7, KVCacheUsage: 0.75, BlockSize: 64, NumGPUBlocks: 100}},
		// tensorrtllm_backend before "waiting" and "fraction" existed
		// (request_type active/max/scheduled/context only).
		{name: "older backend without waiting", page: req("a", "scheduled", "3") + req("a", "active", "3") + kv("a", "fraction", "0.1"),
			err: "triton-trtllm page without"},
		{name: "older backend without fraction", page: core + kv("a", "used", "10") + kv("a", "max", "100"),
			err: ErrIncomplete.Error()},
		{name: "negative", page: core + kv("a", "fraction", "-0.5"), err: "has value -0.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Map([]byte(tc.page), EngineTritonTRTLLM, t0)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			tc.want.Engine, tc.want.ScrapedAt, tc.want.PageBytes = EngineTritonTRTLLM, t0, len(tc.page)
			require.Equal(t, tc.want, s)
		})
	}
}

func TestDetect(t *testing.T) {
	vllmCore := "vllm:num_requests_running 1\nvllm:num_requests_waiting 2\nvllm:kv_cache_usage_perc 0.5\n"
	sglangCore := "sglang:num_running_reqs 3\nsglang:num_queue_reqs 4\nsglang:token_usage 0.25\n"
	for _, tc := range []struct {
		name, page string
		want       Engine
		err        string
	}{
		{name: "vllm prefix", page: vllmCore, want: EngineVLLM},
		{name: "sglang prefix", page: sglangCore, want: EngineSGLang},
		{name: "triton prefix", page: `nv_trt_llm_request_metrics{request_type="waiting"} 0` + "\n" +
			`nv_trt_llm_request_metrics{request_type="scheduled"} 0` + "\n" + `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"} 0` + "\n",
			want: EngineTritonTRTLLM},
		// A page carrying both (a proxy merging exporters): vLLM first,
		// deterministically; pin the pool's engine to read the other.
		{name: "both: vllm wins", page: sglangCore + vllmCore, want: EngineVLLM},
		{name: "a vllm series alone is vllm (then incomplete)", page: "vllm:num_requests_running 1\n" + sglangCore, err: "vllm page without"},
		{name: "neither", page: "process_open_fds 3\nnv_gpu_utilization 0.5\n", err: "no vllm:, sglang: or nv_trt_llm_ series"},
		{name: "HTML", page: "<html><body>502</body></html>\n", err: ErrIncomplete.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Map([]byte(tc.page), EngineAuto, t0)
			if tc.err != "" {
				require.ErrorIs(t, err, ErrIncomplete)
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, s.Engine)
		})
	}
}

func TestEndpointEngine(t *testing.T) {
	e := NewEndpoint("127.0.0.1:1", Config{})
	require.Equal(t, EngineAuto, e.Engine(), "zero Config.Engine is auto")
	e = NewEndpoint("127.0.0.1:1", Config{Engine: EngineSGLang})
	require.Equal(t, EngineSGLang, e.Engine())
	e.SetEngine(EngineVLLM)
	require.Equal(t, EngineVLLM, e.Engine(), "the owner's engine overrides the default")
	e.SetEngine("")
	require.Equal(t, EngineSGLang, e.Engine(), "unset: back to the default")
}

// BenchmarkMapSGLang is the parse+map cost of the SGLang fixture.
func BenchmarkMapSGLang(b *testing.B) {
	page := fixture(b, "sglang.txt")
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Map(page, EngineAuto, t0); err != nil {
			b.Fatal(err)
		}
	}
}
