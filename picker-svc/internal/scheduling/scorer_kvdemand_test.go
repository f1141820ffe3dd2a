package scheduling

import (
	"testing"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func TestKVDemandScorer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		demand []float64
		want   []float64
	}{
		{"least demand wins", []float64{0.5, 0.6, 0.52}, []float64{1, 0, 0.8}},
		{"a spread under the floor is not the whole range", []float64{0.5, 0.51}, []float64{1, 0.8}},
		{"all equal", []float64{1.2, 1.2}, []float64{1, 1}},
		{"past a full cache still ranks", []float64{1.4, 1.2}, []float64{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cands(make([]scrape.Snapshot, len(tc.demand))...)
			for i, d := range tc.demand {
				c[i].KVDemand = d
			}
			require.InDeltaSlice(t, tc.want, score(NewKVDemandScorer(0, 0), &Request{}, c), 1e-9)
		})
	}
}

// kvPod is one pod of 8,000 blocks of 16 tokens (128,000 tokens) whose
// snapshot (sent at at) shows running requests.
func kvPod(running float64, at time.Time) []Candidate {
	return cands(scrape.Snapshot{Running: running, NumGPUBlocks: 8000, BlockSize: 16, ScrapedAt: at})
}

// rescrape gives c's pod a new snapshot showing running requests, sent at at.
func rescrape(c []Candidate, running float64, at time.Time) {
	c[0].EP.Store(&scrape.Snapshot{Running: running, NumGPUBlocks: 8000, BlockSize: 16, ScrapedAt: at, RequestedAt: at})
	c[0].S = c[0].EP.Snapshot()
}

func demandOf(k *KVDemandScorer, c []Candidate) float64 {
	k.Prepare(&Request{}, c, t0)
	return c[0].KVDemand
}

func TestKVDemandCountsOpenPicksUntilTheyEnd(t *testing.T) {
	k := NewKVDemandScorer(50*time.Millisecond, 256)
	c := kvPod(2, t0)
	k.PostPick(&Request{PickID: 1, PromptTokens: 1000, MaxTokens: 1800}, &c[0], t0.Add(-time.Second))
	k.PostPick(&Request{PickID: 2, PromptTokens: 1000}, &c[0], t0.Add(-time.Second))
	require.InDelta(t, (2800.0+1256)/128000, demandOf(k, c), 1e-12, "prompt + max_tokens, else the default output")

	k.RequestsDone([]uint64{1, 99}, t0) // 99: not this picker's
	require.InDelta(t, 1256.0/128000, demandOf(k, c), 1e-12)
	k.RequestsDone([]uint64{1}, t0) // twice: no change
	require.InDelta(t, 1256.0/128000, demandOf(k, c), 1e-12)
}

// Without end reports the pod's own count bounds what can still be open:
// a scrape showing one request drops all but the newest scraped pick,
// and picks the scrape cannot show yet always count.
func TestKVDemandBoundedByTheScrape(t *testing.T) {
	k := NewKVDemandScorer(50*time.Millisecond, 0)
	c := kvPod(5, t0)
	for i := range 4 {
		k.PostPick(&Request{PromptTokens: 1000 * (i + 1)}, &c[0], t0.Add(-time.Duration(4-i)*time.Second))
	}
	require.InDelta(t, 10000.0/128000, demandOf(k, c), 1e-12, "the scrape shows room for all four")

	later := t0.Add(time.Second)
	rescrape(c, 1, later)
	k.PostPick(&Request{PromptTokens: 500}, &c[0], later) // after the scrape was sent: unscraped
	require.InDelta(t, (4000.0+500)/128000, demandOf(k, c), 1e-12, "the newest scraped pick and the unscraped one")

	rescrape(c, 0, later.Add(time.Second))
	require.Zero(t, demandOf(k, c), "an idle pod holds nothing")
	require.Empty(t, k.pods[c[0].EP].open, "and the dropped picks are gone")
}

// A client's max_tokens cannot make a pod look fuller than its whole
// cache, and no scrape (a pod whose scrapes stopped) leaves the state
// unbounded.
func TestKVDemandCappedAndBounded(t *testing.T) {
	k := NewKVDemandScorer(0, 0)
	c := kvPod(1e6, t0)
	k.PostPick(&Request{PickID: 1, PromptTokens: 10, MaxTokens: 1 << 24}, &c[0], t0)
	require.InDelta(t, 1, demandOf(k, c), 1e-12)
	for i := range 2 * maxOpenPicks {
		k.PostPick(&Request{PickID: uint64(i + 2), PromptTokens: 1}, &c[0], t0)
	}
	require.Len(t, k.pods[c[0].EP].open, maxOpenPicks)
	require.Len(t, k.byID, maxOpenPicks)

	k.EndpointsRemoved([]*scrape.Endpoint{c[0].EP})
	require.Empty(t, k.pods)
	require.Empty(t, k.byID)
	require.Zero(t, demandOf(k, c))
}
