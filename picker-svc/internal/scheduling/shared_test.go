package scheduling

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

type recorder struct {
	picks []PickRecord
	ends  [][]uint64
}

func (r *recorder) PickMade(p PickRecord)      { r.picks = append(r.picks, p) }
func (r *recorder) RequestsEnded(ids []uint64) { r.ends = append(r.ends, ids) }

// A pick made on one scheduler and replayed on another teaches the second
// what the first learnt: the prefix its pod now holds, and one request in
// flight there until a scrape shows it or its end is reported.
func TestPeerPickTeachesWhatTheOwnPickTaught(t *testing.T) {
	a, b := mustNew(DefaultConfig()), mustNew(DefaultConfig())
	rec := &recorder{}
	a.SetObserver(rec)
	seen := &recorder{}
	b.SetObserver(seen)
	same := scrape.Snapshot{Waiting: 1, Running: 4, KVCacheUsage: 0.3}
	eps := endpoints(same, same, same, same)
	h := chain(42, 32)

	res, err := a.Pick(eps, pickapi.StrategyPrefixCache, &Request{PrefixHashes: h, PromptTokens: 600}, t0)
	require.NoError(t, err)
	require.Len(t, rec.picks, 1)
	r := rec.picks[0]
	require.Equal(t, PickRecord{ID: res.PickID, Strategy: pickapi.StrategyPrefixCache, Endpoint: res.Endpoints[0], At: t0,
		PromptTokens: 600, PrefixHashes: h}, r)
	_, err = a.Pick(eps, pickapi.StrategyDefault, &Request{PrefixHashes: h}, t0)
	require.NoError(t, err)
	require.Nil(t, rec.picks[1].PrefixHashes, "a profile without a prefix index ships no hashes")

	b.ApplyPeerPick(&r)
	require.Empty(t, seen.picks, "a replayed pick is not reported again")
	require.Equal(t, 32, prefixOf(b).Index(res.Endpoints[0]).Match(h))
	c := make([]Candidate, len(eps))
	for i, ep := range eps {
		c[i] = Candidate{EP: ep, S: ep.Snapshot()}
	}
	prefixOf(b).Prepare(&Request{PrefixHashes: h}, c, t0)
	inflight := b.Plugin("in_flight").(*InFlightTracker)
	inflight.Prepare(&Request{}, c, t0)
	for i := range c {
		if c[i].EP == res.Endpoints[0] {
			require.Equal(t, 32, c[i].PrefixBlocks, "the holders shortlist names the peer's pod")
			require.Equal(t, InFlight{Requests: 1, PromptTokens: 600, BeforeFirstToken: 2, BacklogTokens: 600}, c[i].InFlight)
		} else {
			require.Zero(t, c[i].PrefixBlocks)
			require.Zero(t, c[i].InFlight.Requests)
		}
	}

	a.RequestsDone(ends(r.ID), t0)
	require.Equal(t, [][]uint64{{r.ID}}, rec.ends)
	b.ApplyPeerEnds([]uint64{r.ID}, t0)
	require.Empty(t, seen.ends)
	inflight.Prepare(&Request{}, c, t0)
	for i := range c {
		require.Zero(t, c[i].InFlight.Requests, "the end reached the peer")
	}
}

// A peer's pick arrives a little after picks this replica made later; it
// still leaves with the first scrape that covers it.
func TestPeerPickArrivingLateKeepsTimeOrder(t *testing.T) {
	tr := NewInFlightTracker(0)
	ep := endpoint(0, scrape.Snapshot{})
	tr.PostPick(&Request{PickID: 1}, &Candidate{EP: ep}, t0.Add(20*time.Millisecond))
	tr.PostPick(&Request{PickID: 2}, &Candidate{EP: ep}, t0.Add(5*time.Millisecond)) // the peer's
	ep.Store(&scrape.Snapshot{RequestedAt: t0.Add(10 * time.Millisecond)})
	c := []Candidate{{EP: ep, S: ep.Snapshot()}}
	tr.Prepare(&Request{}, c, t0)
	require.Equal(t, 1, c[0].InFlight.Requests, "the scrape at 10 ms shows the pick made at 5 ms")
	require.NotContains(t, tr.byID, uint64(2))
	require.Contains(t, tr.byID, uint64(1))
}

// A starting replica imports a peer's prefix index: it then scores every
// prompt start as the peer does, and the export stays within its budget.
func TestPrefixStateExportImport(t *testing.T) {
	a, b := NewPrefixScorer(1024), NewPrefixScorer(1024)
	eps := endpoints(make([]scrape.Snapshot, 3)...)
	hs := [][]uint64{chain(1, 20), chain(100, 30), chain(200, 10)}
	for i, h := range hs {
		a.PostPick(&Request{PrefixHashes: h}, &Candidate{EP: eps[i]}, t0)
	}
	a.PostPick(&Request{PrefixHashes: hs[0]}, &Candidate{EP: eps[2]}, t0) // two holders of the first
	byAddr := map[string]*scrape.Endpoint{}
	for _, ep := range eps {
		byAddr[ep.Addr] = ep
	}
	st := a.ExportState(1<<20, 1<<20)
	b.ImportState(st, func(addr string) *scrape.Endpoint { return byAddr[addr] })
	prep := func(p *PrefixScorer, h []uint64) []int {
		c := make([]Candidate, len(eps))
		for i, ep := range eps {
			c[i] = Candidate{EP: ep, S: ep.Snapshot()}
		}
		p.Prepare(&Request{PrefixHashes: h}, c, t0)
		out := make([]int, len(c))
		for i := range c {
			out[i] = c[i].PrefixBlocks
		}
		return out
	}
	for _, h := range hs {
		require.Equal(t, prep(a, h), prep(b, h))
	}
	require.Equal(t, []int{20, 0, 20}, prep(b, hs[0]))

	small := a.ExportState(15, 2)
	n := 0
	for _, blocks := range small.Blocks {
		require.LessOrEqual(t, len(blocks), 5)
		n += len(blocks)
	}
	require.LessOrEqual(t, n, 15)
	require.Len(t, small.Holders, 2)

	none := NewPrefixScorer(1024)
	none.ImportState(st, func(string) *scrape.Endpoint { return nil })
	require.Empty(t, none.indexes, "endpoints this replica does not know are skipped")
}

// Three schedulers that replay each other's picks spread a burst between
// two scrapes as one scheduler does: every pod gets its share, to one pick.
func TestReplayedPicksSpreadABurstAsOne(t *testing.T) {
	scheds := []*Scheduler{mustNew(DefaultConfig()), mustNew(DefaultConfig()), mustNew(DefaultConfig())}
	recs := make([]*recorder, len(scheds))
	for i, s := range scheds {
		recs[i] = &recorder{}
		s.SetObserver(recs[i])
	}
	same := scrape.Snapshot{Waiting: 2, Running: 8, KVCacheUsage: 0.4}
	eps := endpoints(same, same, same, same, same)
	count := map[*scrape.Endpoint]int{}
	for i := range 50 {
		k := i % len(scheds)
		res, err := scheds[k].Pick(eps, pickapi.StrategyDefault, &Request{PromptTokens: 500}, t0.Add(time.Millisecond))
		require.NoError(t, err)
		count[res.Endpoints[0]]++
		r := recs[k].picks[len(recs[k].picks)-1]
		for j, s := range scheds {
			if j != k {
				s.ApplyPeerPick(&r)
			}
		}
	}
	for _, ep := range eps {
		require.Equal(t, 10, count[ep], "an even share for every pod")
	}
}

// A LATENCY pick replayed on a peer teaches its forecast what the pick
// taught the replica that made it: the same requests pending on the same
// pods, with the same expected output (from the request's model and
// max_tokens).
func TestPeerLatencyPickTeachesTheForecast(t *testing.T) {
	a, b := mustNew(DefaultConfig()), mustNew(DefaultConfig())
	rec := &recorder{}
	a.SetObserver(rec)
	eps := endpoints(kvPod(scrape.Snapshot{}), kvPod(scrape.Snapshot{}))
	for _, maxTokens := range []int{300, 40, 2000} {
		_, err := a.Pick(eps, pickapi.StrategyLatency, &Request{TargetModel: "m", PromptTokens: 5000, MaxTokens: maxTokens}, t0)
		require.NoError(t, err)
	}
	require.Len(t, rec.picks, 3)
	require.Equal(t, "m", rec.picks[0].TargetModel)
	require.Equal(t, 300, rec.picks[0].MaxTokens)
	for i := range rec.picks {
		b.ApplyPeerPick(&rec.picks[i])
	}
	pending := func(s *Scheduler) map[string][][2]int {
		sc := s.Plugin("predicted_ttft").(*PredictedTTFTScorer)
		out := map[string][][2]int{}
		for _, ep := range eps {
			p := sc.pod(ep)
			p.mu.Lock()
			for _, r := range p.pending {
				out[ep.Addr] = append(out[ep.Addr], [2]int{r.out, r.maxTokens})
			}
			p.mu.Unlock()
		}
		return out
	}
	want := pending(a)
	require.Len(t, append(want[eps[0].Addr], want[eps[1].Addr]...), 3)
	require.Equal(t, want, pending(b))
}
