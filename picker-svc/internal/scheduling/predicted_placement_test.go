package scheduling

import (
	"encoding/json"
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

func TestStaggering(t *testing.T) {
	pod := func(peak, use float64) Candidate {
		return Candidate{KVPeak: peak, KVCapacity: 100, S: &scrape.Snapshot{KVCacheUsage: use}}
	}
	for _, tc := range []struct {
		name  string
		cands []Candidate
		want  bool
	}{
		{"a burst that would fill the fleet at its end, into an empty fleet", []Candidate{pod(100, 0), pod(90, 0)}, true},
		{"the fleet still filling", []Candidate{pod(100, 0.6), pod(100, 0.3)}, true},
		{"the fleet filled", []Candidate{pod(100, 0.6), pod(100, 0.4)}, false},
		{"room for every request at its end", []Candidate{pod(90, 0), pod(90, 0)}, false},
		{"pods without a known cache do not count", []Candidate{pod(96, 0), {KVPeak: 1e9, S: &scrape.Snapshot{}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, staggering(tc.cands, 0.95, 0.5)) })
	}
	require.False(t, staggering([]Candidate{pod(1e9, 0)}, 0, 0.5), "threshold 0: never")
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
			placementScores(cands, got, tc.saturated, tc.within, 0)
			require.InDeltaSlice(t, tc.want, got, 1e-9)
		})
	}
}

func TestStaggerWeights(t *testing.T) {
	cands := []Candidate{{EP: &scrape.Endpoint{Addr: "10.0.0.3:8000"}}, {EP: &scrape.Endpoint{Addr: "10.0.0.1:8000"}},
		{EP: &scrape.Endpoint{Addr: "10.0.0.2:8000"}}}
	require.InDeltaSlice(t, []float64{1.25, 0.75, 1}, staggerWeights(cands, 0.25), 1e-12, "by the rank of the address, whatever the order")
	require.Nil(t, staggerWeights(cands, 0), "no skew: every weight 1")
	require.Nil(t, staggerWeights(cands[:1], 0.25), "one pod")

	// Saturated, equal predictions go to the heaviest weight, and a
	// prediction wins against a lighter one only within the weights'
	// ratio: at most (1+skew)/(1-skew) times the best.
	scores := make([]float64, 3)
	for i := range cands {
		cands[i].PredictedTTFT = 1
	}
	placementScores(cands, scores, true, 0, 0.25)
	require.InDeltaSlice(t, []float64{1, 0.75 / 1.25, 1 / 1.25}, scores, 1e-12)
	cands[2].PredictedTTFT = 10
	cands[0].PredictedTTFT = 1.6 // 1.6/1.25 < 1/0.75
	placementScores(cands, scores, true, 0, 0.25)
	require.Equal(t, 1.0, scores[0])
	cands[0].PredictedTTFT = 1.7 // 1.7/1.25 > 1/0.75
	placementScores(cands, scores, true, 0, 0.25)
	require.Equal(t, 1.0, scores[1])
}

// A burst into an empty fleet that it will saturate is spread by plan, in
// proportion to the pods' weights (by address), not evenly: the pods'
// requests then end at different times. Once half the fleet's KV cache is
// in use, picks are weighed equally again.
func TestLatencyStaggersABurstByPlan(t *testing.T) {
	var last *Explanation // the burst's last pick's
	burst := func(cfg Config, snap scrape.Snapshot) []int {
		s := mustNew(cfg)
		eps := endpoints(snap, snap, snap, snap, snap) // addresses in rank order
		count := map[*scrape.Endpoint]int{}
		for i := 0; i < 202; i++ {
			res, err := s.Pick(eps, pickapi.StrategyLatency, &Request{TargetModel: "m", PromptTokens: 1550, MaxTokens: 1800, Explain: true}, t0)
			require.NoError(t, err)
			count[res.Endpoints[0]]++
			last = res.Explanation
		}
		out := make([]int, len(eps))
		for i, ep := range eps {
			out[i] = count[ep]
		}
		return out
	}
	empty := scrape.Snapshot{NumGPUBlocks: 6144, BlockSize: 16}
	got := burst(DefaultConfig(), empty)
	for i := 1; i < len(got); i++ {
		require.GreaterOrEqual(t, got[i], got[i-1], "shares follow the weights: %v", got)
	}
	require.Greater(t, float64(got[4])/float64(got[0]), 1.2, "planned unevenness: %v", got)
	require.LessOrEqual(t, float64(got[4])/float64(got[0]), 1.25/0.75, "bounded by the weights: %v", got)
	require.True(t, last.Staggered, "the explanation says the pick was staggered")
	require.Contains(t, last.Line(pickapi.MaxExplainLen), " staggered ")

	off := DefaultConfig()
	off.Plugins = map[string]json.RawMessage{"predicted_ttft": json.RawMessage(`{"staggerSkew":0}`)}
	for _, n := range burst(off, empty) {
		require.InDelta(t, 202/5, n, 2, "without the stagger the burst spreads evenly")
	}
	filled := empty
	filled.KVCacheUsage = 0.5
	require.Equal(t, burst(off, filled), burst(DefaultConfig(), filled), "a filled fleet: no stagger")
	require.False(t, last.Staggered)
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
