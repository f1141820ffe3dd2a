package scrape

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Unix(1_700_000_000, 0)

func realisticPage(tb testing.TB) []byte {
	b, err := os.ReadFile("testdata/vllm-v1.txt")
	require.NoError(tb, err)
	return b
}

func TestMapRealisticPage(t *testing.T) {
	page := realisticPage(t)
	s, err := Map(page, EngineVLLM, t0)
	require.NoError(t, err)
	require.Equal(t, Snapshot{
		Engine: EngineVLLM, Waiting: 4, Running: 27, KVCacheUsage: 0.6312, BaseModel: "meta-llama/Llama-3.1-8B-Instruct",
		MaxLoRA: 4, RunningAdapters: []string{"sql-lora", "tweet-summary-1"}, WaitingAdapters: []string{"tweet-summary-2"},
		BlockSize: 16, NumGPUBlocks: 27153,
		PrefixQueries: 4.812345e+06, PrefixHits: 2.101234e+06, FirstTokens: 4314, HasFirstTokens: true,
		Steps: 4314, HasSteps: true, PromptTokens: 4.812345e+06,
		ScrapedAt: t0, PageBytes: len(page),
	}, s)
	require.Equal(t, AdapterRunning, s.Adapter("sql-lora"))
	require.Equal(t, AdapterWaiting, s.Adapter("tweet-summary-2"))
	require.Equal(t, AdapterAbsent, s.Adapter("other"))
	require.Equal(t, 3, s.ActiveAdapters())
}

func TestMapTable(t *testing.T) {
	core := "vllm:num_requests_running{model_name=\"m\"} 2\nvllm:num_requests_waiting{model_name=\"m\"} 3\n"
	for _, tc := range []struct {
		name, page string
		want       Snapshot
		err        string
	}{
		{name: "v0 names with swapped and old gauge", page: core + "vllm:num_requests_swapped{model_name=\"m\"} 1\nvllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n",
			want: Snapshot{Running: 2, Waiting: 3, Swapped: 1, KVCacheUsage: 0.5, BaseModel: "m"}},
		{name: "both KV names: the new one wins", page: core + "vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.25\n",
			want: Snapshot{Running: 2, Waiting: 3, KVCacheUsage: 0.25, BaseModel: "m"}},
		{name: "engines sum queues, max KV", page: core + "vllm:num_requests_running{engine=\"1\"} 5\nvllm:kv_cache_usage_perc{engine=\"0\"} 0.2\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.7\n",
			want: Snapshot{Running: 7, Waiting: 3, KVCacheUsage: 0.7, BaseModel: "m"}},
		{name: "KV above 1 is clamped", page: core + "vllm:kv_cache_usage_perc 3\n", want: Snapshot{Running: 2, Waiting: 3, KVCacheUsage: 1, BaseModel: "m"}},
		{name: "newest LoRA series wins regardless of order", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"new\",waiting_lora_adapters=\"\"} 20\n" +
			"vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"old\",waiting_lora_adapters=\"w\"} 10\n",
			want: Snapshot{Running: 2, Waiting: 3, MaxLoRA: 2, RunningAdapters: []string{"new"}, BaseModel: "m"}},
		// Tied newest series (an exporter stamping whole seconds): merged.
		{name: "tie empty+nonempty: the running adapter is kept", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 1751234567\n" +
			"vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a\",waiting_lora_adapters=\"\"} 1751234567\n",
			want: Snapshot{Running: 2, Waiting: 3, MaxLoRA: 2, RunningAdapters: []string{"a"}, BaseModel: "m"}},
		{name: "tie nonempty+empty (other order)", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a\",waiting_lora_adapters=\"w\"} 1751234567\n" +
			"vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 1751234567\n",
			want: Snapshot{Running: 2, Waiting: 3, MaxLoRA: 2, RunningAdapters: []string{"a"}, WaitingAdapters: []string{"w"}, BaseModel: "m"}},
		{name: "tie of two label sets: unions in page order, no repeats", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"old\",waiting_lora_adapters=\"x\"} 1751234000\n" +
			"vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"b,a\",waiting_lora_adapters=\"c\"} 1751234567\n" +
			"vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"a,d\",waiting_lora_adapters=\"b,c\"} 1751234567\n",
			want: Snapshot{Running: 2, Waiting: 3, MaxLoRA: 4, RunningAdapters: []string{"b", "a", "d"}, WaitingAdapters: []string{"c", "b"}, BaseModel: "m"}},
		{name: "tie with max_lora differing: the largest", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"0\",running_lora_adapters=\"a\",waiting_lora_adapters=\"\"} 7\n" +
			"vllm:lora_requests_info{max_lora=\"3\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 7\n" +
			"vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 7\n",
			want: Snapshot{Running: 2, Waiting: 3, MaxLoRA: 3, RunningAdapters: []string{"a"}, BaseModel: "m"}},
		{name: "bad max_lora on an older series is ignored (after the newest)", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a\"} 20\nvllm:lora_requests_info{max_lora=\"x\"} 10\n",
			want: Snapshot{Running: 2, Waiting: 3, MaxLoRA: 2, RunningAdapters: []string{"a"}, BaseModel: "m"}},
		{name: "bad max_lora on an older series is ignored (before the newest)", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"x\"} 10\nvllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a\"} 20\n",
			want: Snapshot{Running: 2, Waiting: 3, MaxLoRA: 2, RunningAdapters: []string{"a"}, BaseModel: "m"}},
		{name: "bad max_lora on a tied series", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a\"} 20\nvllm:lora_requests_info{max_lora=\"-1\"} 20\n", err: "max_lora"},
		{name: "tied unions over the adapter limit", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"" + adapterList("a", 40) + "\"} 5\n" +
			"vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"" + adapterList("b", 40) + "\"} 5\n", err: "lists 80 adapters, the limit is 64"},
		{name: "tied series repeating the same adapters stay under the limit", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"" + adapterList("a", 40) + "\"} 5\n" +
			"vllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"" + adapterList("a", 40) + "\",waiting_lora_adapters=\"w\"} 5\n",
			want: Snapshot{Running: 2, Waiting: 3, MaxLoRA: 1, RunningAdapters: strings.Split(adapterList("a", 40), ","), WaitingAdapters: []string{"w"}, BaseModel: "m"}},
		{name: "0.8 prefix counters", page: core + "vllm:kv_cache_usage_perc 0\nvllm:gpu_prefix_cache_queries_total 10\nvllm:gpu_prefix_cache_hits_total 4\n",
			want: Snapshot{Running: 2, Waiting: 3, PrefixQueries: 10, PrefixHits: 4, BaseModel: "m"}},
		{name: "TTFT count summed over engines; buckets and sum ignored", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"# TYPE vllm:time_to_first_token_seconds histogram\n" +
			"vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\"} 7\nvllm:time_to_first_token_seconds_sum{engine=\"0\"} 3.5\n" +
			"vllm:time_to_first_token_seconds_count{engine=\"0\"} 7\nvllm:time_to_first_token_seconds_count{engine=\"1\"} 5\n",
			want: Snapshot{Running: 2, Waiting: 3, FirstTokens: 12, HasFirstTokens: true, BaseModel: "m"}},
		{name: "steps: the busiest engine's count; prompt tokens summed", page: core + "vllm:kv_cache_usage_perc 0\n" +
			"vllm:iteration_tokens_total_count{engine=\"0\"} 40\nvllm:iteration_tokens_total_count{engine=\"1\"} 30\n" +
			"vllm:iteration_tokens_total_sum{engine=\"0\"} 9000\nvllm:prompt_tokens_total{engine=\"0\"} 100\nvllm:prompt_tokens_total{engine=\"1\"} 50\n",
			want: Snapshot{Running: 2, Waiting: 3, Steps: 40, HasSteps: true, PromptTokens: 150, BaseModel: "m"}},
		{name: "no trailing newline", page: core + "vllm:kv_cache_usage_perc 0.1", want: Snapshot{Running: 2, Waiting: 3, KVCacheUsage: 0.1, BaseModel: "m"}},
		{name: "missing KV gauge (partial page)", page: core, err: ErrIncomplete.Error()},
		{name: "missing waiting (truncated)", page: "vllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.1\n", err: ErrIncomplete.Error()},
		{name: "empty page", page: "", err: ErrIncomplete.Error()},
		{name: "HTML error page", page: "<html><body>502 Bad Gateway</body></html>\n", err: ErrIncomplete.Error()},
		{name: "junk value", page: core + "vllm:kv_cache_usage_perc banana\n", err: "parse"},
		{name: "line cut mid-labels", page: core + "vllm:kv_cache_usage_perc{engine=\"0\n", err: "parse"},
		{name: "NaN", page: core + "vllm:kv_cache_usage_perc NaN\n", err: "has value NaN"},
		{name: "negative", page: core + "vllm:kv_cache_usage_perc -1\n", err: "has value -1"},
		{name: "bad max_lora", page: core + "vllm:kv_cache_usage_perc 0\nvllm:lora_requests_info{max_lora=\"x\"} 1\n", err: "max_lora"},
		{name: "too many adapters", page: core + "vllm:kv_cache_usage_perc 0\nvllm:lora_requests_info{max_lora=\"1\",running_lora_adapters=\"" + strings.Repeat("a,", 70) + "\"} 1\n", err: "the limit is 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Map([]byte(tc.page), EngineVLLM, t0)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			tc.want.Engine, tc.want.ScrapedAt, tc.want.PageBytes = EngineVLLM, t0, len(tc.page)
			require.Equal(t, tc.want, s)
		})
	}
}

// adapterList is n comma-joined adapter names prefix0..prefix<n-1>.
func adapterList(prefix string, n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = prefix + strconv.Itoa(i)
	}
	return strings.Join(names, ",")
}

func TestSelectLines(t *testing.T) {
	page := "# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{a=\"b\"} 1\n" +
		"vllm:num_requests_running_other 1\nvllm:time_to_first_token_seconds_bucket{le=\"1\"} 3\nprocess_open_fds 3\nvllm:kv_cache_usage_perc 0.5"
	require.Equal(t, "vllm:num_requests_running{a=\"b\"} 1\nvllm:kv_cache_usage_perc 0.5\n", string(SelectLines(nil, []byte(page))))
}

func FuzzMap(f *testing.F) {
	f.Add(realisticPage(f))
	f.Add(fixture(f, "sglang.txt"))
	f.Add(fixture(f, "triton-trtllm.txt"))
	f.Add([]byte("sglang:num_running_reqs{dp_rank=\"0\"} 1\nsglang:num_queue_reqs{dp_rank=\"1\"} 2\nsglang:token_usage 0.5\nsglang:max_total_num_tokens 9e18\n"))
	f.Add([]byte("vllm:num_requests_running 1\nvllm:num_requests_waiting 2\nvllm:kv_cache_usage_perc 0.5\n"))
	f.Add([]byte("vllm:num_requests_running 1\nvllm:num_requests_waiting 2\nvllm:gpu_cache_usage_perc 7\nvllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a,b\",waiting_lora_adapters=\",c,\"} 1e9\n"))
	f.Add([]byte("vllm:num_requests_running{x=\"\\\"\"} 1\nvllm:num_requests_waiting +Inf\n"))
	f.Add([]byte("vllm:num_requests_running 1\nvllm:num_requests_waiting 2\nvllm:kv_cache_usage_perc 0.5\n" +
		"vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 1751234567\n" +
		"vllm:lora_requests_info{max_lora=\"3\",running_lora_adapters=\"a,b\",waiting_lora_adapters=\"a\"} 1751234567\n"))
	f.Fuzz(func(t *testing.T, page []byte) {
		s, err := Map(page, EngineAuto, t0)
		if err != nil {
			return
		}
		// A published snapshot is always usable by the scorers.
		for _, v := range []float64{s.Waiting, s.Running, s.Swapped, s.PrefixHits, s.PrefixQueries} {
			if !(v >= 0) || v > 1e308 {
				t.Fatalf("bad count %v in %+v", v, s)
			}
		}
		if !(s.KVCacheUsage >= 0 && s.KVCacheUsage <= 1) {
			t.Fatalf("KV usage %v outside [0,1]", s.KVCacheUsage)
		}
		if s.MaxLoRA < 0 || len(s.RunningAdapters) > maxAdapters || len(s.WaitingAdapters) > maxAdapters {
			t.Fatalf("bad LoRA state %+v", s)
		}
		for _, a := range append(append([]string{}, s.RunningAdapters...), s.WaitingAdapters...) {
			if a == "" || len(a) > maxAdapterLen {
				t.Fatalf("bad adapter name %q", a)
			}
		}
		if s.ScrapedAt != t0 || s.PageBytes != len(page) {
			t.Fatal("stamp lost")
		}
	})
}

// BenchmarkMap is the parse+map CPU cost of a realistic ~33 KiB vLLM v1 page.
func BenchmarkMap(b *testing.B) {
	page := realisticPage(b)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Map(page, EngineVLLM, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMapFullParse parses the whole page with expfmt (no line
// selection), for comparison: this is what the selection saves.
func BenchmarkMapFullParse(b *testing.B) {
	page := realisticPage(b)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mapSelected(page, EngineVLLM, t0, len(page)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMapTiedLoRA is a hostile 1 MiB page (the poller's default
// MaxPageBytes) of vllm:lora_requests_info series that all tie, each listing
// 64 adapters: the cost of merging them on top of parsing.
func BenchmarkMapTiedLoRA(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("vllm:num_requests_running 1\nvllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0\n")
	all := adapterList("a", maxAdapters)
	for i := 0; sb.Len() < 1<<20-400; i++ {
		sb.WriteString("vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"" + all + "\",waiting_lora_adapters=\"w" + strconv.Itoa(i%2) + "\"} 5\n")
	}
	page := []byte(sb.String())
	b.SetBytes(int64(len(page)))
	for b.Loop() {
		if _, err := Map(page, EngineVLLM, t0); err != nil {
			b.Fatal(err)
		}
	}
}
