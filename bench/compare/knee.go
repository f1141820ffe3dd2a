package compare

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// The knee of a fleet for one workload shape is the concurrency at which
// round robin saturates: its output throughput stops growing, or its TTFT
// after the first wave leaves the prefill floor. The grid places its loads
// relative to it (below, at, past), so that a cell means the same regime on
// every fleet. A short sweep of round robin finds it (knee_sweep.go); this
// file is the arithmetic.

// KneePoint is one level of a sweep: round robin at one concurrency.
type KneePoint struct {
	Concurrency int `json:"concurrency"`
	Prompts     int `json:"prompts"`
	// OutputThroughput is output tokens per simulated second.
	OutputThroughput float64 `json:"output_throughput"`
	// RequestThroughput is requests per simulated second (the grid's time
	// prediction uses it).
	RequestThroughput float64 `json:"request_throughput"`
	// TTFTAfterWave is the TTFT p90 (ms) after the first wave; null when no
	// request came after it.
	TTFTAfterWave *float64 `json:"p90_ttft_after_wave_ms"`
	WallSecs      float64  `json:"wall_s"`
}

func (p KneePoint) ttft() float64 {
	if p.TTFTAfterWave == nil {
		return math.NaN()
	}
	return *p.TTFTAfterWave
}

// KneeRule says when round robin has saturated.
type KneeRule struct {
	// Plateau: throughput has stopped growing once it reaches this share of
	// the sweep's best (0.97).
	Plateau float64 `json:"plateau"`
	// FloorFactor: TTFT has left the floor once the p90 after the first wave
	// is this many times the lowest level's (2).
	FloorFactor float64 `json:"floor_factor"`
	// FlatGain: a level whose throughput grew by less than this share of
	// its concurrency's growth over the level below (0.25) shows the plateau
	// was reached (with linear growth the share is 1).
	FlatGain float64 `json:"flat_gain"`
}

// DefaultKneeRule is the grid's rule.
var DefaultKneeRule = KneeRule{Plateau: 0.97, FloorFactor: 2, FlatGain: 0.25}

// Knee is a sweep's verdict.
type Knee struct {
	Concurrency int `json:"concurrency"`
	// ByThroughput and ByTTFT are the two criteria's crossings
	// (interpolated; null when the sweep did not reach it).
	ByThroughput *float64 `json:"by_throughput"`
	ByTTFT       *float64 `json:"by_ttft"`
	// Decided names the criterion that set Concurrency.
	Decided string `json:"decided_by"`
}

func sortedPoints(points []KneePoint) []KneePoint {
	ps := slices.Clone(points)
	slices.SortFunc(ps, func(a, b KneePoint) int { return cmp.Compare(a.Concurrency, b.Concurrency) })
	return ps
}

// throughputKnee is the concurrency (interpolated linearly) at which the
// output throughput first reaches Plateau x the best level's; ok is false
// while the sweep has not shown the plateau (the best level is the last one
// and it still grew by more than FlatGain).
func throughputKnee(ps []KneePoint, r KneeRule) (float64, bool) {
	if len(ps) < 2 {
		return 0, false
	}
	best := 0
	for i, p := range ps {
		if p.OutputThroughput > ps[best].OutputThroughput {
			best = i
		}
	}
	if last := len(ps) - 1; best == last && !flat(ps[last-1], ps[last], r) {
		return 0, false
	}
	target := r.Plateau * ps[best].OutputThroughput
	for i, p := range ps {
		if p.OutputThroughput < target {
			continue
		}
		if i == 0 {
			return float64(p.Concurrency), true
		}
		q := ps[i-1]
		f := (target - q.OutputThroughput) / (p.OutputThroughput - q.OutputThroughput)
		return float64(q.Concurrency) + f*float64(p.Concurrency-q.Concurrency), true
	}
	return 0, false // unreachable: ps[best] reaches it
}

// flat reports whether b's throughput grew by less than FlatGain of the
// concurrency's relative growth over a.
func flat(a, b KneePoint, r KneeRule) bool {
	if a.OutputThroughput <= 0 || b.Concurrency <= a.Concurrency {
		return false
	}
	gain := b.OutputThroughput/a.OutputThroughput - 1
	return gain < r.FlatGain*(float64(b.Concurrency)/float64(a.Concurrency)-1)
}

// floorAt is the index of the lowest level with a TTFT after the first
// wave (the prefill floor), or -1.
func floorAt(ps []KneePoint) int {
	return slices.IndexFunc(ps, func(p KneePoint) bool { return p.ttft() > 0 })
}

// ttftKnee is where the TTFT p90 after the first wave crosses FloorFactor x
// the floor's (interpolated on a log scale: queueing grows the TTFT by
// factors); ok is false when no level crossed it.
func ttftKnee(ps []KneePoint, r KneeRule) (float64, bool) {
	f := floorAt(ps)
	if f < 0 {
		return 0, false
	}
	limit := r.FloorFactor * ps[f].ttft()
	prev := ps[f]
	for _, p := range ps[f+1:] {
		t := p.ttft()
		if math.IsNaN(t) {
			continue
		}
		if t > limit {
			f := math.Log(limit/prev.ttft()) / math.Log(t/prev.ttft())
			return float64(prev.Concurrency) + f*float64(p.Concurrency-prev.Concurrency), true
		}
		prev = p
	}
	return 0, false
}

// FindKnee finds the knee in a sweep: the lower of the two criteria's
// crossings, rounded to a whole concurrency.
func FindKnee(points []KneePoint, r KneeRule) (Knee, error) {
	ps := sortedPoints(points)
	if len(ps) < 2 {
		return Knee{}, fmt.Errorf("a knee needs at least 2 levels, got %d", len(ps))
	}
	var k Knee
	best := math.Inf(1)
	if c, ok := throughputKnee(ps, r); ok {
		k.ByThroughput, best, k.Decided = &c, c, "throughput"
	}
	if c, ok := ttftKnee(ps, r); ok {
		k.ByTTFT = &c
		if c < best {
			best, k.Decided = c, "ttft"
		}
	}
	if math.IsInf(best, 1) {
		return Knee{}, fmt.Errorf("round robin did not saturate up to concurrency %d: throughput still grows and TTFT is at the floor", ps[len(ps)-1].Concurrency)
	}
	k.Concurrency = max(1, int(math.Round(best)))
	return k, nil
}

// saturatedAt reports whether a level shows saturation: TTFT past the
// floor, or throughput flat over the level below.
func saturatedAt(ps []KneePoint, i int, r KneeRule) bool {
	if f := floorAt(ps); f >= 0 && f < i && ps[i].ttft() > r.FloorFactor*ps[f].ttft() {
		return true
	}
	return i > 0 && flat(ps[i-1], ps[i], r)
}

// NextLevel is the sweep's plan: the next concurrency to run, or done.
// It doubles from start until a level shows saturation, then bisects
// (geometrically) between the last level that did not and the first that
// did until they are within a factor of 1.25. It stops after maxLevels
// levels whatever it found.
func NextLevel(points []KneePoint, r KneeRule, start, maxLevels int) (next int, done bool) {
	ps := sortedPoints(points)
	if len(ps) == 0 {
		return max(1, start), false
	}
	if len(ps) >= maxLevels {
		return 0, true
	}
	first := -1
	for i := range ps {
		if saturatedAt(ps, i, r) {
			first = i
			break
		}
	}
	if first < 0 {
		return 2 * ps[len(ps)-1].Concurrency, false
	}
	if first == 0 {
		return 0, true // saturated at the lowest level: nothing below to bisect
	}
	lo, hi := ps[first-1].Concurrency, ps[first].Concurrency
	if float64(hi) <= 1.25*float64(lo) || hi-lo < 2 {
		return 0, true
	}
	return int(math.Round(math.Sqrt(float64(lo) * float64(hi)))), false
}

// interpolateRate is the request throughput (per simulated second) the
// sweep saw at concurrency c: linear between levels, the nearest level's
// outside them (past the knee the fleet's rate stays put).
func interpolateRate(points []KneePoint, c int) float64 {
	ps := sortedPoints(points)
	if len(ps) == 0 {
		return math.NaN()
	}
	if c <= ps[0].Concurrency {
		// Below the sweep, a closed loop's rate is about proportional to
		// its concurrency.
		return ps[0].RequestThroughput * float64(c) / float64(max(1, ps[0].Concurrency))
	}
	for i := 1; i < len(ps); i++ {
		if c <= ps[i].Concurrency {
			a, b := ps[i-1], ps[i]
			f := float64(c-a.Concurrency) / float64(b.Concurrency-a.Concurrency)
			return a.RequestThroughput + f*(b.RequestThroughput-a.RequestThroughput)
		}
	}
	return ps[len(ps)-1].RequestThroughput
}
