package compare

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// reps builds repetitions 1..n of one policy from per-key values.
func reps(vals map[string][]float64) []map[string]float64 {
	var out []map[string]float64
	for k, xs := range vals {
		for i, x := range xs {
			for len(out) <= i {
				out = append(out, map[string]float64{"repetition": float64(len(out) + 1)})
			}
			if !math.IsNaN(x) {
				out[i][k] = x
			}
		}
	}
	return out
}

func syntheticCells() []CellResult {
	nan := math.NaN()
	three := func(x float64) []float64 { return []float64{x, x, x} }
	defA := reps(map[string][]float64{
		"p90_ttft_ms": {90, 121, 60}, "p99_ttft_ms": three(104), "output_throughput": {1100, 900, 1000},
		"p90_ttft_after_wave_ms": three(100), "median_ttft_ms": three(50), "max_ttft_ms": {300, 900, 400},
	})
	// The policy's repetitions in another order: ratios pair by the
	// "repetition" key, not by position.
	defA[0], defA[2] = defA[2], defA[0]
	return []CellResult{
		{Cell: Cell{Name: "A", Load: 0.8}, Concurrency: 80, Figures: map[string][]map[string]float64{
			"round_robin": reps(map[string][]float64{
				"p90_ttft_ms": {100, 110, 120}, "p99_ttft_ms": three(100), "output_throughput": three(1000),
				"p90_ttft_after_wave_ms": three(100), "median_ttft_ms": three(50), "max_ttft_ms": three(500),
			}),
			"default": defA,
		}},
		{Cell: Cell{Name: "B", Load: 1}, Figures: map[string][]map[string]float64{
			"round_robin": reps(map[string][]float64{"p90_ttft_ms": three(1000), "p99_ttft_ms": three(1000), "output_throughput": three(1000), "p90_ttft_after_wave_ms": three(900)}),
			"default":     reps(map[string][]float64{"p90_ttft_ms": three(250), "p99_ttft_ms": three(1200), "output_throughput": three(1200), "p90_ttft_after_wave_ms": three(200)}),
		}},
		{Cell: Cell{Name: "C", Load: 1.5}, Figures: map[string][]map[string]float64{
			"round_robin": reps(map[string][]float64{"p90_ttft_ms": three(1000), "p99_ttft_ms": three(1000), "output_throughput": three(1000), "p90_ttft_after_wave_ms": three(nan)}),
			"default":     reps(map[string][]float64{"p90_ttft_ms": three(500), "p99_ttft_ms": three(1000), "output_throughput": three(800), "p90_ttft_after_wave_ms": three(nan)}),
		}},
	}
}

func TestScoreboardRatios(t *testing.T) {
	sb := BuildScoreboard(syntheticCells(), []string{"round_robin", "default"}, "round_robin")
	a := sb.Cells[0]
	require.False(t, a.Saturated)
	// p90: 90/100, 121/110, 60/120 -> 0.9, 1.1, 0.5.
	require.Equal(t, Spread{0.9, 0.5, 1.1}, a.Ratios["default"]["p90_ttft_ms"])
	require.Equal(t, Spread{1, 0.9, 1.1}, a.Ratios["default"]["output_throughput"])
	// The slowest request: values are kept with their range.
	require.Equal(t, Spread{400, 300, 900}, a.Values["default"]["max_ttft_ms"])
	require.Equal(t, Spread{110, 100, 120}, a.Values["round_robin"]["p90_ttft_ms"])
	require.NotContains(t, a.Ratios, "round_robin", "no ratio of the baseline to itself")
	require.True(t, math.IsNaN(float64(sb.Cells[2].Ratios["default"]["p90_ttft_after_wave_ms"].Median)), "no data, no ratio")
}

func TestScoreboardGeomeanAndWorst(t *testing.T) {
	o := BuildScoreboard(syntheticCells(), []string{"round_robin", "default"}, "round_robin").Overall["default"]
	require.InDelta(t, math.Cbrt(0.9*0.25*0.5), float64(o.GeoMean["p90_ttft_ms"]), 1e-3)
	require.InDelta(t, math.Sqrt(0.25*0.5), float64(o.GeoMeanSaturated["p90_ttft_ms"]), 1e-3)
	// After the wave, C has no figure: the means leave it out.
	require.InDelta(t, math.Sqrt(1*200.0/900), float64(o.GeoMean["p90_ttft_after_wave_ms"]), 1e-3)
	require.InDelta(t, 200.0/900, float64(o.GeoMeanSaturated["p90_ttft_after_wave_ms"]), 1e-3)
	// Worst: the highest latency ratio, the lowest throughput ratio.
	require.Equal(t, "A", o.Worst["p90_ttft_ms"].Cell)
	require.Equal(t, "B", o.Worst["p99_ttft_ms"].Cell)
	require.Equal(t, WorstCell{Cell: "C", Ratio: 0.8}, o.Worst["output_throughput"])
}

func TestScoreboardTargets(t *testing.T) {
	o := BuildScoreboard(syntheticCells(), []string{"round_robin", "default"}, "round_robin").Overall["default"]
	got := map[string]Target{}
	for _, tg := range o.Targets {
		got[tg.Name] = tg
	}
	require.Equal(t, Target{Name: "TTFT p90 <= round robin's", Met: 3, Of: 3}, got["TTFT p90 <= round robin's"])
	require.Equal(t, []string{"B"}, got["TTFT p99 <= 1.05x round robin's"].Failing)
	require.Equal(t, []string{"C"}, got["output throughput >= round robin's"].Failing)
	sat := got["saturated: TTFT p90 <= 0.4x round robin's"]
	require.Equal(t, 1, sat.Met)
	require.Equal(t, 2, sat.Of, "only saturated cells count")
	require.Equal(t, []string{"C"}, got["saturated: TTFT p90 after the first wave <= 1/3 of round robin's"].Failing, "no figure is not a pass")
	require.Equal(t, 0, got["saturated: geometric mean of TTFT p90 <= 1/3 of round robin's"].Met)
}

func TestGeomean(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{4, 1}, 2},
		{[]float64{2}, 2},
		{[]float64{0.5, 2, math.NaN()}, 1},
		{[]float64{math.NaN()}, math.NaN()},
		{nil, math.NaN()},
	} {
		requireValueOrNaN(t, tc.want, geomean(tc.xs))
	}
}

func TestScoreboardMarkdownAndJSON(t *testing.T) {
	sb := BuildScoreboard(syntheticCells(), []string{"round_robin", "default"}, "round_robin")
	var b strings.Builder
	sb.Markdown(&b)
	md := b.String()
	for _, want := range []string{
		"### default / round_robin",
		"| A | 0.8x | 80 | 110 (100–120) | 1.00 | 0.90 (0.50–1.10) |",
		"| B (saturated) |",
		"| **geometric mean, saturated cells** | | | | - | 0.35 |",
		"| **worst cell** |",
		"0.80 (C)",
		"| TTFT p99 <= 1.05x round robin's | 2 of 3 | B |",
	} {
		require.Contains(t, md, want)
	}
	j, err := json.Marshal(sb)
	require.NoError(t, err)
	require.Contains(t, string(j), `"p90_ttft_after_wave_ms":{"median":null,"min":null,"max":null}`)
	var back Scoreboard
	require.NoError(t, json.Unmarshal(j, &back))
	require.Equal(t, sb.Overall["default"].Worst, back.Overall["default"].Worst)
}

func TestNumJSON(t *testing.T) {
	for _, tc := range []struct {
		x    float64
		want string
	}{{math.NaN(), "null"}, {0, "0"}, {0.123456, "0.1235"}, {14259.94, "14260"}, {1.5, "1.5"}, {-0.000123456, "-0.0001235"}} {
		b, err := Num(tc.x).MarshalJSON()
		require.NoError(t, err)
		require.Equal(t, tc.want, string(b), "%v", tc.x)
	}
}
