package compare

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func pt(c int, thr, ttft float64) KneePoint {
	p := KneePoint{Concurrency: c, OutputThroughput: thr, RequestThroughput: thr / 100}
	if !math.IsNaN(ttft) {
		p.TTFTAfterWave = &ttft
	}
	return p
}

func TestFindKnee(t *testing.T) {
	for _, tc := range []struct {
		name    string
		points  []KneePoint
		want    int
		decided string
		err     string
	}{
		{
			// Throughput 100/level unit up to 200, then flat at 4000: 0.97 x
			// 4000 = 3880 is crossed between 160 (3200) and 240 (4000) at
			// 160 + 680/800 x 80 = 228. TTFT stays at the floor.
			name:    "throughput plateau, TTFT at the floor",
			points:  []KneePoint{pt(40, 800, 500), pt(80, 1600, 500), pt(160, 3200, 510), pt(240, 4000, 520), pt(320, 4000, 600)},
			want:    228,
			decided: "throughput",
		},
		{
			// The floor is 500 ms; 1000 is crossed between 100 (600) and 200
			// (6000): log(1000/600)/log(6000/600) = 0.2218 -> 122.
			name:    "TTFT leaves the floor before the throughput flattens",
			points:  []KneePoint{pt(50, 1000, 500), pt(100, 2000, 600), pt(200, 3900, 6000), pt(400, 4000, 20000)},
			want:    122,
			decided: "ttft",
		},
		{
			name:    "order of the points does not matter",
			points:  []KneePoint{pt(400, 4000, 20000), pt(100, 2000, 600), pt(50, 1000, 500), pt(200, 3900, 6000)},
			want:    122,
			decided: "ttft",
		},
		{
			// The best is the last level, but it grew 3% for 2x the
			// concurrency: the plateau is reached; 0.97 x 3090 = 2997.3
			// between 20 (2000) and 40 (3000): 20 + 997.3/1000 x 20 = 39.9.
			name:    "best at the last level but flat",
			points:  []KneePoint{pt(10, 1000, 100), pt(20, 2000, 110), pt(40, 3000, 120), pt(80, 3090, 150)},
			want:    40,
			decided: "throughput",
		},
		{
			name:   "still growing, TTFT at the floor: no knee",
			points: []KneePoint{pt(10, 1000, 100), pt(20, 2000, 110), pt(40, 4000, 120)},
			err:    "did not saturate up to concurrency 40",
		},
		{
			// A level without requests after the first wave has no TTFT: it
			// is skipped, and the crossing is interpolated across it.
			name:    "a level without TTFT is skipped",
			points:  []KneePoint{pt(10, 100, 100), pt(20, 200, math.NaN()), pt(40, 400, 400)},
			want:    25, // log(200/100)/log(400/100) = 0.5 -> 10 + 15
			decided: "ttft",
		},
		{
			// The lowest level sent no request after its first wave: the
			// floor is the next level's.
			name:    "the floor is the lowest level with a TTFT",
			points:  []KneePoint{pt(5, 50, math.NaN()), pt(10, 100, 100), pt(40, 400, 400)},
			want:    25,
			decided: "ttft",
		},
		{name: "one level", points: []KneePoint{pt(10, 100, 100)}, err: "at least 2 levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := FindKnee(tc.points, DefaultKneeRule)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, k.Concurrency)
			require.Equal(t, tc.decided, k.Decided)
		})
	}
}

// TestNextLevelFindsASyntheticKnee drives the sweep plan against a fleet
// whose round robin saturates at knee: throughput grows linearly to it
// and stays; TTFT after the wave is at the floor below it and grows fast
// past it.
func TestNextLevelFindsASyntheticKnee(t *testing.T) {
	for _, tc := range []struct {
		knee, start int
		levels      []int
	}{
		// 10, 20, ..., 320 doubles until 320 is past 225; then bisects
		// [160, 320]: 226 (not past), 269 (past): 269/226 < 1.25, done.
		{knee: 225, start: 10, levels: []int{10, 20, 40, 80, 160, 320, 226, 269}},
		{knee: 25, start: 10, levels: []int{10, 20, 40, 28, 24}},
	} {
		fleet := func(c int) KneePoint {
			thr := float64(min(c, tc.knee)) * 20
			ttft := 500.0
			if c > tc.knee {
				ttft *= 1 + 40*float64(c-tc.knee)/float64(tc.knee)
			}
			return pt(c, thr, ttft)
		}
		var points []KneePoint
		var levels []int
		for {
			c, done := NextLevel(points, DefaultKneeRule, tc.start, 9)
			if done {
				break
			}
			levels = append(levels, c)
			points = append(points, fleet(c))
		}
		require.Equal(t, tc.levels, levels, "knee %d", tc.knee)
		k, err := FindKnee(points, DefaultKneeRule)
		require.NoError(t, err)
		require.InDelta(t, tc.knee, k.Concurrency, 0.1*float64(tc.knee), "knee %d: found %+v", tc.knee, k)
	}
}

func TestNextLevelStopsAtMaxLevels(t *testing.T) {
	var points []KneePoint
	for c := 10; ; {
		next, done := NextLevel(points, DefaultKneeRule, 10, 4)
		if done {
			break
		}
		c = next
		points = append(points, pt(c, float64(c)*10, 100)) // never saturates
	}
	require.Len(t, points, 4)
	require.Equal(t, 80, points[3].Concurrency)
}

func TestInterpolateRate(t *testing.T) {
	ps := []KneePoint{pt(20, 200, 1), pt(40, 400, 1), pt(80, 500, 1)} // request rates 2, 4, 5
	for _, tc := range []struct {
		c    int
		want float64
	}{{10, 1}, {20, 2}, {30, 3}, {60, 4.5}, {80, 5}, {200, 5}} {
		require.InDelta(t, tc.want, interpolateRate(ps, tc.c), 1e-9, "c=%d", tc.c)
	}
	require.True(t, math.IsNaN(interpolateRate(nil, 10)))
}
