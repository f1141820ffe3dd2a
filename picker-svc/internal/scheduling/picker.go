package scheduling

import "math/rand/v2"

// MaxScorePicker takes the highest total score, breaking ties at random so
// equally good pods share load instead of the first one taking it all, and
// ranks the next best as fallbacks.
type MaxScorePicker struct{}

func init() { Register(MaxScorePicker{}.Name(), noParams(MaxScorePicker{})) }

// Name implements Plugin.
func (MaxScorePicker) Name() string { return "max_score" }

// maxRanked bounds len(out) a Pick honours (1 + pickapi.MaxFallbacks).
const maxRanked = 16

// Pick implements Picker.
func (MaxScorePicker) Pick(cands []Candidate, totals []float64, out []int) int {
	k := min(len(out), len(cands), maxRanked)
	if k == 0 {
		return 0
	}
	// One pass keeping the top k in order by (score, random tie key): each
	// candidate draws a random key, so among equal scores every order is
	// equally likely. No allocation, no sort of the whole set.
	var keys [maxRanked]uint32
	n := 0
	for i := range cands {
		t := totals[i]
		if n == k && t < totals[out[n-1]] {
			continue // common case: not in the top k
		}
		key := rand.Uint32()
		pos := n
		for pos > 0 {
			prev := out[pos-1]
			if t < totals[prev] || (t == totals[prev] && key <= keys[pos-1]) {
				break
			}
			pos--
		}
		if pos >= k {
			continue
		}
		if n < k {
			n++
		}
		copy(out[pos+1:n], out[pos:n-1])
		copy(keys[pos+1:n], keys[pos:n-1])
		out[pos], keys[pos] = i, key
	}
	return n
}
