package scheduling

import "encoding/json"

// CapacityFilter keeps the candidates that are not saturated (queue and KV
// cache, with in-flight picks, under the thresholds). When every candidate
// is saturated it returns none and the scheduler keeps them all: shedding
// is decided elsewhere.
type CapacityFilter struct {
	Saturation Saturation
}

// DefaultCapacity is CapacityFilter's default: the upstream's saturation
// (queue > 5 or KV > 0.8).
var DefaultCapacity = Saturation{Queue: 5, KV: 0.8}

func init() {
	Register(CapacityFilter{}.Name(), func(params json.RawMessage) (Plugin, error) {
		f := CapacityFilter{Saturation: DefaultCapacity}
		if err := decodeParams(params, &f.Saturation); err != nil {
			return nil, err
		}
		return f, nil
	})
}

// Name implements Plugin.
func (CapacityFilter) Name() string { return "capacity" }

// Filter implements Filter.
func (f CapacityFilter) Filter(_ *Request, cands []Candidate) []Candidate {
	keep := 0
	for i := range cands {
		if !f.Saturation.Saturated(&cands[i]) {
			keep++
		}
	}
	if keep == 0 {
		return nil
	}
	if keep == len(cands) {
		return cands
	}
	// Compact in place only now that something is kept: the caller falls
	// back to the original set when nothing is.
	n := 0
	for i := range cands {
		if !f.Saturation.Saturated(&cands[i]) {
			cands[n] = cands[i]
			n++
		}
	}
	return cands[:n]
}
