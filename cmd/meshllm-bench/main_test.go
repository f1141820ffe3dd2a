package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// These tests run the command end to end against simulated vLLM servers
// and compare what it reports with the servers' own token counters.

var adapters = func() []vllmsim.LoRAModule {
	var out []vllmsim.LoRAModule
	for i := range 10 {
		out = append(out, vllmsim.LoRAModule{Name: fmt.Sprintf("lora-%d", i), Path: "/a"})
	}
	return out
}()

func startFleet(t *testing.T, n int) *vllmsim.Fleet {
	t.Helper()
	cfgs := make([]vllmsim.Config, n)
	for i := range cfgs {
		cfgs[i] = vllmsim.Config{Speed: 200, LoRAModules: adapters, MaxLoRAs: 4,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	ctx, cancel := context.WithCancel(context.Background())
	fleet, err := vllmsim.StartFleet(ctx, cfgs)
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); _ = fleet.Close() })
	return fleet
}

// roundRobin is a plain streaming reverse proxy over the fleet: one base URL
// for several servers, as a gateway's round-robin port is.
func roundRobin(t *testing.T, fleet *vllmsim.Fleet) string {
	var next atomic.Uint64
	var proxies []*httputil.ReverseProxy
	for _, u := range fleet.URLs() {
		target, _ := url.Parse(u)
		p := httputil.NewSingleHostReverseProxy(target)
		p.FlushInterval = -1
		proxies = append(proxies, p)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Go's HTTP/1 server drains and closes a request body once the
		// response headers go out; the proxy's transport may still make
		// its last read of that body then, fail the write, and cut the
		// upstream stream (golang/go#40747). Full duplex leaves the body
		// to the proxy, as a gateway keeps it.
		_ = http.NewResponseController(w).EnableFullDuplex()
		proxies[next.Add(1)%uint64(len(proxies))].ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type result struct {
	stdout, stderr string
	saved          map[string]any
}

func runBench(t *testing.T, args ...string) result {
	t.Helper()
	file := filepath.Join(t.TempDir(), "result.json")
	args = append(args, "--save-result", "--save-detailed", "--result-filename", file)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := bench.Main(ctx, args, &stdout, &stderr)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var saved map[string]any
	require.NoError(t, json.Unmarshal(b, &saved))
	return result{stdout.String(), stderr.String(), saved}
}

// dataset rebuilds the requests the command made from the same flags.
func dataset(t *testing.T, args ...string) []bench.SampleRequest {
	o, err := bench.ParseOptions(args, io.Discard)
	require.NoError(t, err)
	reqs, err := bench.BuildDataset(o)
	require.NoError(t, err)
	return reqs
}

func ints(t *testing.T, v any) []int {
	var out []int
	for _, x := range v.([]any) {
		out = append(out, int(x.(float64)))
	}
	return out
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func totals(fleet *vllmsim.Fleet) (prompt, gen, finished int) {
	for _, s := range fleet.Stats() {
		prompt += int(s.PromptTokens)
		gen += int(s.GenerationTokens)
		finished += int(s.Finished["length"])
	}
	return
}

// checkAgainstSim asserts what every run must show: all requests succeeded,
// the totals are the servers' counters, each prompt was the tokens the
// dataset meant (exact for vllmsim), each output its length.
func checkAgainstSim(t *testing.T, fleet *vllmsim.Fleet, r result, reqs []bench.SampleRequest) {
	t.Helper()
	n := len(reqs)
	prompt, gen, finished := totals(fleet)
	assert.Equal(t, float64(n), r.saved["completed"])
	assert.Equal(t, float64(0), r.saved["failed"])
	assert.Equal(t, float64(prompt), r.saved["total_input_tokens"], "total input tokens = vllm:prompt_tokens_total")
	assert.Equal(t, float64(gen), r.saved["total_output_tokens"], "total generated tokens = vllm:generation_tokens_total")
	assert.Equal(t, n, finished, "every request ran to max_tokens (ignore_eos)")
	var wantIn, wantOut []int
	for _, q := range reqs {
		wantIn = append(wantIn, q.SimPromptLen)
		wantOut = append(wantOut, q.OutputLen)
	}
	assert.Equal(t, wantIn, ints(t, r.saved["input_lens"]), "usage.prompt_tokens = the dataset's count, request by request")
	assert.Equal(t, wantOut, ints(t, r.saved["output_lens"]))
	assert.Contains(t, r.stdout, "============ Serving Benchmark Result ============")
	assert.Contains(t, r.stdout, fmt.Sprintf("%-40s %-10d\n", "Successful requests:", n))
	assert.Contains(t, r.stdout, fmt.Sprintf("%-40s %-10d\n", "Total input tokens:", prompt))
	assert.Contains(t, r.stdout, fmt.Sprintf("%-40s %-10d\n", "Total generated tokens:", gen))
	for _, k := range []string{"duration", "request_throughput", "output_throughput", "total_token_throughput",
		"mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "std_ttft_ms", "mean_tpot_ms", "p99_tpot_ms", "mean_itl_ms",
		"p99_itl_ms", "mean_e2el_ms", "p99_e2el_ms", "ttfts", "itls", "errors", "latencies", "start_times"} {
		assert.Contains(t, r.saved, k)
	}
	assert.Len(t, r.saved["ttfts"], n)
	for _, e := range strs(r.saved["errors"]) {
		assert.Empty(t, e)
	}
	assert.LessOrEqual(t, r.saved["max_concurrent_requests"], r.saved["max_concurrency"])
}

func TestRandomThroughRoundRobinProxy(t *testing.T) {
	fleet := startFleet(t, 2)
	base := roundRobin(t, fleet)
	args := []string{"--dataset-name", "random", "--num-prompts", "40", "--max-concurrency", "8",
		"--random-input-len", "64", "--random-output-len", "16", "--random-range-ratio", "0.25",
		"--random-prefix-len", "16", "--seed", "3", "--metric-percentiles", "50,90,99"}
	r := runBench(t, append([]string{"--base-url", base}, args...)...)
	checkAgainstSim(t, fleet, r, dataset(t, append([]string{"--model", "x"}, args...)...))
	assert.Equal(t, "meta-llama/Llama-3.1-8B-Instruct", r.saved["model_id"], "the model comes from /v1/models")
	assert.Contains(t, r.saved, "p90_ttft_ms")
	assert.Contains(t, r.stdout, "P90 TTFT (ms):")
	// Both servers served: the proxy spread the load.
	for _, s := range fleet.Stats() {
		assert.Positive(t, s.GenerationTokens)
	}
	// Not a terminal: plain progress lines on stderr.
	assert.Contains(t, r.stderr, "progress: 40/40 requests (100%), 0 failed")
}

func TestMultiTurnChatWithLoRAMix(t *testing.T) {
	fleet := startFleet(t, 1)
	var mods []string
	for _, a := range adapters {
		mods = append(mods, a.Name)
	}
	args := append([]string{"--endpoint", "/v1/chat/completions", "--dataset-name", "multi_turn", "--num-prompts", "40",
		"--multi-turn-num-turns", "4", "--multi-turn-user-len", "20", "--multi-turn-output-len", "8",
		"--multi-turn-system-prompt-len", "40", "--max-concurrency", "8", "--seed", "5", "--ignore-eos",
		"--lora-assignment", "round-robin", "--lora-modules"}, mods...)
	reqs := dataset(t, append([]string{"--model", "x"}, args...)...)
	r := runBench(t, append([]string{"--base-url", fleet.URLs()[0]}, args...)...)
	checkAgainstSim(t, fleet, r, reqs)
	// 10 conversations, one an adapter, each served by its adapter.
	served := strs(r.saved["meshllm_response_models"])
	for i, q := range reqs {
		assert.Equal(t, q.Model, served[i])
	}
	assert.Len(t, r.saved["meshllm_served_models"], 10)
	assert.Contains(t, r.stdout, bench.ExtrasHeader+"\nServed models (response \"model\"):        lora-0=4 lora-1=4")
	// Each turn re-sends its conversation: the server finds the earlier
	// turns' prompt blocks in its prefix cache.
	assert.Positive(t, fleet.Stats()[0].PrefixHits)
}

func TestSharedPrefixChatAndPrefixRepetition(t *testing.T) {
	fleet := startFleet(t, 1)
	chat := []string{"--endpoint", "/v1/chat/completions", "--dataset-name", "shared_prefix", "--num-prompts", "30",
		"--shared-prefix-num-groups", "3", "--shared-prefix-prompts-per-group", "5",
		"--shared-prefix-system-prompt-len", "128", "--shared-prefix-question-len", "12", "--shared-prefix-output-len", "4",
		"--max-concurrency", "6", "--ignore-eos"}
	r := runBench(t, append([]string{"--base-url", fleet.URLs()[0]}, chat...)...)
	checkAgainstSim(t, fleet, r, dataset(t, append([]string{"--model", "x"}, chat...)...))
	before := fleet.Stats()[0]
	assert.Positive(t, before.PrefixHits, "the system prompts are shared")

	fleet2 := startFleet(t, 1)
	rep := []string{"--dataset-name", "prefix_repetition", "--num-prompts", "40", "--prefix-repetition-prefix-len", "64",
		"--prefix-repetition-suffix-len", "16", "--prefix-repetition-num-prefixes", "4", "--output-len", "4",
		"--max-concurrency", "8", "--request-rate", "2000", "--burstiness", "0.5", "--ignore-eos"}
	r = runBench(t, append([]string{"--base-url", fleet2.URLs()[0]}, rep...)...)
	checkAgainstSim(t, fleet2, r, dataset(t, append([]string{"--model", "x"}, rep...)...))
	assert.Positive(t, fleet2.Stats()[0].PrefixHits)
	assert.Equal(t, float64(2000), r.saved["request_rate"])
	assert.Contains(t, r.stdout, "Request rate configured (RPS):           2000.00")
	assert.Contains(t, r.stdout, "Burstiness factor: 0.5 (Gamma distribution)")
}

func TestFailuresAreCountedNotRetried(t *testing.T) {
	fleet := startFleet(t, 1)
	sim := fleet.Servers[0].Handler()
	var hits atomic.Int32
	// Every third request is shed with a 429, as a saturated gateway does.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && hits.Add(1)%3 == 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":{"message":"shed","type":"TooManyRequests","code":429}}`)
			return
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	r := runBench(t, "--base-url", srv.URL, "--num-prompts", "30", "--random-input-len", "8", "--random-output-len", "3",
		"--max-concurrency", "4", "--model", "meta-llama/Llama-3.1-8B-Instruct")
	assert.Equal(t, int32(30), hits.Load(), "one attempt a request")
	assert.Equal(t, float64(10), r.saved["failed"])
	assert.Equal(t, float64(20), r.saved["completed"])
	prompt, gen, _ := totals(fleet)
	assert.Equal(t, float64(prompt), r.saved["total_input_tokens"])
	assert.Equal(t, float64(gen), r.saved["total_output_tokens"])
	assert.Contains(t, r.stdout, "Failed requests:                         10")
	assert.Contains(t, r.stdout, "Error 0: 429 Too Many Requests")
	n429 := 0
	for _, e := range strs(r.saved["errors"]) {
		if strings.HasPrefix(e, "429 Too Many Requests") {
			n429++
		}
	}
	assert.Equal(t, 10, n429)
}

func TestBadFlagsAndUnreachableServer(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 2, bench.Main(context.Background(), []string{"--percentile-metrics", "nope"}, &out, &errb))
	assert.Contains(t, errb.String(), "nope")
	errb.Reset()
	assert.Equal(t, 1, bench.Main(context.Background(), []string{"--base-url", "http://127.0.0.1:1", "--num-prompts", "2"}, &out, &errb))
	assert.Contains(t, errb.String(), "/v1/models")
}
