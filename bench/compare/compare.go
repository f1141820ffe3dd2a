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
	"github.com/meshllm/meshllm/e2e/stack"
	"github.com/meshllm/meshllm/e2e/vllmsim"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
)

// Policy is one way of routing the same workload.
type Policy struct {
	Name string
	// Listener is the gateway listener the load goes to.
	Listener string
	// Strategy is the pool's routing-strategy annotation ("" for round
	// robin, which never asks the picker).
	Strategy string
}

// Policies are the known policies: round robin is envoy.yaml's :8080; the
// others are :8081 with the pool annotated DEFAULT or PREFIX_CACHE.
var Policies = map[string]Policy{
	"round_robin":  {Name: "round_robin", Listener: stack.PlainListener},
	"default":      {Name: "default", Listener: stack.LLMListener, Strategy: "DEFAULT"},
	"prefix_cache": {Name: "prefix_cache", Listener: stack.LLMListener, Strategy: "PREFIX_CACHE"},
}

// PoolName is the InferencePool the fleet forms.
const PoolName = "bench-pool"

const poolYAML = `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: ` + PoolName + `
  annotations:
    inference.networking.x-k8s.io/routing-strategy: %s
spec:
  targetPortNumber: 8000
  selector: {app: vllm}
`

// pluginConfig is envoy/envoy.yaml's LLM listener configuration with this
// pool and a longer picker timeout: on a loaded machine a pick has taken
// 200-350 ms (e2e/scenarios/main_test.go), and a timed-out pick falls back
// to a cached or default endpoint, which would measure the machine, not the
// policy. The report shows the picks by outcome, so fallbacks are visible.
func pluginConfig(timeoutMS int) string {
	return fmt.Sprintf(`{"route_on":"body","picker_cluster":"picker","picker_authority":"picker","picker_path":%q,`+
		`"picker_timeout_ms":%d,"pool":%q,"failure_mode":"open","watchdog_ms":%d,"fallback_cache":true,`+
		`"inject_stream_usage":true,"max_request_body_bytes":4194304}`, pickapi.Path, timeoutMS, PoolName, max(1000, 2*timeoutMS))
}

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
	Preset      Preset
	// Sims overrides Preset.Sims (tests).
	Sims func(speed float64, logger *slog.Logger) []vllmsim.Config
	// Speed is the simulators' speed factor.
	Speed float64
	// SampleInterval is the wall time between two scrapes.
	SampleInterval  time.Duration
	PickerTimeoutMS int
	Wasm            []byte
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
	// Result is vllm bench's saved result (simulated time).
	Result  bench.Object
	Metrics bench.Metrics
	// TTFTs of successful requests, simulated seconds.
	TTFTs []float64
	// RequestsPerPod counts the requests the gateway sent to each pod.
	RequestsPerPod []int
	Samples        []Sample
	Sims           []vllmsim.Stats
	// Gateway is the final pick counters (LLM-aware listeners).
	Gateway  map[string]float64
	WallSecs float64
	// Errors are the first distinct errors of failed requests (at most 5).
	Errors []string
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
	s, err := stack.Start(ctx, stack.Config{
		Wasm: c.Wasm, Sims: sims(c.Speed, logger), Objects: fmt.Sprintf(poolYAML, strategy), Pool: PoolName,
		PluginConfig: pluginConfig(c.PickerTimeoutMS), Log: c.Verbose, Cache: c.Cache,
	})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	o := c.Bench
	model := c.Preset.Model
	if o.Model != "" {
		model = o.Model
	}
	smp := startSampler(s.Fleet.URLs(), s.PrometheusText, c.Speed, c.SampleInterval)
	wall := time.Now()
	res, runErr := bench.Run(ctx, bench.RunConfig{
		APIURL: s.URL(p.Listener) + o.Endpoint, Chat: o.Chat(), Model: model, Requests: reqs,
		RequestRate: o.RequestRate / c.Speed, Burstiness: o.Burstiness, MaxConcurrency: o.MaxConcurrency,
		IgnoreEOS: o.IgnoreEOS, ExtraBody: o.ExtraBody, Header: o.Header,
		RequestIDPrefix: o.RequestIDPrefix + p.Name + "-", Seed: o.Seed,
	})
	wallSecs := time.Since(wall).Seconds()
	samples := smp.Stop()
	if runErr != nil {
		return nil, runErr
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
	}, m, res.Outputs, dur, o.PercentileMetrics, false)
	r := &Run{Policy: p.Name, Result: result, Metrics: m, Samples: samples, Sims: s.Fleet.Stats(), WallSecs: wallSecs}
	result.Set("speed_factor", c.Speed)
	result.Set("wall_duration", wallSecs)
	r.Result = result
	for _, out := range res.Outputs {
		if out.Success {
			r.TTFTs = append(r.TTFTs, out.TTFT)
		} else if len(r.Errors) < 5 && !slices.Contains(r.Errors, out.Error) {
			r.Errors = append(r.Errors, out.Error)
		}
	}
	cluster := stack.PlainCluster
	if p.Listener == stack.LLMListener {
		cluster = stack.LLMCluster
	}
	counts := s.Gateway.UpstreamCounts(cluster)
	for _, a := range s.Fleet.Addrs {
		r.RequestsPerPod = append(r.RequestsPerPod, counts[a])
	}
	if len(samples) > 0 {
		r.Gateway = samples[len(samples)-1].Gateway
	}
	return r, nil
}

// itoa is strconv.Itoa (short, for tables).
func itoa(i int) string { return strconv.Itoa(i) }
