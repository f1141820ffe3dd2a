package scheduling

// PrefixScorer scores the longest prefix of the request's block hashes that
// the pod recently served (see PrefixLRU), as a fraction of the request's
// blocks: 1 means the whole hashed prompt is likely in the pod's prefix
// cache. Requests without hashes score 0 everywhere (no preference).
type PrefixScorer struct{}

// Name implements Scorer.
func (PrefixScorer) Name() string { return "prefix" }

// Score implements Scorer.
func (PrefixScorer) Score(req *Request, cands []Candidate, scores []float64) {
	n := len(req.PrefixHashes)
	for i := range cands {
		if n == 0 || cands[i].M.Prefix == nil {
			scores[i] = 0
			continue
		}
		scores[i] = float64(cands[i].M.Prefix.Match(req.PrefixHashes)) / float64(n)
	}
}
