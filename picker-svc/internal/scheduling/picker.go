package scheduling

import (
	"math/rand/v2"
	"sync"
)

// MaxScorePicker takes the highest total score, breaking ties at random so
// equally good pods share load instead of the first one taking it all, and
// ranks the next best as fallbacks. The zero value draws from the
// runtime's source (lock-free); NewMaxScorePicker injects one.
type MaxScorePicker struct{ rng *lockedRand }

type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

// NewMaxScorePicker returns a picker breaking ties with rng (nil: the
// runtime's source), for reproducible tests and simulations.
func NewMaxScorePicker(rng *rand.Rand) MaxScorePicker {
	if rng == nil {
		return MaxScorePicker{}
	}
	return MaxScorePicker{rng: &lockedRand{r: rng}}
}

func init() { Register(MaxScorePicker{}.Name(), noParams(MaxScorePicker{})) }

// Name implements Plugin.
func (MaxScorePicker) Name() string { return "max_score" }

// maxRanked bounds len(out) a Pick honours (1 + pickapi.MaxFallbacks).
const maxRanked = 16

// Pick implements Picker.
func (p MaxScorePicker) Pick(cands []Candidate, totals []float64, out []int) int {
	k := min(len(out), len(cands), maxRanked)
	if k == 0 {
		return 0
	}
	if p.rng != nil {
		p.rng.mu.Lock()
		defer p.rng.mu.Unlock()
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
		var key uint32
		if p.rng != nil {
			key = p.rng.r.Uint32()
		} else {
			key = rand.Uint32()
		}
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
