package scheduling

// KVCacheScorer prefers free KV cache: a pod near full KV cache preempts
// (recomputes) running requests when it admits more. The usage is a
// fraction, so the score is absolute: 1 - usage, where usage is projected
// with the prompts of the pod's in-flight picks (ProjectedKV).
type KVCacheScorer struct{}

func init() { Register(KVCacheScorer{}.Name(), noParams(KVCacheScorer{})) }

// Name implements Plugin.
func (KVCacheScorer) Name() string { return "kv_cache" }

// Score implements Scorer.
func (KVCacheScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	for i := range cands {
		scores[i] = 1 - min(max(ProjectedKV(&cands[i]), 0), 1)
	}
}
