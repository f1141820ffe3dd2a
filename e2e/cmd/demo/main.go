// Command demo is `make demo`: it runs meshllm on localhost with no GPU and
// no cluster (simulated vLLM pods with LoRA adapters, picker-svc, and the
// compiled filter in the gateway host), sends the same mixed workload through
// the round-robin listener (8080) and the LLM-aware one (8081), each on a
// fresh fleet, and prints a side-by-side comparison.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/e2e/loadgen"
	"github.com/meshllm/meshllm/e2e/stack"
	"github.com/meshllm/meshllm/pickapi"
)

var (
	requests    = flag.Int("requests", 400, "requests per listener")
	concurrency = flag.Int("concurrency", 24, "requests in flight")
	speed       = flag.Float64("speed", 5, "simulator speed factor (simulated seconds per real second)")
	pods        = flag.Int("pods", 3, "simulated vLLM pods")
	seed        = flag.Int64("seed", 1, "workload seed")
	verbose     = flag.Bool("v", false, "show component logs")
)

// item is one request of the workload: the body for the LLM-aware listener
// (virtual model names) and for round robin (the concrete adapter a client
// without the gateway would have to pick itself, with the same weights).
type item struct {
	aware, plain loadgen.Request
}

func workload() []item {
	rng := rand.New(rand.NewSource(*seed))
	// Six help desks, each with its own long system prompt: together more
	// than a pod's prefix cache keeps beside its running requests, so round
	// robin recomputes them and PREFIX_CACHE keeps each on its own pods.
	var systems []string
	for d := 0; d < 6; d++ {
		systems = append(systems, fmt.Sprintf("You are support agent %d for a large online shop. ", d)+loadgen.Words(rng, 1200))
	}
	var out []item
	for i := 0; i < *requests; i++ {
		var virtual, concrete, prompt string
		var maxTokens int
		switch p := rng.Float64(); {
		case p < 0.40: // short summaries over two adapters
			virtual, concrete = "tweet-summary", fleet.DemoAdapters[rng.Intn(2)]
			prompt, maxTokens = loadgen.Words(rng, loadgen.Uniform(rng, 250, 0.5)), loadgen.Uniform(rng, 40, 0.5)
		case p < 0.65: // SQL generation, a 90/10 canary
			virtual, concrete = "sql-lora", "sql-lora-1"
			if rng.Float64() < 0.1 {
				concrete = "sql-lora-2"
			}
			prompt, maxTokens = loadgen.Words(rng, loadgen.Uniform(rng, 300, 0.3)), loadgen.Uniform(rng, 80, 0.5)
		case p < 0.75: // long generations on the base model
			virtual, concrete = fleet.DemoBaseModel, fleet.DemoBaseModel
			prompt, maxTokens = loadgen.Words(rng, loadgen.Uniform(rng, 1000, 0.2)), loadgen.Uniform(rng, 400, 0.2)
		default: // a help desk's system prompt and a short question
			virtual, concrete = fleet.DemoBaseModel, fleet.DemoBaseModel
			prompt, maxTokens = systems[rng.Intn(len(systems))]+loadgen.Words(rng, 60), loadgen.Uniform(rng, 60, 0.5)
		}
		out = append(out, item{
			aware: loadgen.Request{Tag: virtual, Body: loadgen.Completion(virtual, prompt, maxTokens, true)},
			plain: loadgen.Request{Tag: virtual, Body: loadgen.Completion(concrete, prompt, maxTokens, true)},
		})
	}
	return out
}

// tail keeps the last lines written to it.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		t.lines = append(t.lines, l)
		if len(t.lines) > 50 {
			t.lines = t.lines[1:]
		}
	}
	return len(p), nil
}

type outcome struct {
	name    string
	summary loadgen.Summary
	kvMean  []float64 // per pod, sampled during the run
	served  []int     // requests per pod
	loads   uint64
	hitRate float64
	behind  uint64
	prom    string
	logs    []string
}

func run(ctx context.Context, name, listener string, items []item, useAware bool) (*outcome, error) {
	logOut := io.Discard
	if *verbose {
		logOut = os.Stderr
	}
	logger := slog.New(slog.NewTextHandler(logOut, nil))
	access := &tail{}
	cfg := stack.Config{Sims: fleet.DemoSims(*pods, *speed, logger), Objects: fleet.DemoObjects(string(pickapi.StrategyPrefixCache)),
		Pool: fleet.DemoPool, AccessLog: access, Log: logOut}
	wasm, err := stack.LoadWasm()
	if err != nil {
		return nil, err
	}
	cfg.Wasm = wasm
	// The ports envoy.yaml names, when free, so you can curl them meanwhile.
	if free("127.0.0.1:8080") && free("127.0.0.1:8081") && free("127.0.0.1:9901") && free("127.0.0.1:9002") {
		cfg.PlainAddr, cfg.LLMAddr, cfg.AdminAddr, cfg.PickerAddr = "127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:9901", "127.0.0.1:9002"
	}
	s, err := stack.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()

	reqs := make([]loadgen.Request, len(items))
	for i, it := range items {
		reqs[i] = it.plain
		if useAware {
			reqs[i] = it.aware
		}
	}
	// Sample each pod's KV-cache usage while the workload runs.
	kvSum := make([]float64, len(s.Fleet.Servers))
	samples := 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				for i, st := range s.Fleet.Stats() {
					kvSum[i] += st.KVCacheUsage
				}
				samples++
			}
		}
	}()
	client := loadgen.NewClient()
	start := time.Now()
	var progressMu sync.Mutex
	var shown time.Time
	results := client.Run(ctx, s.URL(listener), reqs, *concurrency, func(done int) {
		progressMu.Lock()
		defer progressMu.Unlock()
		if done < len(reqs) && time.Since(shown) < 250*time.Millisecond {
			return
		}
		shown = time.Now()
		fmt.Printf("\r  %-24s %4d/%d requests  %5.1fs", name, done, len(reqs), time.Since(start).Seconds())
	})
	wall := time.Since(start)
	close(stop)
	<-sampled
	fmt.Println()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	o := &outcome{name: name, summary: loadgen.Summarize(results, wall), prom: s.PrometheusText()}
	served := s.Gateway.UpstreamCounts(stack.PlainCluster)
	if useAware {
		served = s.Gateway.UpstreamCounts(stack.LLMCluster)
	}
	var q, h uint64
	for i, st := range s.Fleet.Stats() {
		o.kvMean = append(o.kvMean, kvSum[i]/float64(max(samples, 1)))
		o.served = append(o.served, served[s.Fleet.Addrs[i]])
		o.loads += st.LoRALoads
		o.behind += st.BehindSteps
		q += st.PrefixQueries
		h += st.PrefixHits
	}
	if q > 0 {
		o.hitRate = float64(h) / float64(q)
	}
	access.mu.Lock()
	o.logs = append(o.logs, access.lines...)
	access.mu.Unlock()
	return o, nil
}

func free(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func main() {
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	items := workload()
	fmt.Printf("meshllm demo: %d simulated vLLM pods (max_loras 2, 4 LoRA adapters, speed %gx), picker-svc, gateway with wasm/meshllm.wasm\n", *pods, *speed)
	fmt.Printf("workload: %d streamed requests, %d in flight: 40%% short summaries, 25%% SQL (90/10 canary), 20%% long generations, 15%% shared system prompt\n\n", len(items), *concurrency)
	rr, err := run(ctx, "round robin    (:8080)", stack.PlainListener, items, false)
	if err != nil {
		fail(err)
	}
	aware, err := run(ctx, "LLM-aware      (:8081)", stack.LLMListener, items, true)
	if err != nil {
		fail(err)
	}
	report(rr, aware)
}

func fail(err error) {
	if err == context.Canceled {
		fmt.Println("\ninterrupted: everything stopped")
		os.Exit(130)
	}
	fmt.Fprintln(os.Stderr, "demo:", err)
	os.Exit(1)
}

func report(rr, aware *outcome) {
	simMS := func(d time.Duration) string { return fmt.Sprintf("%.0f", d.Seconds()*1000**speed) }
	row := func(label, a, b string) { fmt.Printf("  %-34s %20s %20s\n", label, a, b) }
	fmt.Printf("\nresults (times in simulated vLLM milliseconds: real time x %g)\n", *speed)
	row("", "round robin :8080", "LLM-aware :8081")
	row("requests ok", fmt.Sprintf("%d/%d", rr.summary.OK, rr.summary.N), fmt.Sprintf("%d/%d", aware.summary.OK, aware.summary.N))
	row("TTFT p50 / p90", simMS(rr.summary.TTFT.P50)+" / "+simMS(rr.summary.TTFT.P90), simMS(aware.summary.TTFT.P50)+" / "+simMS(aware.summary.TTFT.P90))
	row("end-to-end p50 / p90", simMS(rr.summary.E2E.P50)+" / "+simMS(rr.summary.E2E.P90), simMS(aware.summary.E2E.P50)+" / "+simMS(aware.summary.E2E.P90))
	tput := func(o *outcome) string { return fmt.Sprintf("%.0f tok/s", o.summary.OutTokPerSec / *speed) }
	row("output throughput (simulated)", tput(rr), tput(aware))
	kv := func(o *outcome) string {
		var parts []string
		lo, hi := 1.0, 0.0
		for _, v := range o.kvMean {
			parts = append(parts, fmt.Sprintf("%.0f%%", v*100))
			lo, hi = min(lo, v), max(hi, v)
		}
		return fmt.Sprintf("%s (spread %.0f)", strings.Join(parts, " "), (hi-lo)*100)
	}
	row("mean KV cache per pod", kv(rr), kv(aware))
	served := func(o *outcome) string {
		var parts []string
		for _, n := range o.served {
			parts = append(parts, fmt.Sprint(n))
		}
		return strings.Join(parts, " / ")
	}
	row("requests per pod", served(rr), served(aware))
	row("LoRA adapter loads", fmt.Sprint(rr.loads), fmt.Sprint(aware.loads))
	row("prefix-cache hit rate", fmt.Sprintf("%.0f%%", rr.hitRate*100), fmt.Sprintf("%.0f%%", aware.hitRate*100))
	if rr.behind+aware.behind > 0 {
		fmt.Printf("  note: the simulators fell behind their clock in %d steps; rerun with a lower -speed for exact figures\n", rr.behind+aware.behind)
	}

	fmt.Println("\ntoken metrics on the LLM-aware gateway's /stats/prometheus (asm_llm_proxy_*):")
	var lines []string
	for _, l := range strings.Split(aware.prom, "\n") {
		if strings.HasPrefix(l, "asm_llm_proxy_prompt_tokens{") || strings.HasPrefix(l, "asm_llm_proxy_completion_tokens{") ||
			strings.HasPrefix(l, "asm_llm_proxy_picks_total{") {
			lines = append(lines, "  "+l)
		}
	}
	sort.Strings(lines)
	fmt.Println(strings.Join(lines, "\n"))

	fmt.Println("\naccess log (last lines of each listener):")
	for _, o := range []*outcome{rr, aware} {
		for _, l := range o.logs[max(0, len(o.logs)-2):] {
			fmt.Println("  " + l)
		}
	}
	fmt.Println("\nmore: README.md (what is verified and how), docs/performance.md, envoy/ and istio/ for real deployments")
}
