package scheduling

import "github.com/meshllm/meshllm/picker-svc/internal/scrape"

// LoRA affinity scores. Loading an adapter costs time and may evict another
// one that running requests need, so prefer pods that already hold it.
const (
	LoRARunning  = 1.0 // adapter resident and serving
	LoRAWaiting  = 0.8 // requests for it are queued: it is being loaded
	LoRAFreeSlot = 0.6 // can load it without evicting (fewer than max_lora active)
	LoRAEvict    = 0.0 // would have to evict an adapter
)

// LoRAScorer is LoRA affinity. A request for the pod's base model, or for a
// pod that does not serve LoRA (max_lora 0), scores 1: affinity is moot.
type LoRAScorer struct{}

func init() { Register(LoRAScorer{}.Name(), noParams(LoRAScorer{})) }

// Name implements Plugin.
func (LoRAScorer) Name() string { return "lora" }

// Score implements Scorer.
func (LoRAScorer) Score(req *Request, cands []Candidate, scores []float64) {
	for i := range cands {
		s := cands[i].S
		switch {
		case s.MaxLoRA == 0 || req.TargetModel == s.BaseModel || req.TargetModel == "":
			scores[i] = 1
		default:
			switch s.Adapter(req.TargetModel) {
			case scrape.AdapterRunning:
				scores[i] = LoRARunning
			case scrape.AdapterWaiting:
				scores[i] = LoRAWaiting
			default:
				if s.ActiveAdapters() < s.MaxLoRA {
					scores[i] = LoRAFreeSlot
				} else {
					scores[i] = LoRAEvict
				}
			}
		}
	}
}
