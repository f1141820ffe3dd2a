package scheduling

import (
	"math/rand/v2"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
)

// ChooseTarget picks one of an InferenceModel's target models with
// probability proportional to its weight (canary splits). Weights are
// validated (non-negative, positive sum) when the object is read.
func ChooseTarget(targets []inference.Target) string {
	switch len(targets) {
	case 0:
		return ""
	case 1:
		return targets[0].Name
	}
	var total int64
	for _, t := range targets {
		total += int64(t.Weight)
	}
	if total <= 0 {
		return targets[0].Name
	}
	r := rand.Int64N(total)
	for _, t := range targets {
		r -= int64(t.Weight)
		if r < 0 {
			return t.Name
		}
	}
	return targets[len(targets)-1].Name
}
