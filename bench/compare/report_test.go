package compare

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAfterFirstWaveP90(t *testing.T) {
	for _, tc := range []struct {
		name          string
		starts, ttfts []float64
		concurrency   int
		want          float64 // ms; NaN: none
	}{
		{
			// Two start together; the wave ends at 0+3 s. The request sent at
			// 2 s waited behind it and is left out; those after 3 s count.
			name:   "requests sent while the wave waits are left out",
			starts: []float64{0, 0, 2, 3.5, 4, 5}, ttfts: []float64{1, 3, 2.5, 0.1, 0.2, 0.3}, concurrency: 2,
			want: 280, // p90 of 0.1, 0.2, 0.3: rank 1.8
		},
		{
			name:   "the wave is the first sent, whatever the order of outputs",
			starts: []float64{5, 0, 4, 0}, ttfts: []float64{0.4, 1, 0.2, 2}, concurrency: 2,
			want: 380,
		},
		{name: "no concurrency limit", starts: []float64{0, 1}, ttfts: []float64{1, 1}, concurrency: 0, want: math.NaN()},
		{name: "nothing after the wave", starts: []float64{0, 0, 1}, ttfts: []float64{2, 2, 1}, concurrency: 2, want: math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireValueOrNaN(t, tc.want, afterFirstWaveP90(tc.starts, tc.ttfts, tc.concurrency))
		})
	}
}

func TestFirstWaveShareAboveP90(t *testing.T) {
	for _, tc := range []struct {
		name          string
		starts, ttfts []float64
		concurrency   int
		want          float64 // %; NaN: none
	}{
		{
			// p90 of 1..10 s is 9.1 s: only the 10 s request is above, and it
			// is the second sent, inside a wave of 2.
			name:   "the slowest is in the wave",
			starts: []float64{0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, ttfts: []float64{1, 10, 2, 3, 4, 5, 6, 7, 8, 9}, concurrency: 2,
			want: 100,
		},
		{
			name:   "the first request after the wave is not in it",
			starts: []float64{0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, ttfts: []float64{1, 2, 10, 3, 4, 5, 6, 7, 8, 9}, concurrency: 2,
			want: 0,
		},
		{
			name:   "the slowest came after the wave",
			starts: []float64{0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, ttfts: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, concurrency: 2,
			want: 0,
		},
		{
			// 20 requests: p90 is 18.1, so 19 and 20 are above; 20 was sent
			// first (wave), 19 last.
			name:        "half and half, whatever the order in the slice",
			starts:      []float64{9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19},
			ttfts:       []float64{1, 20, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19},
			concurrency: 1,
			want:        50,
		},
		{name: "all equal: none above", starts: []float64{0, 1, 2}, ttfts: []float64{1, 1, 1}, concurrency: 1, want: 0},
		{name: "no concurrency limit", starts: []float64{0, 1}, ttfts: []float64{1, 2}, concurrency: 0, want: math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireValueOrNaN(t, tc.want, firstWaveShareAboveP90(tc.starts, tc.ttfts, tc.concurrency))
		})
	}
}

// requireValueOrNaN: want NaN means got must be NaN (no value), else equal.
func requireValueOrNaN(t *testing.T, want, got float64) {
	t.Helper()
	if math.IsNaN(want) {
		require.True(t, math.IsNaN(got), "got %v", got)
		return
	}
	require.InDelta(t, want, got, 1e-9)
}
