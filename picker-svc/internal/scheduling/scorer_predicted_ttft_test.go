package scheduling

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// A pod of 1,000 blocks of 16 tokens.
func kvPod(s scrape.Snapshot) scrape.Snapshot {
	s.NumGPUBlocks, s.BlockSize = 1000, 16
	return s
}

// follow makes sc follow picks on ep, as PostPick would have.
func follow(sc *PredictedTTFTScorer, ep *scrape.Endpoint, picks ...*openPick) {
	p := sc.pod(ep)
	p.mu.Lock()
	for _, r := range picks {
		p.add(r, sc.forget)
	}
	p.mu.Unlock()
	sc.mu.Lock()
	for _, r := range picks {
		sc.byID[r.id] = p
	}
	sc.mu.Unlock()
}

// Which pod each case's request goes to, and its prediction, through the
// LATENCY profile.
func TestPredictedTTFTPicks(t *testing.T) {
	req := func() *Request {
		return &Request{TargetModel: "m", Criticality: pickapi.Standard, PromptTokens: 1000, MaxTokens: 500}
	}
	for _, tc := range []struct {
		name string
		pods []scrape.Snapshot
		// before: picks made earlier (each to the pod chosen then).
		before int
		want   int
	}{
		{name: "free KV cache beats a full one", pods: []scrape.Snapshot{
			kvPod(scrape.Snapshot{Running: 20, KVCacheUsage: 0.99}),
			kvPod(scrape.Snapshot{Running: 20, KVCacheUsage: 0.60}),
		}, want: 1},
		{name: "a short queue beats a long one", pods: []scrape.Snapshot{
			kvPod(scrape.Snapshot{Waiting: 6, Running: 4, KVCacheUsage: 0.2}),
			kvPod(scrape.Snapshot{Waiting: 1, Running: 4, KVCacheUsage: 0.2}),
		}, want: 1},
		{name: "without the cache size, the queue decides", pods: []scrape.Snapshot{
			{Waiting: 2, Running: 4, KVCacheUsage: 0.1},
			{Waiting: 0, Running: 4, KVCacheUsage: 0.99},
		}, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(DefaultConfig())
			eps := endpoints(tc.pods...)
			r := req()
			r.Explain = true
			res, err := s.Pick(eps, pickapi.StrategyLatency, r, t0.Add(10*time.Millisecond))
			require.NoError(t, err)
			require.Equal(t, eps[tc.want], res.Endpoints[0])
			e := res.Explanation
			require.NotNil(t, e)
			require.Equal(t, eps[tc.want], e.Candidates[0].EP)
			require.Positive(t, e.Candidates[0].PredictedTTFT)
			require.Less(t, e.Candidates[0].PredictedTTFT+e.Candidates[0].PredictedRecompute,
				e.Candidates[1].PredictedTTFT+e.Candidates[1].PredictedRecompute)
		})
	}
}

// Both pods are full; the one whose requests (this picker's) are about to
// end makes room first: the trajectory, not the fill, decides.
func TestPredictedTTFTFindsTheRoomToCome(t *testing.T) {
	s := mustNew(DefaultConfig())
	sc := s.Plugin("predicted_ttft").(*PredictedTTFTScorer)
	eps := endpoints(kvPod(scrape.Snapshot{Running: 4, KVCacheUsage: 1, Steps: 1000, HasSteps: true, FirstTokens: 4, HasFirstTokens: true}),
		kvPod(scrape.Snapshot{Running: 4, KVCacheUsage: 1, Steps: 1000, HasSteps: true, FirstTokens: 4, HasFirstTokens: true}))
	// Four requests on each, all started; pod 0's have 3,900 tokens of
	// output to go, pod 1's 100.
	for i, out := range []int{4000, 200} {
		for j := 0; j < 4; j++ {
			follow(sc, eps[i], &openPick{id: uint64(100*i + j + 1), at: t0, prompt: 3000, work: 3000, out: out, first: 900})
		}
	}
	r := &Request{TargetModel: "m", PromptTokens: 1000, MaxTokens: 100, Explain: true}
	res, err := s.Pick(eps, pickapi.StrategyLatency, r, t0.Add(10*time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, eps[1], res.Endpoints[0])
	ex := res.Explanation.Candidates
	require.Less(t, ex[0].PredictedTTFT*10, ex[1].PredictedTTFT, "about 100 steps against 3,900")
}

// A burst between two scrapes spreads: each pick is queued on its pod at
// once (in_flight), so the next one sees it.
func TestPredictedTTFTBurstDoesNotHerd(t *testing.T) {
	s := mustNew(DefaultConfig())
	eps := endpoints(kvPod(scrape.Snapshot{}), kvPod(scrape.Snapshot{}), kvPod(scrape.Snapshot{}), kvPod(scrape.Snapshot{}))
	count := map[*scrape.Endpoint]int{}
	for i := 0; i < 40; i++ {
		res, err := s.Pick(eps, pickapi.StrategyLatency, &Request{TargetModel: "m", PromptTokens: 1500, MaxTokens: 1800}, t0.Add(time.Millisecond))
		require.NoError(t, err)
		count[res.Endpoints[0]]++
	}
	for _, ep := range eps {
		require.InDelta(t, 10, count[ep], 1, "40 picks over 4 empty pods: %v", count)
	}
}

// A reported end frees its KV in the forecast before any scrape shows it.
func TestPredictedTTFTEndsFreeRoom(t *testing.T) {
	s := mustNew(DefaultConfig())
	sc := s.Plugin("predicted_ttft").(*PredictedTTFTScorer)
	ep := endpoint(0, kvPod(scrape.Snapshot{Running: 1, KVCacheUsage: 1, FirstTokens: 1, HasFirstTokens: true, Steps: 1000, HasSteps: true}))
	follow(sc, ep, &openPick{id: 7, at: t0, prompt: 15000, work: 15000, out: 10000, first: 1000})
	predict := func() float64 {
		c := []Candidate{{EP: ep, S: ep.Snapshot()}}
		s.Plugin("in_flight").(*InFlightTracker).Prepare(&Request{}, c, t0)
		sc.Prepare(&Request{TargetModel: "m", PromptTokens: 1000, MaxTokens: 10}, c, t0)
		return c[0].PredictedTTFT
	}
	full := predict()
	sc.RequestsDone([]RequestEnd{{ID: 7, CompletionTokens: 1000}}, t0)
	require.InDelta(t, 10000*0.03, full, 1, "the room comes when it ends, in 10,000 steps")
	require.InDelta(t, 0.13, predict(), 0.01, "16,000 tokens freed: its own prefill")
	require.Empty(t, sc.byID)
	sc.RequestsDone([]RequestEnd{{ID: 7, CompletionTokens: 1000}}, t0) // twice: nothing more
}

// A pick the pod preempted makes no progress while it waits to be
// readmitted: its end moves out by the steps it waited, so the room it
// will free comes that much later.
func TestPredictedTTFTPreemptedPicksEndLater(t *testing.T) {
	var p podTrajectories
	est := podEstimates{decodeStep: 0.03, prefillToken: 1e-4, chunk: 2048}
	snap := kvPod(scrape.Snapshot{Running: 1, Waiting: 1, KVCacheUsage: 0.9, Steps: 100, HasSteps: true, ScrapedAt: t0, RequestedAt: t0})
	p.observe(&snap, &prefillCost{})
	older := &openPick{id: 1, prompt: 1000, out: 500, first: 0, finish: 500}
	newer := &openPick{id: 2, prompt: 1000, out: 500, first: 50, finish: 550} // vLLM preempts the newest
	p.running = []*openPick{older, newer}
	c := &Candidate{S: &snap}
	forget := func(uint64) {}

	f := p.forecast(c, t0, est, 100, 10, 256, forget)
	require.Equal(t, []trajectory{{left: 400, held: 1100}}, f.running, "the running pick at step 100; the preempted one waits")
	require.Equal(t, 550.0, newer.finish, "the first look moves nothing")

	f = p.forecast(c, t0.Add(3*time.Second), est, 100, 10, 256, forget) // 100 steps on
	require.Equal(t, 650.0, newer.finish, "100 steps waiting: 100 steps later")
	require.Equal(t, 150.0, newer.first)
	require.Equal(t, 500.0, older.finish)
	require.Equal(t, []trajectory{{left: 300, held: 1200}}, f.running)
	require.Equal(t, 1000.0+50, f.queued, "it waits with its prompt and the 50 tokens it generated")
}

// Picks whose ends nobody reports are let go once the pod shows fewer
// requests than the picker holds open.
func TestPredictedTTFTReconcilesUnreportedEnds(t *testing.T) {
	s := mustNew(DefaultConfig())
	sc := s.Plugin("predicted_ttft").(*PredictedTTFTScorer)
	ep := endpoint(0, kvPod(scrape.Snapshot{}))
	for i := 0; i < 10; i++ {
		_, err := s.Pick([]*scrape.Endpoint{ep}, pickapi.StrategyLatency, &Request{TargetModel: "m", PromptTokens: 100}, t0)
		require.NoError(t, err)
	}
	ep.Store(&scrape.Snapshot{Running: 3, NumGPUBlocks: 1000, BlockSize: 16, ScrapedAt: t0.Add(time.Second), RequestedAt: t0.Add(time.Second)})
	_, err := s.Pick([]*scrape.Endpoint{ep}, pickapi.StrategyLatency, &Request{TargetModel: "m", PromptTokens: 100}, t0.Add(time.Second))
	require.NoError(t, err)
	p := sc.pod(ep)
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Equal(t, 3+reconcileSlack+1, len(p.pending)+len(p.running), "what the pod shows, the slack, and the new pick")
	require.Len(t, sc.byID, 3+reconcileSlack+1)
}

// Scores are least/predicted: the best 1, one twice as costly 0.5.
func TestPredictedTTFTScores(t *testing.T) {
	c := cands(scrape.Snapshot{}, scrape.Snapshot{}, scrape.Snapshot{})
	c[0].PredictedTTFT, c[1].PredictedTTFT, c[1].PredictedRecompute, c[2].PredictedTTFT = 0.2, 0.3, 0.1, 1
	require.Equal(t, []float64{1, 0.5, 0.2}, score(NewPredictedTTFTScorer(), &Request{}, c))
}

func TestPredictedTTFTParams(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Plugins = map[string]json.RawMessage{"predicted_ttft": json.RawMessage(`{"decodeStepMs":20,"prefillTokenUs":50,"defaultOutputTokens":100,"maxBatchedTokens":8192,` +
		`"saturatedDemand":0,"balanceWithin":0.1,"staggerWithin":0.2,"staggerSkew":0.3,"staggerBelowUse":0.6}`)}
	s, err := New(cfg)
	require.NoError(t, err)
	require.Equal(t, predictedTTFTParams{DecodeStepMs: 20, PrefillTokenUs: 50, DefaultOutputTokens: 100, MaxBatchedTokens: 8192, BalanceWithin: 0.1, StaggerWithin: 0.2,
		StaggerSkew: 0.3, StaggerBelowUse: 0.6},
		s.Plugin("predicted_ttft").(*PredictedTTFTScorer).params)
	for _, bad := range []string{`{"decodeStepMs":0}`, `{"prefillTokenUs":-1}`, `{"defaultOutputTokens":0}`, `{"maxBatchedTokens":0}`, `{"lookahead":1}`,
		`{"saturatedDemand":-1}`, `{"balanceWithin":1.5}`, `{"staggerWithin":-0.1}`, `{"staggerSkew":0.95}`, `{"staggerBelowUse":2}`} {
		cfg.Plugins["predicted_ttft"] = json.RawMessage(bad)
		_, err := New(cfg)
		require.Error(t, err, bad)
	}
	// It reads in_flight's data: a profile without it is refused.
	cfg = DefaultConfig()
	cfg.Profiles[pickapi.StrategyLatency] = ProfileSpec{Scorers: []WeightedScorer{{"predicted_ttft", 1}}}
	_, err = New(cfg)
	require.ErrorContains(t, err, "list it under prepare")
	cfg.Profiles[pickapi.StrategyLatency] = ProfileSpec{Prepare: []string{"predicted_ttft", "in_flight"}, Scorers: []WeightedScorer{{"predicted_ttft", 1}}}
	_, err = New(cfg)
	require.ErrorContains(t, err, `prepare: "predicted_ttft" reads what "in_flight" writes: list "in_flight" before it`)
}
