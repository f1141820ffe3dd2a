package scheduling

// QueueScorer prefers pods with fewer requests ahead of this one's prefill:
// a waiting request is latency the client pays before its first token. The
// queue is the pod's waiting requests plus the picks its last scrape cannot
// show yet, or, with the in_flight plugin and a pod that exports its TTFT
// count, the picks still before their first token (being prefilled ones
// included, which vLLM counts as running) when that is more. Scores are
// normalised across the candidates by minMaxCount (shortest queue 1, all
// equal 1), so the scorer ranks relative load whatever the absolute numbers.
type QueueScorer struct{}

func init() { Register(QueueScorer{}.Name(), noParams(QueueScorer{})) }

// Name implements Plugin.
func (QueueScorer) Name() string { return "queue" }

// Score implements Scorer.
func (QueueScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	minMaxCount(cands, scores, func(c *Candidate) float64 { return QueueLength(c) })
}

// QueueLength is the queue QueueScorer ranks by.
func QueueLength(c *Candidate) float64 {
	return max(c.S.Waiting+float64(c.InFlight.Requests), float64(c.InFlight.BeforeFirstToken))
}

// minMaxCount is minMax for counts of requests: 1 - (v-min)/(max-min+1), so
// that one request more is not the whole range (a pod's own pick of a few
// milliseconds ago, still counted, must not outweigh a full KV cache
// elsewhere), while ten more still nearly is.
func minMaxCount(cands []Candidate, scores []float64, v func(*Candidate) float64) {
	lo, hi := values(cands, scores, v)
	for i, x := range scores[:len(cands)] {
		scores[i] = 1 - (x-lo)/(hi-lo+1)
	}
}

// minMax writes 1 - (v-min)/(max-min) for each candidate's value.
func minMax(cands []Candidate, scores []float64, v func(*Candidate) float64) {
	lo, hi := values(cands, scores, v)
	for i, x := range scores[:len(cands)] {
		if hi == lo {
			scores[i] = 1
		} else {
			scores[i] = 1 - (x-lo)/(hi-lo)
		}
	}
}

// values writes each candidate's value into scores (v is called once per
// candidate) and returns the smallest and largest (0, 0 for none).
func values(cands []Candidate, scores []float64, v func(*Candidate) float64) (lo, hi float64) {
	for i := range cands {
		x := v(&cands[i])
		scores[i] = x
		if i == 0 {
			lo, hi = x, x
		}
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}
