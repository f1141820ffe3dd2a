package scheduling

import (
	"math/rand/v2"
	"testing"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func holdersOf(h *prefixHolders, hash uint64) []uint32 {
	var ids [HoldersPerPrefix]uint32
	n := h.get(hash, &ids)
	return append([]uint32(nil), ids[:n]...)
}

func TestPrefixHoldersMostRecentFirst(t *testing.T) {
	h := newPrefixHolders(0)
	require.Empty(t, holdersOf(h, 7))
	h.add(7, 1)
	h.add(7, 2)
	h.add(7, 3)
	require.Equal(t, []uint32{3, 2, 1}, holdersOf(h, 7))
	h.add(7, 1) // served again: to the front, not twice
	require.Equal(t, []uint32{1, 3, 2}, holdersOf(h, 7))
	for id := uint32(10); id < 20; id++ {
		h.add(7, id)
	}
	require.Equal(t, []uint32{19, 18, 17, 16, 15, 14, 13, 12}, holdersOf(h, 7), "a full list drops its oldest holder")
	require.Empty(t, holdersOf(h, 8), "other prefixes have no holders")
}

func TestPrefixHoldersBoundedAndGrow(t *testing.T) {
	h := newPrefixHolders(0)
	require.Len(t, h.table.slots, minHolderSlots)
	for i := range uint64(10 * minHolderSlots) {
		h.add(i+1, 1)
	}
	require.Len(t, h.table.slots, minHolderSlots, "inserts never grow the table")
	require.Equal(t, []uint32{1}, holdersOf(h, 10*minHolderSlots), "the newest prefix is held")
	require.Empty(t, holdersOf(h, 1), "the oldest aged out")

	recent := uint64(10*minHolderSlots - 100)
	h.grow(4 * minHolderSlots)
	require.Len(t, h.table.slots, 4*minHolderSlots)
	for i := recent; i <= 10*minHolderSlots; i++ {
		require.Equal(t, []uint32{1}, holdersOf(h, i), "growing keeps live entries")
	}
	h.grow(minHolderSlots)
	require.Len(t, h.table.slots, 4*minHolderSlots, "never shrinks")
}

// The shortlist changes no score: on random traffic in which no prompt
// start has more than HoldersPerPrefix holders, Prepare gives every
// candidate exactly what its own index says.
func TestPrefixScorerShortlistMatchesEveryIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	c := cands(make([]scrape.Snapshot, 40)...)
	ps := NewPrefixScorer(512) // small: chains age out and holders go stale
	prompts := make([][]uint64, 60)
	for i := range prompts {
		prompts[i] = chain(i*1000, 1+r.IntN(40))
	}
	matched := 0
	for range 3000 {
		k := r.IntN(len(prompts))
		p := prompts[k][:1+r.IntN(len(prompts[k]))]
		pod := (k + r.IntN(HoldersPerPrefix)) % len(c) // a prompt goes to one of 8 pods
		ps.PostPick(&Request{PrefixHashes: p}, &Candidate{EP: c[pod].EP}, t0)

		q := &Request{PrefixHashes: prompts[r.IntN(len(prompts))]}
		ps.Prepare(q, c, t0)
		for i := range c {
			want := 0
			if idx := ps.Index(c[i].EP); idx != nil {
				want = idx.Match(q.PrefixHashes)
			}
			require.Equal(t, want, c[i].PrefixBlocks, "candidate %d", i)
			matched += want
		}
	}
	require.Positive(t, matched)
}

func TestPrefixScorerCreditsTheLastHolders(t *testing.T) {
	c := cands(make([]scrape.Snapshot, HoldersPerPrefix+2)...)
	ps := NewPrefixScorer(1024)
	h := chain(5, 10)
	for i := range c {
		ps.PostPick(&Request{PrefixHashes: h}, &Candidate{EP: c[i].EP}, t0)
	}
	ps.Prepare(&Request{PrefixHashes: h}, c, t0)
	for i := range c {
		want := 10
		if i < 2 {
			want = 0 // served it first: beyond the last HoldersPerPrefix
		}
		require.Equal(t, want, c[i].PrefixBlocks, "candidate %d", i)
	}
}

// A removed endpoint's id goes to the next endpoint that joins; the
// holders table may still name it for the old prefix, and the new
// endpoint's own (empty) index answers.
func TestPrefixScorerReusedIDScoresItsOwnIndex(t *testing.T) {
	c := cands(scrape.Snapshot{}, scrape.Snapshot{})
	ps := NewPrefixScorer(1024)
	h := chain(5, 10)
	ps.PostPick(&Request{PrefixHashes: h}, &Candidate{EP: c[0].EP}, t0)
	ps.EndpointsRemoved([]*scrape.Endpoint{c[0].EP})
	ps.PostPick(&Request{PrefixHashes: chain(900, 4)}, &Candidate{EP: c[1].EP}, t0)
	require.Equal(t, uint32(1), ps.indexes[c[1].EP].id, "the id was reused")
	ps.Prepare(&Request{PrefixHashes: h}, c, t0)
	require.Equal(t, []int{0, 0}, []int{c[0].PrefixBlocks, c[1].PrefixBlocks})
}
