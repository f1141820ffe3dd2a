// Package compare is the side-by-side runner: for one workload (a bench
// dataset) and a list of routing policies it runs N repetitions, in
// alternating order, each on a fresh simulated fleet (e2e/stack: vllmsim
// pods, picker-svc and the gateway running the compiled filter), sends the
// load with the bench package's runner, samples every pod's /metrics and the
// gateway's stats meanwhile, and writes summary.json, report.md and plots.
//
// Every time it reports is simulated time (wall time x the speed factor),
// so figures read as a vLLM fleet's would; they are the simulator's figures.
package compare

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/e2e/stack"
	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// Policy is one way of routing the same workload.
type Policy struct {
	Name string
	// Listener is the gateway listener the load goes to.
	Listener string
	// Strategy is the pool's routing-strategy annotation ("" for round
	// robin, which never asks the picker).
	Strategy string
	// Pickers is how many picker replicas run (0: one); Unshared runs
	// them without sharing state; Fault is "", FaultKill or FaultRolling
	// (replicas.go).
	Pickers  int
	Unshared bool
	Fault    string
}

// Policies are the known policies: round robin is envoy.yaml's :8080; the
// others are :8081 with the pool annotated DEFAULT, PREFIX_CACHE or
// LATENCY.
var Policies = map[string]Policy{
	"round_robin":  {Name: "round_robin", Listener: stack.PlainListener},
	"default":      {Name: "default", Listener: stack.LLMListener, Strategy: "DEFAULT"},
	"prefix_cache": {Name: "prefix_cache", Listener: stack.LLMListener, Strategy: "PREFIX_CACHE"},
	// precise routes on the blocks the engines report holding (their KV
	// events); it runs on the gateway path, where the picker has the
	// prompt to tokenize (the filter's picks carry prefix hashes only).
	"precise": {Name: "precise", Listener: ExtProcListener, Strategy: "PRECISE_PREFIX_CACHE"},
	"latency": {Name: "latency", Listener: stack.LLMListener, Strategy: "LATENCY"},
	// prefix_cache_ext_proc is PREFIX_CACHE on precise's path, to tell
	// the path's effect from the engines' account.
	"prefix_cache_ext_proc": {Name: "prefix_cache_ext_proc", Listener: ExtProcListener, Strategy: "PREFIX_CACHE"},
}

// PoolName is the InferencePool the fleet forms.
const PoolName = "bench-pool"

// connectTimeout replaces envoy.yaml's 1 s connect_timeout in the
// gateway. Every pod is in this process on loopback, where a pod that is
// down refuses at once: a connect takes long only while the host runs
// something else. The runner shares a small machine (niced, beside other
// work), and a stall longer than 1 s failed requests with 503 "reset reason:
// connection timeout" (Go reports the dial's deadline even when the kernel
// had completed the handshake meanwhile), which measures the machine, not
// the policy.
const connectTimeout = time.Minute

// Config is one comparison.
type Config struct {
	// Workload names the comparison (summary.json's "workload").
	Workload string
	// Bench is the workload: dataset, num-prompts (already scaled),
	// concurrency, rate, endpoint, percentiles (bench.ParseOptions).
	Bench    *bench.Options
	Policies []Policy
	// Repetitions of every policy (default 3).
	Repetitions int
	Preset      fleet.Preset
	// Sims overrides Preset.Sims (tests).
	Sims func(speed float64, logger *slog.Logger) []vllmsim.Config
	// Speed is the simulators' speed factor.
	Speed float64
	// SampleInterval is the wall time between two scrapes.
	SampleInterval time.Duration
	// PickerTimeoutMS is the filter's picker_timeout_ms (stack.PluginConfig),
	// longer than envoy.yaml's 50: on a loaded machine a pick has taken
	// 200-350 ms (e2e/scenarios/main_test.go), and a timed-out pick falls
	// back to a cached or default endpoint, which would measure the machine,
	// not the policy. The report shows the picks by outcome, so fallbacks
	// are visible.
	PickerTimeoutMS int
	// FaultAfter and FaultEvery time a policy's fault (wall time):
	// the first stop, and the time between a stop and the restart.
	FaultAfter, FaultEvery time.Duration
	// Bypass is the share of requests (0 to 1) sent straight to the pods,
	// round robin, instead of through the policy's gateway (variants.go).
	Bypass float64
	// RestartPodAt, if above 0, restarts one pod when that share of the
	// requests has been sent (by the arrival schedule; needs a finite
	// --request-rate; variants.go).
	RestartPodAt float64
	// PickerConfig is a picker-svc config file (its --config) for the
	// LLM-aware policies: profiles, weights, shedding; "" the defaults.
	PickerConfig string
	Wasm         []byte
	// Cache holds the compiled filter across the runs (default: one for
	// this comparison).
	Cache wazero.CompilationCache
	// Log receives progress lines; Verbose the components' logs.
	Log, Verbose io.Writer
}

// Run is one repetition of one policy.
type Run struct {
	Policy     string
	Repetition int // 1-based
	// Order is the run's position in the whole comparison (1-based).
	Order int
	// Result is vllm bench's saved result (simulated time) without its
	// per-request lists, plus the report's derived figures (summary.json).
	Result bench.Object
	// PerRequest is the per-request lists (vllm's names: latencies,
	// queue_times, ttfts, start_times, and with --save-detailed the rest),
	// for samples.json, which is not committed.
	PerRequest bench.Object
	Metrics    bench.Metrics
	// TTFTs of successful requests, simulated seconds, and when each was
	// sent (Starts[i] belongs to TTFTs[i]).
	TTFTs, Starts []float64
	// RequestsPerPod counts the requests the gateway sent to each pod.
	RequestsPerPod []int
	Samples        []Sample
	Sims           []vllmsim.Stats
	// Gateway is the final pick counters (LLM-aware listeners).
	Gateway  map[string]float64
	WallSecs float64
	// Errors counts the failed requests by error message.
	Errors []ErrorCount
	// BypassPerPod counts the requests sent straight to each pod (Bypass),
	// also counted in RequestsPerPod.
	BypassPerPod []int
	// RestartedAt is when RestartedPod restarted, simulated seconds into
	// the run (0: no restart).
	RestartedAt float64
	// PrefixHitBound is the oracle's prefix-cache hit rate (%) on the
	// prompts this run sent (oracle.go).
	PrefixHitBound float64
}

// ErrorCount is how many failed requests had one error message.
type ErrorCount struct {
	Error string
	Count int
}

// maxErrorMessages bounds the distinct messages a run keeps (a server that
// puts request ids in its errors would make every message distinct).
const maxErrorMessages = 5

// countErrors counts failed requests by message, in order of first
// appearance; messages past maxErrorMessages count under "other errors".
func countErrors(outs []bench.Output) []ErrorCount {
	var out []ErrorCount
	other := 0
	for _, o := range outs {
		if o.Success {
			continue
		}
		i := slices.IndexFunc(out, func(e ErrorCount) bool { return e.Error == o.Error })
		switch {
		case i >= 0:
			out[i].Count++
		case len(out) < maxErrorMessages:
			out = append(out, ErrorCount{Error: o.Error, Count: 1})
		default:
			other++
		}
	}
	if other > 0 {
		out = append(out, ErrorCount{Error: "other errors", Count: other})
	}
	return out
}

// Order is the run order: policies as given, reversed on every second
// repetition (A B C, C B A, A B C), so that no policy always runs first or
// last on a machine whose load drifts.
func Order(policies []Policy, reps int) [][2]int {
	var out [][2]int
	for r := 0; r < reps; r++ {
		for i := range policies {
			j := i
			if r%2 == 1 {
				j = len(policies) - 1 - i
			}
			out = append(out, [2]int{j, r})
		}
	}
	return out
}

// RunAll runs every repetition of every policy.
func RunAll(ctx context.Context, c Config) ([]*Run, error) {
	if c.Repetitions <= 0 {
		c.Repetitions = 3
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = 250 * time.Millisecond
	}
	if c.PickerTimeoutMS <= 0 {
		c.PickerTimeoutMS = 2000
	}
	if c.FaultAfter <= 0 {
		c.FaultAfter = 2 * time.Second
	}
	if c.FaultEvery <= 0 {
		c.FaultEvery = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.Verbose == nil {
		c.Verbose = io.Discard
	}
	if c.Cache == nil {
		c.Cache = wazero.NewCompilationCache()
		defer c.Cache.Close(context.Background())
	}
	reqs, err := bench.BuildDataset(c.Bench)
	if err != nil {
		return nil, err
	}
	var runs []*Run
	order := Order(c.Policies, c.Repetitions)
	for k, pr := range order {
		p := c.Policies[pr[0]]
		fmt.Fprintf(c.Log, "[%d/%d] %s, repetition %d: %d requests ...", k+1, len(order), p.Name, pr[1]+1, len(reqs))
		r, err := runOne(ctx, c, p, reqs)
		if err != nil {
			fmt.Fprintln(c.Log)
			return runs, fmt.Errorf("%s repetition %d: %w", p.Name, pr[1]+1, err)
		}
		r.Repetition, r.Order = pr[1]+1, k+1
		r.Result.Set("policy", p.Name)
		r.Result.Set("repetition", r.Repetition)
		setDerived(r)
		var behind uint64
		for _, s := range r.Sims {
			behind += s.BehindSteps
		}
		fmt.Fprintf(c.Log, " %d ok, %.1f s wall, TTFT p90 %.0f ms, %.0f out tok/s (simulated), behind steps %d\n",
			r.Metrics.Completed, r.WallSecs, pct(r.Metrics.TTFT, 90), r.Metrics.OutputThroughput, behind)
		runs = append(runs, r)
	}
	return runs, nil
}

func pct(s bench.Stat, p float64) float64 {
	for _, x := range s.Percentiles {
		if x.P == p {
			return x.Value
		}
	}
	return math.NaN()
}

func pickerArgs(config string) []string {
	if config == "" {
		return nil
	}
	return []string{"--config", config}
}

func runOne(ctx context.Context, c Config, p Policy, reqs []bench.SampleRequest) (*Run, error) {
	logger := slog.New(slog.NewTextHandler(c.Verbose, nil))
	sims := c.Preset.Sims
	if c.Sims != nil {
		sims = c.Sims
	}
	strategy := p.Strategy
	if strategy == "" {
		strategy = "DEFAULT" // the picker is up but :8080 never asks it
	}
	simCfgs := sims(c.Speed, logger)
	kvArgs, err := preciseKVEvents(p, simCfgs)
	if err != nil {
		return nil, err
	}
	s, err := stack.Start(ctx, stack.Config{
		Wasm: c.Wasm, Sims: simCfgs, Objects: fleet.PoolObjects(PoolName, strategy), Pool: PoolName,
		PluginConfig: stack.PluginConfig(PoolName, c.PickerTimeoutMS), Log: c.Verbose, Cache: c.Cache, ConnectTimeout: connectTimeout,
		PickerArgs: append(pickerArgs(c.PickerConfig), kvArgs...), ExtProc: p.Listener == ExtProcListener,
		Pickers: p.Pickers, PickerSharing: !p.Unshared,
	})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if kvArgs != nil {
		if err := waitSubscribed(ctx, s.Fleet, 30*time.Second); err != nil {
			return nil, err
		}
	}
	o := c.Bench
	model := c.Preset.Model
	if o.Model != "" {
		model = o.Model
	}
	base := ""
	if p.Listener == ExtProcListener {
		base = s.ExtProcGateway.URL()
	} else {
		base = s.URL(p.Listener)
	}
	smp := startSampler(s.Fleet.URLs(), s.PrometheusText, c.Speed, c.SampleInterval)
	faultCtx, stopFaults := context.WithCancel(ctx)
	faultsDone := injectFaults(faultCtx, s, p, c.FaultAfter, c.FaultEvery, c.Log)
	var restartWall time.Duration
	if c.RestartPodAt > 0 {
		restartWall = restartAfter(c.RestartPodAt, len(reqs), o.RequestRate, c.Speed)
	}
	restartDone := injectPodRestart(faultCtx, s, restartWall, c.Speed, c.Log)
	var podURLs []string
	for _, u := range s.Fleet.URLs() {
		podURLs = append(podURLs, u+o.Endpoint)
	}
	urls, bypassPerPod := bypassRoutes(len(reqs), c.Bypass, base+o.Endpoint, podURLs)
	wall := time.Now()
	res, runErr := bench.Run(ctx, bench.RunConfig{
		APIURL: base + o.Endpoint, URLFor: func(i int) string { return urls[i] }, Chat: o.Chat(), Model: model, Requests: reqs,
		RequestRate: wallRate(o.RequestRate, c.Speed), Burstiness: o.Burstiness, MaxConcurrency: o.MaxConcurrency,
		IgnoreEOS: o.IgnoreEOS, ExtraBody: o.ExtraBody, Header: o.Header,
		RequestIDPrefix: o.RequestIDPrefix + p.Name + "-", Seed: o.Seed,
	})
	wallSecs := time.Since(wall).Seconds()
	stopFaults()
	faultErr := faultsDone()
	restartedAt := restartDone()
	samples := smp.Stop()
	if runErr != nil {
		return nil, runErr
	}
	if faultErr != nil {
		return nil, fmt.Errorf("fault: %w", faultErr)
	}
	// Everything the client measured is wall time; the fleet runs
	// c.Speed simulated seconds per wall second.
	for i := range res.Outputs {
		out := &res.Outputs[i]
		out.TTFT *= c.Speed
		out.Latency *= c.Speed
		out.StartTime *= c.Speed
		out.ClientQueueTime *= c.Speed
		for j := range out.ITL {
			out.ITL[j] *= c.Speed
		}
	}
	dur := res.Duration * c.Speed
	m := bench.Calculate(res.Outputs, dur, bench.MetricsOptions{
		Percentiles: o.MetricPercentiles, MaxConcurrencySet: o.MaxConcurrency > 0, RateFinite: !math.IsInf(o.RequestRate, 1),
	})
	result := bench.SavedResult(bench.ResultInfo{
		Date: time.Now().UTC().Format("20060102-150405"), Backend: o.Backend, Label: p.Name, ModelID: model,
		NumPrompts: len(reqs), Metadata: o.Metadata, RequestRate: o.RequestRate, Burstiness: o.Burstiness,
		MaxConcurrency: o.MaxConcurrency, DatasetName: o.DatasetName,
	}, m, res.Outputs, dur, o.PercentileMetrics, o.SaveDetailed)
	r := &Run{Policy: p.Name, Metrics: m, Samples: samples, Sims: s.Fleet.Stats(), WallSecs: wallSecs, Errors: countErrors(res.Outputs),
		BypassPerPod: bypassPerPod, RestartedAt: restartedAt,
		PrefixHitBound: sentPrefixBound(reqs, res, model, s.Fleet.Servers[0].Config().BlockSize)}
	for _, out := range res.Outputs {
		if out.Success {
			r.TTFTs = append(r.TTFTs, out.TTFT)
			r.Starts = append(r.Starts, out.StartTime)
		}
	}
	result.Set("speed_factor", c.Speed)
	result.Set("wall_duration", wallSecs)
	// vllm bench keeps per-request errors only with --save-detailed; this
	// key (not vllm's) keeps why requests failed in every summary.json.
	errs := bench.Object{}
	for _, e := range r.Errors {
		errs.Set(e.Error, e.Count)
	}
	result.Set("failed_request_errors", errs)
	// Also not vllm's: the measured prefix-cache hit rate and the oracle's
	// bound on it, in percent.
	result.Set("prefix_cache_hit_rate_pct", prefixHitRate(r))
	result.Set("prefix_cache_hit_rate_bound_pct", r.PrefixHitBound)
	if c.Bypass > 0 {
		n := 0
		for _, k := range bypassPerPod {
			n += k
		}
		result.Set("bypassed_requests", n)
	}
	if c.RestartPodAt > 0 {
		result.Set("pod_restarted_at_s", restartedAt)
	}
	r.Result, r.PerRequest = splitResult(result)
	for _, col := range []struct {
		key string
		v   func(bench.Output) float64
	}{{"ttfts", func(o bench.Output) float64 { return o.TTFT }}, {"start_times", func(o bench.Output) float64 { return o.StartTime }}} {
		if _, ok := r.PerRequest.Get(col.key); !ok {
			xs := make([]float64, len(res.Outputs))
			for i, o := range res.Outputs {
				xs[i] = col.v(o)
			}
			r.PerRequest.Set(col.key, xs)
		}
	}
	cluster := stack.PlainCluster
	if p.Listener == stack.LLMListener {
		cluster = stack.LLMCluster
	}
	counts := s.Gateway.UpstreamCounts(cluster)
	if p.Listener == ExtProcListener {
		counts = s.ExtProcGateway.UpstreamCounts()
	}
	for i, a := range s.Fleet.Addrs {
		r.RequestsPerPod = append(r.RequestsPerPod, counts[a]+bypassPerPod[i])
	}
	if len(samples) > 0 {
		r.Gateway = samples[len(samples)-1].Gateway
	}
	return r, nil
}

// sentPrefixBound is the oracle's hit rate (%) on what a run sent: each
// request's prompt, or for chat the rendered messages it sent (a
// conversation's history included), under the model it named.
func sentPrefixBound(reqs []bench.SampleRequest, res *bench.RunResult, model string, blockSize int) float64 {
	prompts := make([]simPrompt, len(reqs))
	for i, q := range reqs {
		prompts[i] = simPrompt{Model: model, Text: q.Prompt}
		if q.Model != "" {
			prompts[i].Model = q.Model
		}
		if res.Sent != nil {
			prompts[i].Text = bench.SimChatText(res.Sent[i])
		}
	}
	hits, queries := prefixCacheBound(prompts, blockSize)
	return float64(hits) / float64(max(queries, 1)) * 100
}

// itoa is strconv.Itoa (short, for tables).
func itoa(i int) string { return strconv.Itoa(i) }

// wallRate is the client's send rate in wall seconds for a rate given in
// simulated seconds: the fleet runs speed simulated seconds per wall
// second, so rate r a simulated second is r*speed a wall second. An
// infinite rate stays infinite.
func wallRate(simRate, speed float64) float64 {
	return simRate * speed
}
