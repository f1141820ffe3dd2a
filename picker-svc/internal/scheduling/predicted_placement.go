package scheduling

import (
	"cmp"
	"math"
	"slices"
)

// How the predicted_ttft scorer turns its predictions into scores, in two
// regimes of the fleet.
//
// Below saturation the fleet has room for its requests at their mean
// footprint; a preemption there is avoidable waste, so a candidate costs
// its predicted TTFT plus the recompute it risks. Where several are about
// as good (within BalanceWithin of the best) the one whose requests need
// the least KV is preferred: a decode step's cost grows with its batch,
// so even batches make the most tokens.
//
// Saturated (the requests on the fleet need more than SaturatedDemand of
// its KV cache at their mean footprint), every pod queues or preempts
// whatever the pick, and the recompute term only sends requests to queues
// behind full pods. A candidate then costs its predicted TTFT alone, and
// among near ties (within StaggerWithin) the pod picked most recently
// keeps the request: new requests go to one pod at a time, so the pods'
// requests start, and end, at different times. Balanced placement keeps
// the pods in phase: they fill and drain together, and in the windows
// where all are full, a new request queues wherever it goes.
//
// That alone leaves the first wave to chance: a burst into an empty fleet
// spreads evenly, all its requests start together, and the pods stay in
// phase from then on. So while a burst fills the fleet (less than half its
// KV cache in use) with requests that, started together, would need more
// than SaturatedDemand of it at their ends, each pod's cost is also divided
// by a planned weight, from 1-skew to 1+skew by the rank of its address
// (the same on every picker replica). Costs grow with a pod's queue, so pod
// r takes a share of the burst in proportion to its weight: the pods'
// loads, and so their preemptions and ends, differ by plan, and the
// placement above keeps them apart. The weights bound the unevenness: a
// request goes where its predicted cost is at most (1+skew)/(1-skew) times
// the best, never behind a herd. Once the fleet has filled, every pod
// weighs 1 again.

// saturated reports whether the candidates' requests need more than
// threshold of their KV caches (false with threshold 0, or with no
// cache size known).
func saturated(cands []Candidate, threshold float64) bool {
	share := demandShare(cands)
	return threshold > 0 && share > 0 && share >= threshold
}

// staggering reports whether a burst is filling the fleet towards
// saturation: its requests would need more than threshold of the KV caches
// at their ends (in phase, as they started), and less than belowUse of
// the caches is in use yet.
func staggering(cands []Candidate, threshold, belowUse float64) bool {
	peak, used, capacity := 0.0, 0.0, 0.0
	for i := range cands {
		if c := &cands[i]; c.KVCapacity > 0 && c.S != nil {
			peak += c.KVPeak
			used += c.S.KVCacheUsage * c.KVCapacity
			capacity += c.KVCapacity
		}
	}
	return threshold > 0 && capacity > 0 && peak >= threshold*capacity && used < belowUse*capacity
}

// demandShare is the KV the candidates' requests need at their mean
// footprint over their KV caches (0: no cache size known).
func demandShare(cands []Candidate) float64 {
	demand, capacity := 0.0, 0.0
	for i := range cands {
		if cands[i].KVCapacity > 0 {
			demand += cands[i].KVDemand
			capacity += cands[i].KVCapacity
		}
	}
	if capacity == 0 {
		return 0
	}
	return demand / capacity
}

// placementCost is what a candidate costs: its predicted TTFT, plus the
// recompute it risks unless the fleet is saturated, over its weight.
func placementCost(c *Candidate, saturated bool, weight float64) float64 {
	if saturated {
		return c.PredictedTTFT / weight
	}
	return (c.PredictedTTFT + c.PredictedRecompute) / weight
}

// staggerWeights returns each candidate's weight, from 1-skew to 1+skew,
// evenly, by the rank of its address (nil, every weight 1, without skew).
func staggerWeights(cands []Candidate, skew float64) []float64 {
	n := len(cands)
	if skew <= 0 || n < 2 {
		return nil
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(cands[a].EP.Addr, cands[b].EP.Addr) })
	weights := make([]float64, n)
	for r, i := range order {
		weights[i] = 1 + skew*(2*float64(r)/float64(n-1)-1)
	}
	return weights
}

// weightOf is candidate i's weight (1 without weights).
func weightOf(weights []float64, i int) float64 {
	if weights == nil {
		return 1
	}
	return weights[i]
}

// preferred is the candidate that takes a near tie (-1: none): among
// those costing at most (1+within) x best, the most recently picked when
// saturated, else the least KV demand.
func preferred(cands []Candidate, weights []float64, best, within float64, saturated bool) int {
	if within <= 0 {
		return -1
	}
	p := -1
	for i := range cands {
		c := &cands[i]
		if placementCost(c, saturated, weightOf(weights, i)) > best*(1+within) {
			continue
		}
		switch {
		case p < 0:
			p = i
		case saturated && c.LastPicked.After(cands[p].LastPicked):
			p = i
		case !saturated && c.KVDemand < cands[p].KVDemand:
			p = i
		}
	}
	return p
}

// placementScores writes least/cost for each candidate, the preferred
// one of a near tie scoring 1 and the rest of the tie just below; skew is
// the stagger's (0 when the fleet is not staggered).
func placementScores(cands []Candidate, scores []float64, sat bool, within, skew float64) {
	weights := staggerWeights(cands, skew)
	best := math.Inf(1)
	for i := range cands {
		best = min(best, placementCost(&cands[i], sat, weightOf(weights, i)))
	}
	p := preferred(cands, weights, best, within, sat)
	for i := range cands {
		t := placementCost(&cands[i], sat, weightOf(weights, i))
		switch {
		case i == p || t <= 0 || best <= 0:
			scores[i] = 1
		case p >= 0:
			scores[i] = min(best/t, nearTieScore)
		default:
			scores[i] = best / t
		}
	}
}

// nearTieScore is the most a candidate other than the preferred one
// scores when a near tie was broken.
const nearTieScore = 0.999
