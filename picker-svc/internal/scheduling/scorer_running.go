package scheduling

// RunningScorer prefers pods with fewer requests in their running batch: a
// larger batch makes every decode step (every token) slower. Min-max
// normalised like QueueScorer. Not in the default profiles: equalising
// batches spreads load like round robin and gives up most of what placing
// by queue and KV wins (issue 10's traces).
type RunningScorer struct{}

func init() { Register(RunningScorer{}.Name(), noParams(RunningScorer{})) }

// Name implements Plugin.
func (RunningScorer) Name() string { return "running" }

// Score implements Scorer.
func (RunningScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	minMax(cands, scores, func(c *Candidate) float64 { return c.S.Running })
}
