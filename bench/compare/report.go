package compare

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/fleet"
)

// metric is one row of the comparison table.
type metric struct {
	key, label string
	value      func(*Run) float64
}

func resultKey(key string) func(*Run) float64 {
	return func(r *Run) float64 {
		v, _ := r.Result.Get(key)
		switch v := v.(type) {
		case float64:
			return v
		case int:
			return float64(v)
		}
		return math.NaN()
	}
}

// metrics are the rows: vllm bench's keys first (simulated ms, tok/s),
// then what the sampling and the simulators' counters give.
var metrics = []metric{
	{"median_ttft_ms", "TTFT p50 (ms)", resultKey("median_ttft_ms")},
	{"p90_ttft_ms", "TTFT p90 (ms)", resultKey("p90_ttft_ms")},
	{"p99_ttft_ms", "TTFT p99 (ms)", resultKey("p99_ttft_ms")},
	{"p90_ttft_after_wave_ms", "TTFT p90 after the first wave (ms)", func(r *Run) float64 {
		return afterFirstWaveP90(r.Starts, r.TTFTs, r.maxConcurrency())
	}},
	{"p90_tail_first_wave_pct", "first-wave share of the TTFTs above p90 (%)", func(r *Run) float64 {
		return firstWaveShareAboveP90(r.Starts, r.TTFTs, r.maxConcurrency())
	}},
	{"max_ttft_ms", "slowest request's TTFT (ms)", func(r *Run) float64 {
		if len(r.TTFTs) == 0 {
			return math.NaN()
		}
		return slices.Max(r.TTFTs) * 1000
	}},
	{"mean_ttft_ms", "TTFT mean (ms)", resultKey("mean_ttft_ms")},
	{"median_tpot_ms", "TPOT p50 (ms)", resultKey("median_tpot_ms")},
	{"median_e2el_ms", "E2EL p50 (ms)", resultKey("median_e2el_ms")},
	{"output_throughput", "output tok/s", resultKey("output_throughput")},
	{"request_throughput", "requests/s", resultKey("request_throughput")},
	{"kv_spread_points", "KV spread (max-min of per-pod mean, points)", func(r *Run) float64 {
		m := podMeanKV(r)
		return (slices.Max(m) - slices.Min(m)) * 100
	}},
	{"kv_mean_pct", "KV usage, fleet mean (%)", func(r *Run) float64 {
		m := podMeanKV(r)
		var s float64
		for _, x := range m {
			s += x
		}
		return s / float64(len(m)) * 100
	}},
	{"prefix_cache_hit_rate_pct", "prefix-cache hit rate (%)", prefixHitRate},
	{"prefix_cache_hit_rate_bound_pct", "prefix-cache hit rate, oracle bound (%)", func(r *Run) float64 { return r.PrefixHitBound }},
	{"prefix_cache_hit_rate_below_bound_points", "hit rate below the bound (points)", func(r *Run) float64 { return r.PrefixHitBound - prefixHitRate(r) }},
	{"evicted_blocks", "cached blocks evicted (all pods)", func(r *Run) float64 {
		var n uint64
		for _, s := range r.Sims {
			n += s.EvictedBlocks
		}
		return float64(n)
	}},
	{"preemptions", "preemptions", func(r *Run) float64 {
		var n uint64
		for _, s := range r.Sims {
			n += s.Preemptions
		}
		return float64(n)
	}},
	{"max_waiting_one_pod", "peak waiting on one pod", func(r *Run) float64 {
		var m float64
		for _, s := range r.Samples {
			for _, p := range s.Pods {
				m = max(m, p.Waiting)
			}
		}
		return m
	}},
	{"failed", "failed requests", resultKey("failed")},
}

// setDerived adds the rows that vllm bench's result does not carry (the
// first wave, KV, preemptions, the slowest request, ...) to r.Result under
// their keys, so that summary.json alone gives every row of the report.
func setDerived(r *Run) {
	for _, m := range metrics {
		if _, ok := r.Result.Get(m.key); !ok {
			r.Result.Set(m.key, jsonNumber(m.value(r)))
		}
	}
}

// afterFirstWaveP90 is the TTFT p90 (ms) of the requests sent after every
// request of the first wave had its first token. The first wave is the
// first concurrency requests sent: with a concurrency limit they start
// together and queue for their prefills under any policy, so they and the
// requests sent while they wait set the tails of short runs. What is left
// is the steady state a policy is responsible for. NaN without a
// concurrency limit or when no request was sent after the wave.
func afterFirstWaveP90(starts, ttfts []float64, concurrency int) float64 {
	if concurrency <= 0 || len(starts) <= concurrency {
		return math.NaN()
	}
	order := sentOrder(starts)
	end := math.Inf(-1)
	for _, i := range order[:concurrency] {
		end = max(end, starts[i]+ttfts[i])
	}
	var after []float64
	for i, st := range starts {
		if st > end {
			after = append(after, ttfts[i])
		}
	}
	if len(after) == 0 {
		return math.NaN()
	}
	slices.Sort(after)
	return bench.PercentileLinear(after, 90) * 1000
}

// firstWaveShareAboveP90 is the share (%) of the requests whose TTFT is
// above the run's p90 that belong to the first wave (the first concurrency
// sent). Near 100 says p90 is the wave's queue, which no placement removes;
// near 0 says it is the steady state. NaN without a concurrency limit or
// requests.
func firstWaveShareAboveP90(starts, ttfts []float64, concurrency int) float64 {
	if concurrency <= 0 || len(ttfts) == 0 {
		return math.NaN()
	}
	order := sentOrder(starts)
	sorted := slices.Sorted(slices.Values(ttfts))
	p90 := bench.PercentileLinear(sorted, 90)
	var above, wave int
	for rank, i := range order {
		if ttfts[i] > p90 {
			above++
			if rank < concurrency {
				wave++
			}
		}
	}
	if above == 0 {
		return 0
	}
	return float64(wave) / float64(above) * 100
}

// sentOrder is the indexes of starts in the order the requests were sent.
func sentOrder(starts []float64) []int {
	order := make([]int, len(starts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(starts[a], starts[b]) })
	return order
}

// maxConcurrency is the run's --max-concurrency (0: none).
func (r *Run) maxConcurrency() int {
	c := resultKey("max_concurrency")(r)
	if math.IsNaN(c) {
		return 0
	}
	return int(c)
}

// prefixHitRate is the fleet's prefix-cache hit rate (%): hit tokens over
// queried tokens, vllmsim's vllm:prefix_cache_hits_total over
// vllm:prefix_cache_queries_total.
func prefixHitRate(r *Run) float64 {
	var q, h uint64
	for _, s := range r.Sims {
		q += s.PrefixQueries
		h += s.PrefixHits
	}
	if q == 0 {
		return 0
	}
	return float64(h) / float64(q) * 100
}

// noRatio are the rows whose ratio to round robin says nothing: the bound
// is the dataset's, the same under every policy, a difference of points is
// not a rate, and the first wave's share of the tail describes the run, not
// a gain.
var noRatio = map[string]bool{"prefix_cache_hit_rate_bound_pct": true, "prefix_cache_hit_rate_below_bound_points": true, "p90_tail_first_wave_pct": true}

// podMeanKV is each pod's KV-cache usage averaged over the samples taken
// while requests were in flight (the idle tail after the last request, and
// the samples before the first, would dilute it unequally).
func podMeanKV(r *Run) []float64 {
	n := len(r.RequestsPerPod)
	if len(r.Samples) > 0 {
		n = len(r.Samples[0].Pods)
	}
	sum := make([]float64, n)
	cnt := 0
	for _, s := range r.Samples {
		busy := false
		for _, p := range s.Pods {
			busy = busy || p.Running+p.Waiting > 0
		}
		if !busy {
			continue
		}
		for i, p := range s.Pods {
			sum[i] += p.KVCacheUsage
		}
		cnt++
	}
	for i := range sum {
		sum[i] /= float64(max(cnt, 1))
	}
	if len(sum) == 0 {
		return []float64{0}
	}
	return sum
}

// spread is min, median, max.
type spread struct{ Min, Median, Max float64 }

func spreadOf(xs []float64) spread {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return spread{math.NaN(), math.NaN(), math.NaN()}
	}
	return spread{s[0], bench.PercentileLinear(s, 50), s[len(s)-1]}
}

// Table is the comparison: per metric, per policy, min/median/max across
// repetitions.
type Table struct {
	Policies []string
	Rows     []Row
}

// Row is one metric.
type Row struct {
	Key, Label string
	ByPolicy   map[string]spread
}

// Summarize builds the table from the runs.
func Summarize(policies []string, runs []*Run) Table {
	t := Table{Policies: policies}
	for _, m := range metrics {
		row := Row{Key: m.key, Label: m.label, ByPolicy: map[string]spread{}}
		for _, p := range policies {
			var xs []float64
			for _, r := range runs {
				if r.Policy == p {
					xs = append(xs, m.value(r))
				}
			}
			row.ByPolicy[p] = spreadOf(xs)
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

func num(x float64) string {
	switch {
	case math.IsNaN(x):
		return "-"
	case math.Abs(x) >= 100:
		return fmt.Sprintf("%.0f", x)
	case math.Abs(x) >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// Markdown writes the table: median (min-max) per policy, then the ratio of
// each policy's median to round robin's.
func (t Table) Markdown(w io.Writer) {
	base := ""
	if slices.Contains(t.Policies, "round_robin") {
		base = "round_robin"
	}
	fmt.Fprint(w, "| metric |")
	for _, p := range t.Policies {
		fmt.Fprintf(w, " %s |", p)
	}
	var others []string
	for _, p := range t.Policies {
		if base != "" && p != base {
			others = append(others, p)
			fmt.Fprintf(w, " %s / RR |", p)
		}
	}
	fmt.Fprint(w, "\n|---|")
	fmt.Fprint(w, strings.Repeat("---:|", len(t.Policies)+len(others)))
	fmt.Fprintln(w)
	for _, r := range t.Rows {
		fmt.Fprintf(w, "| %s |", r.Label)
		for _, p := range t.Policies {
			s := r.ByPolicy[p]
			if s.Min == s.Max {
				fmt.Fprintf(w, " %s |", num(s.Median))
			} else {
				fmt.Fprintf(w, " %s (%s–%s) |", num(s.Median), num(s.Min), num(s.Max))
			}
		}
		for _, p := range others {
			b := r.ByPolicy[base].Median
			if b == 0 || math.IsNaN(b) || noRatio[r.Key] {
				fmt.Fprint(w, " - |")
				continue
			}
			fmt.Fprintf(w, " %.2f |", r.ByPolicy[p].Median/b)
		}
		fmt.Fprintln(w)
	}
}

// Summary is summary.json.
func Summary(workload string, policies []string, runs []*Run) bench.Object {
	var ps bench.Object
	for _, p := range policies {
		var list []bench.Object
		for rep := 1; ; rep++ {
			found := false
			for _, r := range runs {
				if r.Policy == p && r.Repetition == rep {
					list = append(list, r.Result)
					found = true
				}
			}
			if !found {
				break
			}
		}
		if list == nil {
			list = []bench.Object{}
		}
		ps.Set(p, list)
	}
	return bench.Object{{Key: "workload", Value: workload}, {Key: "policies", Value: ps}}
}

// ReportInfo is what report.md says besides the tables.
type ReportInfo struct {
	Workload, Command, Preset, Scale string
	// Fleet is the fleet as run (the preset with any --pods override).
	Fleet       fleet.Preset
	Speed       float64
	Repetitions int
	Dataset     string
	// Bypass and RestartPodAt are the variant's options (Config).
	Bypass, RestartPodAt float64
	// Plots are the PNGs to write (nil: the usual six).
	Plots []string
}

// Write puts summary.json, samples.json, report.md and the plots in dir.
func Write(dir string, info ReportInfo, policies []string, runs []*Run) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := marshalSummary(Summary(info.Workload, policies, runs))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644); err != nil {
		return err
	}
	// The raw data: every scrape and every request's figures (not
	// committed; .gitignore).
	type runSamples struct {
		Policy     string       `json:"policy"`
		Repetition int          `json:"repetition"`
		Samples    []Sample     `json:"samples"`
		Requests   bench.Object `json:"requests,omitempty"`
	}
	var all []runSamples
	for _, r := range runs {
		all = append(all, runSamples{r.Policy, r.Repetition, r.Samples, r.PerRequest})
	}
	if b, err = json.Marshal(all); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "samples.json"), b, 0o644); err != nil {
		return err
	}
	plots, err := WritePlots(dir, policies, runs, info.Plots)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "report.md"))
	if err != nil {
		return err
	}
	writeReport(f, info, policies, runs, plots)
	return f.Close()
}

func writeReport(w io.Writer, info ReportInfo, policies []string, runs []*Run, plots []string) {
	fmt.Fprintf(w, "# %s: %s\n\n", info.Workload, strings.Join(policies, " vs "))
	fmt.Fprintf(w, "```sh\n%s\n```\n\n", info.Command)
	fmt.Fprintf(w, "- Workload: %s.\n", info.Dataset)
	fmt.Fprintf(w, "- Fleet: preset `%s`. %s\n", info.Preset, info.Fleet.Describe())
	fmt.Fprintf(w, "- %d repetitions per policy, each on a fresh fleet, in alternating order; scale %s; simulator speed %gx.\n",
		info.Repetitions, info.Scale, info.Speed)
	if info.Bypass > 0 {
		fmt.Fprintf(w, "- Bypass: %.0f%% of the requests, spread evenly through the run, went straight to the pods, round robin over their addresses, as another gateway would send them: the policy's picker never saw them.\n", info.Bypass*100)
	}
	if info.RestartPodAt > 0 {
		fmt.Fprintf(w, "- Pod restart: pod %d (pods count from 0, as in the plots) restarted once %.0f%% of the requests had been sent (by the arrival schedule): its connections in flight were cut, its KV cache came back empty and it published AllBlocksCleared; it answered again at once.\n", RestartedPod, info.RestartPodAt*100)
	}
	fmt.Fprintf(w, "- **All times are simulated** (wall time x %g): these are vllmsim's figures, not a GPU's. Cells are median (min–max) across repetitions; ratios are medians against round robin.\n\n", info.Speed)
	fmt.Fprintln(w, "## Results")
	fmt.Fprintln(w)
	Summarize(policies, runs).Markdown(w)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "The oracle bound is the best prefix-cache hit rate any router could reach on the prompts each run sent: "+
		"one cache that never evicts, each request admitted once in the order sent, counted as vllmsim counts (full %d-token blocks, "+
		"chained, per model or adapter; the last token always recomputed). It is an upper bound: it ignores eviction and load "+
		"(a group spread over pods computes its prefix once per pod). vllmsim counts a preempted request's queries again when it is "+
		"readmitted, so with preemptions a measured rate can pass it. \"Below the bound\" is the bound minus the measured rate, in points.\n", fleet.BlockSize)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\"After the first wave\" counts only the requests sent once every request of the first wave (the first max-concurrency sent, which start together) had its first token. "+
		"The first wave queues for its prefills under any policy, and it and the requests sent while it waits set the tails of a short run; what is left is the steady state. "+
		"\"First-wave share of the TTFTs above p90\" is how many of the slowest 10% are first-wave requests: near 100, p90 is the wave's queue, which no placement removes.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Requests per pod (gateway upstream counts, plus any sent straight to the pod)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The hit rate per pod is each simulator's prefix-cache hits over its queries (tokens).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| policy | repetition | requests per pod | KV mean per pod (%) | prefix-cache hit rate per pod (%) |")
	fmt.Fprintln(w, "|---|---:|---|---|---|")
	for _, p := range policies {
		for _, r := range runs {
			if r.Policy != p {
				continue
			}
			var counts, kv, hits []string
			for i, n := range r.RequestsPerPod {
				c := itoa(n)
				if i < len(r.BypassPerPod) && r.BypassPerPod[i] > 0 {
					c += fmt.Sprintf(" (%d direct)", r.BypassPerPod[i])
				}
				counts = append(counts, c)
			}
			for _, s := range r.Sims {
				hits = append(hits, fmt.Sprintf("%.0f", float64(s.PrefixHits)/float64(max(s.PrefixQueries, 1))*100))
			}
			hitCol := strings.Join(hits, " / ")
			if r.RestartedAt > 0 {
				hitCol += fmt.Sprintf(" (pod %d restarted at %.0f s)", RestartedPod, r.RestartedAt)
			}
			for _, x := range podMeanKV(r) {
				kv = append(kv, fmt.Sprintf("%.0f", x*100))
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", p, r.Repetition, strings.Join(counts, " / "), strings.Join(kv, " / "), hitCol)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Did the simulators keep time?")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "vllmsim counts a step as behind when its loop trails the speed-scaled clock by more than 0.1 simulated s (e2e/vllmsim/README.md); behind steps make latencies longer than the model says.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The pick column is the filter's mean pick latency as the gateway measured it, in wall ms and, multiplied by the speed factor, in the simulated ms it adds to every TTFT of an LLM-aware run: on this loaded machine it is harness overhead a real gateway does not have at that size (picker-svc answers in microseconds; docs/performance.md).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | policy | repetition | wall s | steps | behind steps | max lag (sim s) | mean pick, wall ms (simulated ms) | picks (gateway) |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---|")
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b *Run) int { return a.Order - b.Order })
	var totalBehind uint64
	for _, r := range sorted {
		var steps, behind uint64
		var lag float64
		for _, s := range r.Sims {
			steps += s.Steps
			behind += s.BehindSteps
			lag = max(lag, s.MaxLag)
		}
		totalBehind += behind
		pick := "-"
		if ms := meanPickMillis(r.Gateway); !math.IsNaN(ms) {
			pick = fmt.Sprintf("%.1f (%.0f)", ms, ms*info.Speed)
		}
		fmt.Fprintf(w, "| %d | %s | %d | %.1f | %d | %d | %.2f | %s | %s |\n", r.Order, r.Policy, r.Repetition, r.WallSecs, steps, behind, lag, pick, picks(r.Gateway))
	}
	fmt.Fprintln(w)
	if totalBehind == 0 {
		fmt.Fprintln(w, "No simulator fell behind its clock in any run.")
	} else {
		fmt.Fprintf(w, "The simulators fell behind in %d steps in all; read the latencies of those runs as upper bounds, or rerun with a lower speed.\n", totalBehind)
	}
	for _, r := range sorted {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "- run %d (%s): %d failed with `%s`\n", r.Order, r.Policy, e.Count, strings.ReplaceAll(e.Error, "`", "'"))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Plots (first repetition of each policy unless noted)")
	fmt.Fprintln(w)
	for _, p := range plots {
		fmt.Fprintf(w, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
	}
	fmt.Fprintln(w, "Files: `summary.json` (vllm bench's saved result per repetition, by policy, without its per-request lists, plus this table's other rows), "+
		"`samples.json` (not committed: every scrape, and every request's latency, TTFT, send time and queue time).")
}

// picks renders the gateway's pick counters compactly.
func picks(g map[string]float64) string {
	if len(g) == 0 {
		return "-"
	}
	var keys []string
	for k := range g {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		if g[k] == 0 || !strings.HasPrefix(k, "asm_llm_proxy_picks_total") {
			continue
		}
		l := strings.TrimPrefix(k, "asm_llm_proxy_picks_total")
		parts = append(parts, fmt.Sprintf("%s %.0f", l, g[k]))
	}
	return strings.Join(parts, ", ")
}

// round1 rounds to one decimal (report figures).
func round1(x float64) float64 { return math.Round(x*10) / 10 }
