package scheduling

import (
	"testing"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
	"github.com/stretchr/testify/require"
)

func members(snaps ...scrape.Snapshot) []*Member {
	out := make([]*Member, len(snaps))
	for i, s := range snaps {
		out[i] = member(i, s)
	}
	return out
}

func addrs(r Result) []string {
	var out []string
	for _, m := range r.Endpoints {
		out = append(out, m.EP.Addr)
	}
	return out
}

func TestDefaultPicksLeastLoaded(t *testing.T) {
	s := New(DefaultConfig())
	ms := members(
		scrape.Snapshot{Waiting: 4, Running: 10, KVCacheUsage: 0.5},
		scrape.Snapshot{Waiting: 0, Running: 2, KVCacheUsage: 0.1},
		scrape.Snapshot{Waiting: 2, Running: 5, KVCacheUsage: 0.3},
	)
	r, err := s.Pick(ms, pickapi.StrategyDefault, &Request{Criticality: pickapi.Standard}, t0)
	require.NoError(t, err)
	require.Equal(t, Picked, r.Outcome)
	require.Equal(t, []string{ms[1].EP.Addr, ms[2].EP.Addr, ms[0].EP.Addr}, addrs(r), "best first, fallbacks ranked")
}

func TestStaleAndFailingEndpointsAreSkipped(t *testing.T) {
	s := New(DefaultConfig())
	ms := members(
		scrape.Snapshot{Waiting: 0, ScrapedAt: t0.Add(-time.Minute)}, // stale but idle
		scrape.Snapshot{Waiting: 3, ScrapedAt: t0},
	)
	r, err := s.Pick(ms, pickapi.StrategyDefault, &Request{}, t0)
	require.NoError(t, err)
	require.Equal(t, Picked, r.Outcome)
	require.Equal(t, []string{ms[1].EP.Addr}, addrs(r), "the stale one is not even a fallback")

	// Nothing fresh: fall back to all rather than refuse, and say so.
	r, err = s.Pick(ms, pickapi.StrategyDefault, &Request{}, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, FellBack, r.Outcome)
	require.Len(t, r.Endpoints, 2)
	require.Equal(t, ms[0].EP.Addr, r.Endpoints[0].EP.Addr, "still scored: the idle one first")

	// Never scraped at all: nothing to pick.
	never := NewMember(scrape.NewEndpoint("10.9.9.9:1", scrape.Config{}), 1)
	_, err = s.Pick([]*Member{never}, pickapi.StrategyDefault, &Request{}, t0)
	require.ErrorIs(t, err, ErrNoEndpoints)
	_, err = s.Pick(nil, pickapi.StrategyDefault, &Request{}, t0)
	require.ErrorIs(t, err, ErrNoEndpoints)
}

func TestShedding(t *testing.T) {
	cfg := DefaultConfig()
	s := New(cfg)
	busy := scrape.Snapshot{Waiting: 10, KVCacheUsage: 0.5}     // past Sheddable's queue 5
	jammed := scrape.Snapshot{Waiting: 100, KVCacheUsage: 0.99} // past Standard's thresholds too
	calm := scrape.Snapshot{Waiting: 1, KVCacheUsage: 0.2}
	for _, tc := range []struct {
		name  string
		snaps []scrape.Snapshot
		crit  pickapi.Criticality
		want  Outcome
	}{
		{"sheddable served while one pod has room", []scrape.Snapshot{busy, calm}, pickapi.Sheddable, Picked},
		{"sheddable shed when all are busy", []scrape.Snapshot{busy, busy}, pickapi.Sheddable, Shed},
		{"standard served when all are busy", []scrape.Snapshot{busy, busy}, pickapi.Standard, Picked},
		{"standard shed when all are jammed", []scrape.Snapshot{jammed, jammed}, pickapi.Standard, Shed},
		{"critical never shed", []scrape.Snapshot{jammed, jammed}, pickapi.Critical, Picked},
		{"sheddable shed when jammed", []scrape.Snapshot{jammed}, pickapi.Sheddable, Shed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Pick(members(tc.snaps...), pickapi.StrategyDefault, &Request{Criticality: tc.crit}, t0)
			require.NoError(t, err)
			require.Equal(t, tc.want, r.Outcome)
			if tc.want == Shed {
				require.Empty(t, r.Endpoints)
			}
		})
	}
}

func TestCapacityFilterPrefersUnsaturated(t *testing.T) {
	// The saturated pod holds the whole prefix; the other has room. With
	// PREFIX_CACHE weights the prefix would win on score; the capacity
	// filter keeps a saturated pod from being chosen while another has room.
	s := New(DefaultConfig())
	ms := members(scrape.Snapshot{Waiting: 6, KVCacheUsage: 0.1}, scrape.Snapshot{Waiting: 0, KVCacheUsage: 0.1})
	h := chain(1, 16)
	ms[0].Prefix.Add(h)
	r, err := s.Pick(ms, pickapi.StrategyPrefixCache, &Request{Criticality: pickapi.Critical, PrefixHashes: h}, t0)
	require.NoError(t, err)
	require.Equal(t, ms[1].EP.Addr, r.Endpoints[0].EP.Addr)
	require.Len(t, r.Endpoints, 1, "the filtered-out pod is not a fallback")
}

func TestPrefixCacheAffinityAndLoad(t *testing.T) {
	s := New(DefaultConfig())
	same := scrape.Snapshot{Waiting: 1, Running: 4, KVCacheUsage: 0.3}
	ms := members(same, same, same, same)
	h := chain(42, 32)
	req := &Request{Criticality: pickapi.Standard, PrefixHashes: h}
	first, err := s.Pick(ms, pickapi.StrategyPrefixCache, req, t0)
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		r, err := s.Pick(ms, pickapi.StrategyPrefixCache, req, t0)
		require.NoError(t, err)
		require.Equal(t, first.Endpoints[0], r.Endpoints[0], "same prefix, same pod while loads are equal")
	}
	// DEFAULT ignores the index entirely.
	seen := map[*Member]bool{}
	for i := 0; i < 200; i++ {
		r, _ := s.Pick(ms, pickapi.StrategyDefault, req, t0)
		seen[r.Endpoints[0]] = true
	}
	require.Len(t, seen, 4, "DEFAULT spreads equal pods at random")

	// The prefix holder melts (long queue, full KV): load outweighs the
	// prefix (3 for prefix < 2 queue + 2 KV + 1 running lost).
	hot := first.Endpoints[0]
	hot.EP.Store(&scrape.Snapshot{Waiting: 5, Running: 30, KVCacheUsage: 0.79, ScrapedAt: t0})
	r, err := s.Pick(ms, pickapi.StrategyPrefixCache, req, t0)
	require.NoError(t, err)
	require.NotEqual(t, hot, r.Endpoints[0])
}

func TestLoRAAffinityInScheduler(t *testing.T) {
	s := New(DefaultConfig())
	ms := members(
		scrape.Snapshot{BaseModel: "base", MaxLoRA: 1, RunningAdapters: []string{"other"}},
		scrape.Snapshot{BaseModel: "base", MaxLoRA: 1, RunningAdapters: []string{"sql"}},
	)
	for i := 0; i < 20; i++ {
		r, err := s.Pick(ms, pickapi.StrategyDefault, &Request{TargetModel: "sql"}, t0)
		require.NoError(t, err)
		require.Equal(t, ms[1], r.Endpoints[0])
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.Validate())
	c.Weights[pickapi.StrategyDefault]["nope"] = 1
	require.ErrorContains(t, c.Validate(), `unknown scorer "nope"`)
	c = DefaultConfig()
	c.Weights["FASTEST"] = Weights{}
	require.ErrorContains(t, c.Validate(), `unknown strategy "FASTEST"`)
	c = DefaultConfig()
	c.Weights[pickapi.StrategyDefault]["queue"] = -1
	require.ErrorContains(t, c.Validate(), "queue: -1")
	c = DefaultConfig()
	c.Fallbacks = 9
	require.Error(t, c.Validate())
}

func TestChooseTargetHonoursWeights(t *testing.T) {
	targets := []inference.Target{{Name: "stable", Weight: 90}, {Name: "canary", Weight: 10}}
	const n = 10000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		counts[ChooseTarget(targets)]++
	}
	// +-2 percentage points of the configured split (binomial sd is 0.3 points).
	require.InDelta(t, 0.90, float64(counts["stable"])/n, 0.02)
	require.InDelta(t, 0.10, float64(counts["canary"])/n, 0.02)

	ten := make([]inference.Target, 10)
	for i := range ten {
		ten[i] = inference.Target{Name: string(rune('a' + i)), Weight: 10}
	}
	counts = map[string]int{}
	for i := 0; i < n; i++ {
		counts[ChooseTarget(ten)]++
	}
	for _, tg := range ten {
		require.InDelta(t, 0.10, float64(counts[tg.Name])/n, 0.02, tg.Name)
	}
	require.Equal(t, "x", ChooseTarget([]inference.Target{{Name: "x", Weight: 0}, {Name: "y", Weight: 0}}), "degenerate weights: first")
	for i := 0; i < 100; i++ {
		require.Equal(t, "y", ChooseTarget([]inference.Target{{Name: "x", Weight: 0}, {Name: "y", Weight: 5}}), "zero weight never chosen")
	}
	require.Equal(t, "", ChooseTarget(nil))
}
