package scheduling

// OutstandingScorer prefers pods holding fewer requests: waiting, running,
// and this picker's picks the last scrape cannot show yet (InFlight).
// Normalised like QueueScorer (minMaxCount). In a closed loop (a client sends its next
// request when one ends) it sends the next request to the pod that just
// finished one, whose KV cache and batch slot are free: every pod keeps
// its share, and the request does not wait behind a pod whose batch is
// all near the end of its KV budget, as round robin's next pod may be.
type OutstandingScorer struct{}

func init() { Register(OutstandingScorer{}.Name(), noParams(OutstandingScorer{})) }

// Name implements Plugin.
func (OutstandingScorer) Name() string { return "outstanding" }

// Score implements Scorer.
func (OutstandingScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	minMaxCount(cands, scores, func(c *Candidate) float64 {
		return c.S.Waiting + c.S.Running + float64(c.InFlight.Requests)
	})
}
