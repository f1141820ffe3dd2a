package scheduling

import (
	"encoding/json"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

func addrs(r Result) []string {
	var out []string
	for _, ep := range r.Endpoints {
		out = append(out, ep.Addr)
	}
	return out
}

func TestDefaultPicksLeastLoaded(t *testing.T) {
	s := mustNew(DefaultConfig())
	eps := endpoints(
		scrape.Snapshot{Waiting: 4, Running: 10, KVCacheUsage: 0.5},
		scrape.Snapshot{Waiting: 0, Running: 2, KVCacheUsage: 0.1},
		scrape.Snapshot{Waiting: 2, Running: 5, KVCacheUsage: 0.3},
	)
	r, err := s.Pick(eps, pickapi.StrategyDefault, &Request{Criticality: pickapi.Standard}, t0)
	require.NoError(t, err)
	require.Equal(t, Picked, r.Outcome)
	require.Equal(t, []string{eps[1].Addr, eps[2].Addr, eps[0].Addr}, addrs(r), "best first, fallbacks ranked")
}

func TestStaleAndFailingEndpointsAreSkipped(t *testing.T) {
	s := mustNew(DefaultConfig())
	eps := endpoints(
		scrape.Snapshot{Waiting: 0, ScrapedAt: t0.Add(-time.Minute)}, // stale but idle
		scrape.Snapshot{Waiting: 3, ScrapedAt: t0},
	)
	r, err := s.Pick(eps, pickapi.StrategyDefault, &Request{}, t0)
	require.NoError(t, err)
	require.Equal(t, Picked, r.Outcome)
	require.Equal(t, []string{eps[1].Addr}, addrs(r), "the stale one is not even a fallback")

	// Nothing fresh: pick among the stale rather than refuse, and say so.
	r, err = s.Pick(eps, pickapi.StrategyDefault, &Request{}, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, Stale, r.Outcome)
	require.Len(t, r.Endpoints, 2)

	// Never scraped at all: nothing to pick.
	never := scrape.NewEndpoint("10.9.9.9:1", scrape.Config{})
	_, err = s.Pick([]*scrape.Endpoint{never}, pickapi.StrategyDefault, &Request{}, t0)
	require.ErrorIs(t, err, ErrNoEndpoints)
	_, err = s.Pick(nil, pickapi.StrategyDefault, &Request{}, t0)
	require.ErrorIs(t, err, ErrNoEndpoints)
}

func TestShedding(t *testing.T) {
	s := mustNew(DefaultConfig())
	busy := scrape.Snapshot{Waiting: 10, KVCacheUsage: 0.5}        // past Sheddable's queue 5
	kvFull := scrape.Snapshot{Waiting: 40, KVCacheUsage: 1}        // a KV-bound fleet: busy, not overloaded
	overloaded := scrape.Snapshot{Waiting: 300, KVCacheUsage: 0.9} // past Standard's queue 256
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
		{"standard served when every KV cache is full", []scrape.Snapshot{kvFull, kvFull}, pickapi.Standard, Picked},
		{"standard served while one pod is not overloaded", []scrape.Snapshot{overloaded, kvFull}, pickapi.Standard, Picked},
		{"standard shed at a real overload", []scrape.Snapshot{overloaded, overloaded}, pickapi.Standard, Shed},
		{"critical never shed", []scrape.Snapshot{overloaded, overloaded}, pickapi.Critical, Picked},
		{"sheddable shed when KV is full", []scrape.Snapshot{kvFull}, pickapi.Sheddable, Shed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Pick(endpoints(tc.snaps...), pickapi.StrategyDefault, &Request{Criticality: tc.crit}, t0)
			require.NoError(t, err)
			require.Equal(t, tc.want, r.Outcome)
			if tc.want == Shed {
				require.Empty(t, r.Endpoints)
			}
		})
	}
}

func TestPriorityShedsLikeCriticality(t *testing.T) {
	for _, tc := range []struct {
		p    int32
		want pickapi.Criticality
	}{
		{math.MinInt32, pickapi.Sheddable}, {-100, pickapi.Sheddable}, {-1, pickapi.Sheddable},
		{0, pickapi.Standard},
		{1, pickapi.Critical}, {math.MaxInt32, pickapi.Critical},
	} {
		require.Equal(t, tc.want, inference.PriorityCriticality(tc.p), "priority %d", tc.p)
	}
	// And the classes shed in that order: with every pod busy (past
	// Sheddable's threshold, not Standard's) only the negative priority is
	// refused; at a real overload 0 is too, a positive one never.
	s := mustNew(DefaultConfig())
	busy := endpoints(scrape.Snapshot{Waiting: 10}, scrape.Snapshot{Waiting: 10})
	overloaded := endpoints(scrape.Snapshot{Waiting: 300}, scrape.Snapshot{Waiting: 300})
	for _, tc := range []struct {
		eps  []*scrape.Endpoint
		p    int32
		want Outcome
	}{
		{busy, -1, Shed}, {busy, 0, Picked}, {busy, 1, Picked},
		{overloaded, -1, Shed}, {overloaded, 0, Shed}, {overloaded, 1, Picked},
	} {
		r, err := s.Pick(tc.eps, pickapi.StrategyDefault, &Request{Criticality: inference.PriorityCriticality(tc.p)}, t0)
		require.NoError(t, err)
		require.Equal(t, tc.want, r.Outcome, "priority %d", tc.p)
	}
}

func TestCapacityFilterPrefersUnsaturated(t *testing.T) {
	// The saturated pod holds the whole prefix; the other has room. With
	// PREFIX_CACHE weights the prefix would win on score; the capacity
	// filter keeps a saturated pod from being chosen while another has room.
	s := mustNew(DefaultConfig())
	eps := endpoints(scrape.Snapshot{Waiting: 6, KVCacheUsage: 0.1}, scrape.Snapshot{Waiting: 0, KVCacheUsage: 0.1})
	h := chain(1, 16)
	prefixOf(s).PostPick(&Request{PrefixHashes: h}, &Candidate{EP: eps[0]}, t0)
	r, err := s.Pick(eps, pickapi.StrategyPrefixCache, &Request{Criticality: pickapi.Critical, PrefixHashes: h}, t0)
	require.NoError(t, err)
	require.Equal(t, eps[1].Addr, r.Endpoints[0].Addr)
	require.Len(t, r.Endpoints, 1, "the filtered-out pod is not a fallback")
}

func TestPrefixCacheAffinityAndLoad(t *testing.T) {
	s := mustNew(DefaultConfig())
	same := scrape.Snapshot{Waiting: 1, Running: 4, KVCacheUsage: 0.3}
	eps := endpoints(same, same, same, same)
	h := chain(42, 32)
	req := &Request{Criticality: pickapi.Standard, PrefixHashes: h}
	first, err := s.Pick(eps, pickapi.StrategyPrefixCache, req, t0)
	require.NoError(t, err)
	hot := first.Endpoints[0]
	// Each pick counts against its pod until a later scrape shows it; move
	// the clock past a fresh scrape of every pod between picks so that the
	// loads stay equal and only the prefix decides.
	now := t0
	for i := 0; i < 20; i++ {
		now = now.Add(time.Second)
		for _, ep := range eps {
			ep.Store(&scrape.Snapshot{Waiting: 1, Running: 4, KVCacheUsage: 0.3, ScrapedAt: now, RequestedAt: now})
		}
		r, err := s.Pick(eps, pickapi.StrategyPrefixCache, req, now)
		require.NoError(t, err)
		require.Equal(t, hot, r.Endpoints[0], "same prefix, same pod while loads are equal")
	}
	// DEFAULT ignores the index entirely.
	seen := map[*scrape.Endpoint]bool{}
	for i := 0; i < 200; i++ {
		r, _ := s.Pick(eps, pickapi.StrategyDefault, req, now)
		seen[r.Endpoints[0]] = true
	}
	require.Len(t, seen, 4, "DEFAULT spreads equal pods")

	// Busy but under the capacity filter's limits (queue 5, KV 0.79), the
	// prefix holder keeps the prefix: recomputing 32 blocks elsewhere costs
	// more than a short queue (prefix 5 against queue 1 + KV 1 + an equal
	// prefill score). One more waiting request and the filter moves it.
	now = now.Add(time.Second)
	for _, ep := range eps {
		ep.Store(&scrape.Snapshot{Waiting: 0, Running: 4, KVCacheUsage: 0.1, ScrapedAt: now, RequestedAt: now})
	}
	hot.Store(&scrape.Snapshot{Waiting: 5, Running: 30, KVCacheUsage: 0.79, ScrapedAt: now, RequestedAt: now})
	r, err := s.Pick(eps, pickapi.StrategyPrefixCache, req, now)
	require.NoError(t, err)
	require.Equal(t, hot, r.Endpoints[0])
	now = now.Add(time.Second)
	for _, ep := range eps {
		ep.Store(&scrape.Snapshot{Waiting: 0, Running: 4, KVCacheUsage: 0.1, ScrapedAt: now, RequestedAt: now})
	}
	hot.Store(&scrape.Snapshot{Waiting: 6, Running: 30, KVCacheUsage: 0.79, ScrapedAt: now, RequestedAt: now})
	r, err = s.Pick(eps, pickapi.StrategyPrefixCache, req, now)
	require.NoError(t, err)
	require.NotEqual(t, hot, r.Endpoints[0], "past the capacity filter's queue limit the prefix no longer holds it")
}

func TestLoRAAffinityInScheduler(t *testing.T) {
	s := mustNew(DefaultConfig())
	eps := endpoints(
		scrape.Snapshot{BaseModel: "base", MaxLoRA: 1, RunningAdapters: []string{"other"}},
		scrape.Snapshot{BaseModel: "base", MaxLoRA: 1, RunningAdapters: []string{"sql"}},
	)
	for i := 0; i < 20; i++ {
		// Each pick is a scrape apart: in-flight picks do not pile up.
		now := t0.Add(time.Duration(i) * time.Second)
		for j, ep := range eps {
			s := *ep.Snapshot()
			s.ScrapedAt, s.RequestedAt = now, now
			eps[j].Store(&s)
		}
		r, err := s.Pick(eps, pickapi.StrategyDefault, &Request{TargetModel: "sql"}, now)
		require.NoError(t, err)
		require.Equal(t, eps[1], r.Endpoints[0])
	}
}

// Between two scrapes every pick sees the same snapshots. Without in-flight
// accounting a burst herds onto the pod that looked best; with it, the
// burst spreads as each pick makes its pod look busier.
func TestBurstBetweenScrapesDoesNotHerd(t *testing.T) {
	idle := scrape.Snapshot{Waiting: 0, Running: 10, KVCacheUsage: 0.30, NumGPUBlocks: 1000, BlockSize: 16}
	better := idle
	better.KVCacheUsage = 0.10 // looked best at the last scrape
	for _, tc := range []struct {
		name    string
		prepare []string
		maxOne  int // most picks one pod may take of 100
	}{
		{"with in_flight", []string{"in_flight"}, 25},
		{"without (control)", nil, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			p := cfg.Profiles[pickapi.StrategyDefault]
			p.Prepare = tc.prepare
			cfg.Profiles[pickapi.StrategyDefault] = p
			s := mustNew(cfg)
			eps := endpoints(better, idle, idle, idle, idle)
			counts := map[*scrape.Endpoint]int{}
			for i := 0; i < 100; i++ {
				r, err := s.Pick(eps, pickapi.StrategyDefault, &Request{PromptTokens: 1500}, t0.Add(time.Millisecond))
				require.NoError(t, err)
				counts[r.Endpoints[0]]++
			}
			most := 0
			for _, n := range counts {
				most = max(most, n)
			}
			require.LessOrEqual(t, most, tc.maxOne, "picks per pod %v", counts)
			if tc.prepare == nil {
				require.Equal(t, 100, counts[eps[0]], "the control herds: it is what the tracker prevents")
			}
		})
	}
}

func TestInFlightPicksCountUntilAScrapeShowsThem(t *testing.T) {
	tr := NewInFlightTracker(50 * time.Millisecond)
	ep := endpoint(0, scrape.Snapshot{NumGPUBlocks: 100, BlockSize: 16})
	look := func(requested time.Time) InFlight {
		ep.Store(&scrape.Snapshot{RequestedAt: requested, ScrapedAt: requested.Add(time.Millisecond)})
		c := []Candidate{{EP: ep, S: ep.Snapshot()}}
		tr.Prepare(&Request{}, c, requested)
		f := c[0].InFlight
		require.Equal(t, f.Requests, f.BeforeFirstToken, "no TTFT count exported: waiting (0) + unscraped")
		if f.Requests <= maxPrefillHistory {
			require.Equal(t, f.PromptTokens, f.BacklogTokens, "the newest picks' prompts")
		}
		f.BeforeFirstToken, f.BacklogTokens = 0, 0
		return f
	}
	tr.PostPick(&Request{PromptTokens: 100}, &Candidate{EP: ep}, t0)
	tr.PostPick(&Request{PromptTokens: 200}, &Candidate{EP: ep}, t0.Add(30*time.Millisecond))
	require.Equal(t, InFlight{Requests: 2, PromptTokens: 300}, look(t0), "a scrape sent at the pick shows neither")
	require.Equal(t, InFlight{Requests: 2, PromptTokens: 300}, look(t0.Add(49*time.Millisecond)), "within the grace, still counted")
	require.Equal(t, InFlight{Requests: 1, PromptTokens: 200}, look(t0.Add(50*time.Millisecond)), "the first is in the pod's numbers now")
	require.Equal(t, InFlight{}, look(t0.Add(time.Second)))

	tr.PostPick(&Request{}, &Candidate{EP: ep}, t0.Add(2*time.Second))
	tr.EndpointsRemoved([]*scrape.Endpoint{ep})
	require.Equal(t, InFlight{}, look(t0), "a removed endpoint's picks are forgotten")
	require.Nil(t, tr.pod(ep, false))

	// Bounded whatever the scrapes do.
	for i := 0; i < maxRecentPicks+10; i++ {
		tr.PostPick(&Request{PromptTokens: 1}, &Candidate{EP: ep}, t0.Add(time.Hour))
	}
	require.Equal(t, maxRecentPicks, look(t0).Requests)
}

// A pick reported done stops counting before any scrape shows it; ids the
// tracker does not hold change nothing.
func TestInFlightRequestsDone(t *testing.T) {
	tr := NewInFlightTracker(50 * time.Millisecond)
	ep := endpoint(0, scrape.Snapshot{Waiting: 1, FirstTokens: 10, HasFirstTokens: true})
	look := func() InFlight {
		c := []Candidate{{EP: ep, S: ep.Snapshot()}}
		tr.Prepare(&Request{}, c, t0)
		return c[0].InFlight
	}
	for id := uint64(1); id <= 3; id++ {
		tr.PostPick(&Request{PromptTokens: 100 * int(id), PickID: id}, &Candidate{EP: ep}, t0.Add(time.Millisecond))
	}
	require.Equal(t, InFlight{Requests: 3, PromptTokens: 600, BeforeFirstToken: 3, BacklogTokens: 600}, look())
	tr.RequestsDone(ends(2, 99, 2), t0)
	require.Equal(t, InFlight{Requests: 2, PromptTokens: 400, BeforeFirstToken: 2, BacklogTokens: 500}, look(),
		"the second is gone; an unknown id and a repeat change nothing")
	tr.RequestsDone(ends(1, 3), t0)
	require.Equal(t, InFlight{}, look(), "all ended: nothing before its first token either, whatever the TTFT count says")
	require.Empty(t, tr.byID)

	// Ids leave the index with their picks: scraped, evicted, or their
	// endpoint removed.
	tr.PostPick(&Request{PickID: 7}, &Candidate{EP: ep}, t0.Add(time.Millisecond))
	ep.Store(&scrape.Snapshot{RequestedAt: t0.Add(time.Second), ScrapedAt: t0.Add(time.Second)})
	look()
	require.Empty(t, tr.byID, "a scrape covers pick 7")
	tr.PostPick(&Request{PickID: 8}, &Candidate{EP: ep}, t0.Add(time.Hour))
	tr.EndpointsRemoved([]*scrape.Endpoint{ep})
	require.Empty(t, tr.byID)
	for i := 0; i < maxRecentPicks+10; i++ {
		tr.PostPick(&Request{PickID: uint64(100 + i)}, &Candidate{EP: ep}, t0.Add(time.Hour))
	}
	require.Len(t, tr.byID, maxRecentPicks)
}

// The failure CI found (e2e TestQueueAndKVCacheAvoided on a loaded
// machine): short requests, each over before the next is picked, went to
// the free pod until its next scrape; as all counted in flight, the pod
// with a real queue of 8 looked better. With each end reported on the next
// pick, the free pod keeps every request however late its scrape is.
func TestShortRequestsReportedDoneStayOnTheFreePod(t *testing.T) {
	for _, report := range []bool{true, false} {
		s := mustNew(DefaultConfig())
		eps := endpoints(
			scrape.Snapshot{Waiting: 8, Running: 2, KVCacheUsage: 0.02, FirstTokens: 50, HasFirstTokens: true},
			scrape.Snapshot{Running: 3, KVCacheUsage: 0.86, FirstTokens: 50, HasFirstTokens: true},
			scrape.Snapshot{FirstTokens: 50, HasFirstTokens: true},
		)
		free := 0
		var done []RequestEnd
		for i := 0; i < 30; i++ {
			// 10 ms a request, and no scrape for the whole run.
			s.RequestsDone(done, t0.Add(time.Duration(i)*10*time.Millisecond))
			r, err := s.Pick(eps, pickapi.StrategyDefault, &Request{PromptTokens: 4}, t0.Add(time.Duration(i)*10*time.Millisecond))
			require.NoError(t, err)
			require.NotZero(t, r.PickID)
			if r.Endpoints[0] == eps[2] {
				free++
			}
			if report {
				done = ends(r.PickID)
			}
		}
		if report {
			require.Equal(t, 30, free)
		} else {
			require.Less(t, free, 30, "the control: unreported ends pile up on the free pod")
		}
	}
}

// A request being prefilled is running, not waiting, in vLLM's numbers;
// the pod's TTFT count tells when its prefill is done.
func TestPicksCountUntilTheirFirstToken(t *testing.T) {
	tr := NewInFlightTracker(50 * time.Millisecond)
	ep := endpoint(0, scrape.Snapshot{FirstTokens: 100, HasFirstTokens: true}) // history before this picker
	at := t0
	look := func(waiting, firstTokens float64) InFlight {
		at = at.Add(time.Second) // every pick is in the scrape by now
		ep.Store(&scrape.Snapshot{Waiting: waiting, FirstTokens: firstTokens, HasFirstTokens: true, RequestedAt: at, ScrapedAt: at})
		c := []Candidate{{EP: ep, S: ep.Snapshot()}}
		tr.Prepare(&Request{}, c, at)
		return c[0].InFlight
	}
	for i := 0; i < 3; i++ {
		tr.PostPick(&Request{}, &Candidate{EP: ep}, t0)
	}
	require.Equal(t, 3, look(1, 100).BeforeFirstToken, "one waiting, two being prefilled (running)")
	require.Equal(t, 1, look(0, 102).BeforeFirstToken, "two have their first token")
	require.Equal(t, 0, look(0, 103).BeforeFirstToken)
	require.Equal(t, 0, look(0, 110).BeforeFirstToken, "other gateways' traffic moves the base, never below zero")
	tr.PostPick(&Request{}, &Candidate{EP: ep}, at)
	require.Equal(t, 1, look(0, 110).BeforeFirstToken, "the base moved: the new pick counts from there")
	require.Equal(t, 0, look(0, 111).BeforeFirstToken)

	// A pick that never reached the pod counts at most maxPrefilling more
	// than the pod shows waiting.
	for i := 0; i < 20; i++ {
		tr.PostPick(&Request{}, &Candidate{EP: ep}, at)
	}
	require.Equal(t, 2+maxPrefilling, look(2, 111).BeforeFirstToken)
	require.Equal(t, maxPrefilling, look(0, 111).BeforeFirstToken)

	// A restarted pod (its counter went back) lost what it held; picks
	// after the restart count from its new count.
	require.Equal(t, 0, look(0, 3).BeforeFirstToken)
	tr.PostPick(&Request{}, &Candidate{EP: ep}, at)
	require.Equal(t, 1, look(1, 3).BeforeFirstToken)
	require.Equal(t, 0, look(0, 4).BeforeFirstToken)
}

func TestProjectedKV(t *testing.T) {
	c := Candidate{S: &scrape.Snapshot{KVCacheUsage: 0.5, NumGPUBlocks: 100, BlockSize: 16}, InFlight: InFlight{Requests: 2, PromptTokens: 400}}
	require.InDelta(t, 0.75, ProjectedKV(&c), 1e-9, "400 of 1600 tokens more")
	c.S = &scrape.Snapshot{KVCacheUsage: 0.5}
	require.InDelta(t, 0.5, ProjectedKV(&c), 1e-9, "no cache size exported: the scraped usage")
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.Validate())
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"unknown scorer", func(c *Config) {
			c.Profiles[pickapi.StrategyDefault] = c.Profiles[pickapi.StrategyDefault].WithWeight("nope", 1)
		}, `unknown plugin "nope"`},
		{"unknown strategy", func(c *Config) { c.Profiles["FASTEST"] = ProfileSpec{} }, `"FASTEST" is not a routing strategy`},
		{"negative weight", func(c *Config) {
			c.Profiles[pickapi.StrategyDefault] = c.Profiles[pickapi.StrategyDefault].WithWeight("queue", -1)
		}, `weight of "queue" is -1`},
		{"NaN weight", func(c *Config) {
			c.Profiles[pickapi.StrategyDefault] = c.Profiles[pickapi.StrategyDefault].WithWeight("queue", math.NaN())
		}, `weight of "queue" is NaN`},
		{"a filter used as a scorer", func(c *Config) {
			c.Profiles[pickapi.StrategyDefault] = c.Profiles[pickapi.StrategyDefault].WithWeight("capacity", 1)
		}, `"capacity" is not a scorer`},
		{"a scorer used as a filter", func(c *Config) {
			p := c.Profiles[pickapi.StrategyDefault]
			p.Filters = []string{"queue"}
			c.Profiles[pickapi.StrategyDefault] = p
		}, `"queue" is not a filter`},
		{"a scorer without its data", func(c *Config) {
			p := c.Profiles[pickapi.StrategyPrefixCache]
			p.Prepare = []string{"in_flight"}
			c.Profiles[pickapi.StrategyPrefixCache] = p
		}, `"prefix" needs its data: list it under prepare too`},
		{"bad parameters quoted", func(c *Config) { c.Plugins = map[string]json.RawMessage{"in_flight": []byte(`{"grace":5}`)} },
			`unknown field "grace"`},
		{"parameters nobody uses", func(c *Config) { c.Plugins = map[string]json.RawMessage{"running": nil} },
			`"running" has parameters but no profile uses it`},
		{"too many fallbacks", func(c *Config) { c.Fallbacks = 9 }, "fallbacks: 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
}

func TestStatefulPluginsAreSharedAndForgetRemovedEndpoints(t *testing.T) {
	s := mustNew(DefaultConfig())
	eps := endpoints(scrape.Snapshot{}, scrape.Snapshot{})
	h := chain(7, 8)
	_, err := s.Pick(eps, pickapi.StrategyPrefixCache, &Request{PrefixHashes: h}, t0)
	require.NoError(t, err)
	held := 0
	for _, ep := range eps {
		if idx := prefixOf(s).Index(ep); idx != nil && idx.Match(h) == len(h) {
			held++
		}
	}
	require.Equal(t, 1, held, "the pick recorded its prefix on the chosen pod")
	s.EndpointsRemoved(eps)
	for _, ep := range eps {
		require.Nil(t, prefixOf(s).Index(ep))
	}
	require.Contains(t, Registered(), "in_flight")
}

// A burst of identical requests picked concurrently (a benchmark's first
// wave, many gateway workers) spreads as a serial one does: a pick that
// read the fleet before another recorded its choice would follow the same
// preference to the same pod, and LATENCY's preference for the pod picked
// last (saturated) made that a herd of 63 of 202 requests on one pod.
func TestConcurrentBurstSpreadsLikeSerial(t *testing.T) {
	const n = 202
	snap := scrape.Snapshot{NumGPUBlocks: 6144, BlockSize: 16}
	req := func() *Request { return &Request{TargetModel: "m", PromptTokens: 1550, MaxTokens: 1800} }
	for _, st := range []pickapi.Strategy{pickapi.StrategyDefault, pickapi.StrategyLatency} {
		t.Run(string(st), func(t *testing.T) {
			s := mustNew(DefaultConfig())
			eps := endpoints(snap, snap, snap, snap, snap)
			serial := map[string]int{}
			for i := 0; i < n; i++ {
				res, err := s.Pick(eps, st, req(), t0)
				require.NoError(t, err)
				serial[res.Endpoints[0].Addr]++
			}
			for trial := 0; trial < 5; trial++ {
				s := mustNew(DefaultConfig())
				eps := endpoints(snap, snap, snap, snap, snap)
				got := make([]*scrape.Endpoint, n)
				var wg sync.WaitGroup
				for i := 0; i < n; i++ {
					wg.Add(1)
					go func(i int) {
						defer wg.Done()
						res, err := s.Pick(eps, st, req(), t0)
						if err == nil {
							got[i] = res.Endpoints[0]
						}
					}(i)
				}
				wg.Wait()
				count := map[string]int{}
				for _, ep := range got {
					require.NotNil(t, ep)
					count[ep.Addr]++
				}
				for _, ep := range eps {
					require.InDelta(t, serial[ep.Addr], count[ep.Addr], 2, "trial %d: %v, serially %v", trial, count, serial)
				}
			}
		})
	}
}
