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
			got := afterFirstWaveP90(tc.starts, tc.ttfts, tc.concurrency)
			if math.IsNaN(tc.want) {
				require.True(t, math.IsNaN(got), "got %v", got)
				return
			}
			require.InDelta(t, tc.want, got, 1e-9)
		})
	}
}
