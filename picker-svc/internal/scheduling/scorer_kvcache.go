package scheduling

// KVCacheScorer prefers free KV cache: a pod near full KV cache preempts
// (recomputes) running requests when it admits more. The usage is already a
// fraction, so the score is absolute: 1 - usage.
type KVCacheScorer struct{}

// Name implements Scorer.
func (KVCacheScorer) Name() string { return "kv_cache" }

// Score implements Scorer.
func (KVCacheScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	for i := range cands {
		scores[i] = 1 - min(max(cands[i].S.KVCacheUsage, 0), 1)
	}
}
