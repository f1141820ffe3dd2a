package scheduling

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

func TestSaturated(t *testing.T) {
	pod := func(demand, capacity float64) Candidate { return Candidate{KVDemand: demand, KVCapacity: capacity} }
	for _, tc := range []struct {
		name      string
		cands     []Candidate
		threshold float64
		want      bool
	}{
		{"the fleet's demand past the threshold", []Candidate{pod(100, 100), pod(90, 100)}, 0.95, true},
		{"one full pod does not saturate the fleet", []Candidate{pod(150, 100), pod(30, 100)}, 0.95, false},
		{"pods without a known cache do not count", []Candidate{pod(96, 100), pod(0, 0)}, 0.95, true},
		{"no cache size known: never", []Candidate{pod(1e9, 0)}, 0.95, false},
		{"threshold 0: never", []Candidate{pod(1e9, 100)}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, saturated(tc.cands, tc.threshold)) })
	}
}

func TestPlacementScores(t *testing.T) {
	type pod struct {
		ttft, recompute, demand float64
		picked                  time.Duration // after t0
	}
	for _, tc := range []struct {
		name      string
		pods      []pod
		saturated bool
		within    float64
		want      []float64
	}{
		{name: "below saturation: TTFT plus the recompute it risks", pods: []pod{{ttft: 1, recompute: 1}, {ttft: 1.5}},
			want: []float64{0.75, 1}},
		{name: "saturated: TTFT alone", pods: []pod{{ttft: 1, recompute: 1}, {ttft: 1.5}}, saturated: true,
			want: []float64{1, 1 / 1.5}},
		{name: "below saturation, a near tie goes to the least KV demand", within: 0.03,
			pods: []pod{{ttft: 1, demand: 500}, {ttft: 1.02, demand: 400}, {ttft: 2, demand: 0}},
			want: []float64{nearTieScore, 1, 0.5}},
		{name: "saturated, a near tie goes to the pod picked last", saturated: true, within: 0.05,
			pods: []pod{{ttft: 1, picked: 1}, {ttft: 1.04, picked: 3}, {ttft: 1.2, picked: 5}},
			want: []float64{nearTieScore, 1, 1 / 1.2}},
		{name: "a pick beyond the tie is not preferred", saturated: true, within: 0.05,
			pods: []pod{{ttft: 1, picked: 1}, {ttft: 1.1, picked: 3}},
			want: []float64{1, 1 / 1.1}},
		{name: "no tolerance: no preference", within: 0,
			pods: []pod{{ttft: 1, demand: 500}, {ttft: 1.001, demand: 0}},
			want: []float64{1, 1 / 1.001}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cands := make([]Candidate, len(tc.pods))
			for i, p := range tc.pods {
				cands[i] = Candidate{PredictedTTFT: p.ttft, PredictedRecompute: p.recompute, KVDemand: p.demand, LastPicked: t0.Add(p.picked)}
			}
			got := make([]float64, len(cands))
			placementScores(cands, got, tc.saturated, tc.within)
			require.InDeltaSlice(t, tc.want, got, 1e-9)
		})
	}
}

// Through the LATENCY profile, three equal pods whose KV cache is full
// (every pick waits there about as long): below saturation the picks
// spread (the least KV demand takes each near tie); saturated, they stay
// on the pod picked last.
func TestLatencyStaggersOnlyWhenSaturated(t *testing.T) {
	for _, tc := range []struct {
		name    string
		running float64
		// most is the most picks of 6 any one pod may take, least the
		// fewest the busiest must take.
		most, least int
		regime      string // as the explanation names it
	}{
		// 16,000-token pods; requests of 350 tokens at their mean
		// footprint (100 prompt, half of 500 output).
		{name: "below saturation: spread", running: 5, most: 2, least: 2, regime: RegimeUnsaturated},
		{name: "saturated: staggered", running: 60, most: 6, least: 6, regime: RegimeSaturated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(DefaultConfig())
			snap := kvPod(scrape.Snapshot{Running: tc.running, KVCacheUsage: 1})
			eps := endpoints(snap, snap, snap)
			count := map[*scrape.Endpoint]int{}
			for i := 0; i < 6; i++ {
				res, err := s.Pick(eps, pickapi.StrategyLatency, &Request{TargetModel: "m", PromptTokens: 100, MaxTokens: 500}, t0.Add(time.Duration(i)*time.Millisecond))
				require.NoError(t, err)
				count[res.Endpoints[0]]++
			}
			busiest := 0
			for _, n := range count {
				busiest = max(busiest, n)
			}
			require.LessOrEqual(t, busiest, tc.most, "%v", count)
			require.GreaterOrEqual(t, busiest, tc.least, "%v", count)

			res, err := s.Pick(eps, pickapi.StrategyLatency, &Request{TargetModel: "m", PromptTokens: 100, MaxTokens: 500, Explain: true}, t0.Add(time.Second))
			require.NoError(t, err)
			require.Equal(t, tc.regime, res.Explanation.Regime, "the explanation says which regime placed the request")
			require.True(t, strings.HasPrefix(res.Explanation.Line(pickapi.MaxExplainLen), "LATENCY "+tc.regime+" kv_demand="), res.Explanation.Line(pickapi.MaxExplainLen))
		})
	}
}
