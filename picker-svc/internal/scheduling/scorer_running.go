package scheduling

// RunningScorer prefers pods with fewer requests in their running batch: a
// larger batch makes every decode step (every token) slower. Min-max
// normalised like QueueScorer.
type RunningScorer struct{}

// Name implements Scorer.
func (RunningScorer) Name() string { return "running" }

// Score implements Scorer.
func (RunningScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	minMax(cands, scores, func(c *Candidate) float64 { return c.S.Running })
}
