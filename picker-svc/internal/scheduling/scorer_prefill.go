package scheduling

import "github.com/meshllm/meshllm/pickapi"

// PrefillScorer prefers the pod that will give the request its first token
// soonest, in prefill work: the prompt tokens queued there before it
// (InFlight.BacklogTokens) plus what of its own prompt the pod would have
// to compute (the prompt less the prefix it likely holds, PrefixBlocks).
// One unit for both, so a long cached prefix outweighs a short queue and a
// long queue outweighs a short prefix, without a weight to tune between
// them. Min-max normalised across the candidates.
type PrefillScorer struct{}

func init() { Register(PrefillScorer{}.Name(), noParams(PrefillScorer{})) }

// Name implements Plugin.
func (PrefillScorer) Name() string { return "prefill" }

// blockTokens is the tokens of one prefix block (pickapi.BlockSize bytes).
const blockTokens = pickapi.BlockSize / pickapi.BytesPerToken

// PrefillTokens is the prefill work PrefillScorer ranks c by for req.
func PrefillTokens(req *Request, c *Candidate) float64 {
	own := max(req.PromptTokens-c.PrefixBlocks*blockTokens, 0)
	return float64(c.InFlight.BacklogTokens + own)
}

// Score implements Scorer.
func (PrefillScorer) Score(req *Request, cands []Candidate, scores []float64) {
	minMax(cands, scores, func(c *Candidate) float64 { return PrefillTokens(req, c) })
}
