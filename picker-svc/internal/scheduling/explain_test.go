package scheduling

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// An explanation lists the candidates best first, the pick first, with
// every scorer's score; it is in the result only when asked for, and in
// the recent picks when asked for or sampled (one pick in DebugPicksEvery).
func TestExplanation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DebugPicksEvery = 1000
	s := mustNew(cfg)
	eps := endpoints(scrape.Snapshot{Waiting: 3, KVCacheUsage: 0.5}, scrape.Snapshot{KVCacheUsage: 0.1}, scrape.Snapshot{Waiting: 1, KVCacheUsage: 0.9})
	res, err := s.Pick(eps, pickapi.StrategyDefault, &Request{TargetModel: "m", PromptTokens: 10}, t0)
	require.NoError(t, err)
	require.Nil(t, res.Explanation, "not asked")
	res, err = s.Pick(eps, pickapi.StrategyDefault, &Request{TargetModel: "m", PromptTokens: 10, MaxTokens: 5, Explain: true}, t0)
	require.NoError(t, err)
	e := res.Explanation
	require.Equal(t, res.PickID, e.PickID)
	require.Equal(t, pickapi.StrategyDefault, e.Strategy)
	require.Equal(t, 3, e.Eligible)
	require.Equal(t, 2, e.Judged, "the capacity filter drops the pod at KV 0.9")
	require.Len(t, e.Candidates, 2)
	require.Equal(t, res.Endpoints[0], e.Candidates[0].EP)
	require.Equal(t, []string{"queue", "outstanding", "kv_cache", "lora"}, names(e.Scorers))
	for i, c := range e.Candidates {
		require.Len(t, c.Scores, 4)
		total := 0.0
		for j, ws := range e.Scorers {
			total += ws.Weight * c.Scores[j]
		}
		require.InDelta(t, total, c.Total, 1e-9, "the total is the weighted scores")
		if i > 0 {
			require.LessOrEqual(t, c.Total, e.Candidates[i-1].Total)
		}
	}
	line := e.Line(pickapi.MaxExplainLen)
	require.True(t, strings.HasPrefix(line, "DEFAULT "+res.Endpoints[0].Addr+" total="), line)
	require.Contains(t, line, " queue=")
	require.Equal(t, 1, strings.Count(line, "; "), line)
	short := e.Line(60)
	require.LessOrEqual(t, len(short), 60)
	require.NotContains(t, short, ";", "candidates that do not fit are left out, whole")

	recent := s.RecentPicks()
	require.Len(t, recent, 1, "the first pick was neither asked for nor sampled")
	require.Same(t, e, recent[0])
}

func names(ws []WeightedScorer) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Name
	}
	return out
}

// The recent picks are a ring of DebugPicks; 0 keeps none, and a pick that
// asks still gets its explanation. An explanation keeps MaxExplained
// candidates.
func TestRecentPicksBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DebugPicks, cfg.DebugPicksEvery = 3, 2
	s := mustNew(cfg)
	snaps := make([]scrape.Snapshot, MaxExplained+5)
	for i := range snaps {
		snaps[i].Running = float64((i * 7) % len(snaps)) // all different, in no order
	}
	eps := endpoints(snaps...)
	var ids []uint64
	for i := 0; i < 8; i++ {
		res, err := s.Pick(eps, pickapi.StrategyDefault, &Request{TargetModel: "m"}, t0)
		require.NoError(t, err)
		ids = append(ids, res.PickID)
	}
	recent := s.RecentPicks()
	require.Len(t, recent, 3, "every second pick, the last 3 of them")
	require.Equal(t, []uint64{ids[7], ids[5], ids[3]}, []uint64{recent[0].PickID, recent[1].PickID, recent[2].PickID})
	require.Equal(t, len(eps), recent[0].Judged)
	require.Len(t, recent[0].Candidates, MaxExplained)
	for i, c := range recent[0].Candidates[1:] {
		require.LessOrEqual(t, c.Total, recent[0].Candidates[i].Total, "best first")
	}
	least := recent[0].Candidates[MaxExplained-1].Total
	kept := 0
	for _, e := range eps {
		for _, c := range recent[0].Candidates {
			if c.EP == e {
				kept++
			}
		}
	}
	require.Equal(t, MaxExplained, kept, "each candidate once")
	require.Positive(t, least)

	cfg.DebugPicks = 0
	s = mustNew(cfg)
	res, err := s.Pick(eps, pickapi.StrategyDefault, &Request{TargetModel: "m", Explain: true}, t0)
	require.NoError(t, err)
	require.NotNil(t, res.Explanation)
	require.Empty(t, s.RecentPicks())

	cfg.DebugPicks = MaxDebugPicks + 1
	_, err = New(cfg)
	require.ErrorContains(t, err, "debugPicks")
	cfg.DebugPicks, cfg.DebugPicksEvery = 1, 0
	_, err = New(cfg)
	require.ErrorContains(t, err, "debugPicksEvery")
}
