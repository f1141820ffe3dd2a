package scheduling

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meshllm/meshllm/pickapi"
)

// The shapes of BenchmarkFleet: the seeds' random 1550/1800 +-20% traffic
// on vllmsim's default fleet (98,304 KV tokens a pod: the KV cache binds)
// and on the Qwen2.5-7B/A10 preset (127,312), at, below and past each
// fleet's knee; natural stops where max_tokens over-estimates; lengths
// +-80%; a prefill-heavy mix; and, at their knees, fleets the placement
// was not tuned on (eight pods; pods of 65,536 KV tokens).
var fleetShapes = []struct {
	name  string
	shape fleetShape
}{
	{"vllmsim/150", fleetShape{pods: 5, blocks: 6144, steps: vllmsimSteps, requests: 600, clients: 150, input: 1550, output: 1800, ratio: 0.2}},
	{"vllmsim/200", fleetShape{pods: 5, blocks: 6144, steps: vllmsimSteps, requests: 800, clients: 200, input: 1550, output: 1800, ratio: 0.2}},
	{"vllmsim/240", fleetShape{pods: 5, blocks: 6144, steps: vllmsimSteps, requests: 960, clients: 240, input: 1550, output: 1800, ratio: 0.2}},
	{"vllmsim/250", fleetShape{pods: 5, blocks: 6144, steps: vllmsimSteps, requests: 1000, clients: 250, input: 1550, output: 1800, ratio: 0.2}},
	{"vllmsim/200-natural-stops", fleetShape{pods: 5, blocks: 6144, steps: vllmsimSteps, requests: 800, clients: 200, input: 1550, output: 1800, ratio: 0.2, naturalStop: 600}},
	{"vllmsim/300-natural-stops", fleetShape{pods: 5, blocks: 6144, steps: vllmsimSteps, requests: 1200, clients: 300, input: 1550, output: 1800, ratio: 0.2, naturalStop: 600}},
	{"vllmsim/200-mixed-lengths", fleetShape{pods: 5, blocks: 6144, steps: vllmsimSteps, requests: 800, clients: 200, input: 1550, output: 1800, ratio: 0.8}},
	{"vllmsim-8-pods/320", fleetShape{pods: 8, blocks: 6144, steps: vllmsimSteps, requests: 1280, clients: 320, input: 1550, output: 1800, ratio: 0.2}},
	{"vllmsim-64k/130", fleetShape{pods: 5, blocks: 4096, steps: vllmsimSteps, requests: 520, clients: 130, input: 1550, output: 1800, ratio: 0.2}},
	{"qwen-a10/225", fleetShape{pods: 5, blocks: 7957, steps: qwenA10Steps, requests: 1000, clients: 225, input: 1550, output: 1800, ratio: 0.2}},
	{"qwen-a10/200", fleetShape{pods: 5, blocks: 7957, steps: qwenA10Steps, requests: 1000, clients: 200, input: 1550, output: 1800, ratio: 0.2}},
	{"qwen-a10/300", fleetShape{pods: 5, blocks: 7957, steps: qwenA10Steps, requests: 1200, clients: 300, input: 1550, output: 1800, ratio: 0.2}},
	{"qwen-a10/300-natural-stops", fleetShape{pods: 5, blocks: 7957, steps: qwenA10Steps, requests: 1500, clients: 300, input: 1550, output: 1800, ratio: 0.2, naturalStop: 400}},
	{"qwen-a10/100-prefill-heavy", fleetShape{pods: 5, blocks: 7957, steps: qwenA10Steps, requests: 1500, clients: 100, input: 4000, output: 200, ratio: 0.2}},
}

// fleetSeeds is how many runs each cell's medians are over.
const fleetSeeds = 12

// fleetVariants are LATENCY with other predicted_ttft parameters:
// "LATENCY-previous" places by TTFT plus the recompute term in every
// regime, without tie preferences (LATENCY before saturation gating and
// staggering).
var fleetVariants = map[string]string{
	"LATENCY-previous":   `{"saturatedDemand":0,"balanceWithin":0,"staggerWithin":0,"staggerSkew":0}`,
	"LATENCY-no-stagger": `{"staggerSkew":0}`,
}

// fleetScheduler is the scheduler of a policy, with a seeded tie-break.
func fleetScheduler(policy string, seed uint64) *Scheduler {
	cfg := DefaultConfig()
	cfg.DebugPicks = 0
	if params, ok := fleetVariants[policy]; ok {
		cfg.Plugins = map[string]json.RawMessage{"predicted_ttft": json.RawMessage(params)}
	}
	s := mustNew(cfg)
	for _, p := range s.profiles {
		p.picker = NewMaxScorePicker(rand.New(rand.NewPCG(seed, 99)))
	}
	return s
}

var fleetPolicies = []string{"round_robin", "DEFAULT", "LATENCY-previous", "LATENCY-no-stagger", "LATENCY"}

// BenchmarkFleet runs each shape under each policy over fleetSeeds seeds
// in virtual time (fleetmodel_test.go) and reports the medians, in
// simulated milliseconds and tokens per second:
//
//	go test -run '^$' -bench Fleet -benchtime 1x ./picker-svc/internal/scheduling
//
// ttft-p90-ms etc. are over every request; after-wave-p90-ms over those
// sent after the first clients (the first wave starts together under any
// policy); kv-spread is the mean gap between the fullest and the emptiest
// pod's KV cache use (near 0: the pods in phase). A model, not the
// benchmark of record (meshllm-compare is).
func BenchmarkFleet(b *testing.B) {
	for _, sh := range fleetShapes {
		for _, policy := range fleetPolicies {
			b.Run(sh.name+"/"+policy, func(b *testing.B) {
				var mean, p50, p90, p99, worst, wave, rate, pre, spread []float64
				for i := 0; i < b.N; i++ {
					mean, p50, p90, p99, worst, wave, rate, pre, spread = nil, nil, nil, nil, nil, nil, nil, nil, nil
					for seed := uint64(1); seed <= fleetSeeds; seed++ {
						st := policy
						if _, ok := fleetVariants[policy]; ok {
							st = string(pickapi.StrategyLatency)
						}
						r := runFleet(sh.shape, fleetScheduler(policy, seed), st, seed)
						var after []float64
						for j, s := range r.sent {
							if s > 0 {
								after = append(after, r.ttft[j])
							}
						}
						total := 0.0
						for _, x := range r.ttft {
							total += x
						}
						mean = append(mean, total/float64(len(r.ttft)))
						p50 = append(p50, percentile(r.ttft, 50))
						p90 = append(p90, percentile(r.ttft, 90))
						p99 = append(p99, percentile(r.ttft, 99))
						worst = append(worst, percentile(r.ttft, 100))
						wave = append(wave, percentile(after, 90))
						rate = append(rate, r.outputRate)
						pre = append(pre, float64(r.preemptions))
						spread = append(spread, r.kvSpread)
					}
				}
				for _, m := range []struct {
					name string
					xs   []float64
					k    float64
				}{{"ttft-mean-ms", mean, 1e3}, {"ttft-p50-ms", p50, 1e3}, {"ttft-p90-ms", p90, 1e3}, {"ttft-p99-ms", p99, 1e3}, {"slowest-ms", worst, 1e3},
					{"after-wave-p90-ms", wave, 1e3}, {"out-tok/s", rate, 1}, {"preemptions", pre, 1},
					{"kv-spread", spread, 1}} {
					b.ReportMetric(percentile(m.xs, 50)*m.k, m.name)
				}
			})
		}
	}
}

// percentile is the p-th percentile of xs (nearest rank; 100 the most).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p/100*float64(len(s))))]
}
