package scheduling

import (
	"math/rand/v2"
	"testing"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"

	"github.com/stretchr/testify/require"
)

func TestMaxScorePicker(t *testing.T) {
	c := cands(make([]scrape.Snapshot, 5)...)
	out := make([]int, 3)
	n := MaxScorePicker{}.Pick(c, []float64{1, 5, 3, 4, 2}, out)
	require.Equal(t, 3, n)
	require.Equal(t, []int{1, 3, 2}, out)

	n = MaxScorePicker{}.Pick(c[:2], []float64{1, 2}, out)
	require.Equal(t, 2, n, "no more picks than candidates")
	require.Equal(t, 0, MaxScorePicker{}.Pick(nil, nil, out))
}

func TestMaxScorePickerBreaksTiesAtRandom(t *testing.T) {
	c := cands(make([]scrape.Snapshot, 4)...)
	totals := []float64{2, 2, 1, 2}
	counts := make([]int, 4)
	out := make([]int, 1)
	for i := 0; i < 3000; i++ {
		MaxScorePicker{}.Pick(c, totals, out)
		counts[out[0]]++
	}
	require.Zero(t, counts[2])
	for _, i := range []int{0, 1, 3} {
		require.InDelta(t, 1000, counts[i], 150, "tie %d picked %d times of 3000", i, counts[i])
	}
}

// An injected source makes tie-breaking reproducible.
func TestMaxScorePickerInjectedSource(t *testing.T) {
	c := make([]Candidate, 8)
	totals := make([]float64, len(c)) // all tied
	run := func() []int {
		p := NewMaxScorePicker(rand.New(rand.NewPCG(7, 8)))
		var got []int
		for range 20 {
			out := make([]int, 3)
			p.Pick(c, totals, out)
			got = append(got, out...)
		}
		return got
	}
	require.Equal(t, run(), run())
}
