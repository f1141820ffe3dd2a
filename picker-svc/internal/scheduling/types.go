// Package scheduling decides which endpoint serves a request: filters narrow
// the candidates, weighted scorers rate each in [0,1], a picker takes the
// best (ties at random) and ranks fallbacks. Weights live outside the
// scorers, per strategy, so a scorer only answers "how good is this pod for
// this request" on its own scale.
package scheduling

import (
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
)

// Member is an endpoint as one pool sees it: the shared scraper plus the
// pool's own approximate prefix index for it.
type Member struct {
	EP     *scrape.Endpoint
	Prefix *PrefixLRU
}

// NewMember pairs an endpoint with a fresh prefix index of capacity blocks.
func NewMember(ep *scrape.Endpoint, capacity int) *Member {
	return &Member{EP: ep, Prefix: NewPrefixLRU(capacity)}
}

// Candidate is a member with the snapshot judged for one pick.
type Candidate struct {
	M *Member
	S *scrape.Snapshot
}

// Request is what scorers and filters know about the request being placed.
type Request struct {
	// TargetModel is the model or adapter that will serve the request.
	TargetModel  string
	Criticality  pickapi.Criticality
	PrefixHashes []uint64
}

// Filter drops candidates that should not serve req. It may reorder or
// reuse cands' backing array; returning none is allowed (the scheduler then
// keeps the unfiltered set: filters express preferences strong enough to
// override scores, never a reason to fail a request).
type Filter interface {
	Name() string
	Filter(req *Request, cands []Candidate) []Candidate
}

// Scorer writes into scores[i] (len(scores) == len(cands)) how well cands[i]
// suits req, in [0,1], higher is better.
type Scorer interface {
	Name() string
	Score(req *Request, cands []Candidate, scores []float64)
}

// Picker chooses among scored candidates: out[0] is the pick, the rest are
// ranked fallbacks (at most len(out)). It returns how many it wrote.
type Picker interface {
	Pick(cands []Candidate, totals []float64, out []int) int
}
