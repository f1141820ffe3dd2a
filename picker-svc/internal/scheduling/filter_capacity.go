package scheduling

// CapacityFilter keeps the candidates that are not saturated (queue and KV
// cache under the thresholds). When every candidate is saturated it returns
// none and the scheduler keeps them all: shedding is decided elsewhere.
type CapacityFilter struct {
	Saturation Saturation
}

// Name implements Filter.
func (CapacityFilter) Name() string { return "capacity" }

// Filter implements Filter.
func (f CapacityFilter) Filter(_ *Request, cands []Candidate) []Candidate {
	keep := 0
	for i := range cands {
		if !f.Saturation.Saturated(cands[i].S) {
			keep++
		}
	}
	if keep == 0 || keep == len(cands) {
		if keep == 0 {
			return nil
		}
		return cands
	}
	// Compact in place only now that something is kept: the caller falls
	// back to the original set when nothing is.
	n := 0
	for i := range cands {
		if !f.Saturation.Saturated(cands[i].S) {
			cands[n] = cands[i]
			n++
		}
	}
	return cands[:n]
}
