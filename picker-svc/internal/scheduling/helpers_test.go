package scheduling

import (
	"fmt"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

var t0 = time.Unix(1_700_000_000, 0)

// endpoint i holding snapshot s (scraped at t0 unless s says otherwise).
func endpoint(i int, s scrape.Snapshot) *scrape.Endpoint {
	ep := scrape.NewEndpoint(fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250+1), scrape.Config{})
	if s.ScrapedAt.IsZero() {
		s.ScrapedAt = t0
	}
	if s.RequestedAt.IsZero() {
		s.RequestedAt = s.ScrapedAt
	}
	ep.Store(&s)
	return ep
}

func endpoints(snaps ...scrape.Snapshot) []*scrape.Endpoint {
	out := make([]*scrape.Endpoint, len(snaps))
	for i, s := range snaps {
		out[i] = endpoint(i, s)
	}
	return out
}

// cands builds candidates from snapshots.
func cands(snaps ...scrape.Snapshot) []Candidate {
	out := make([]Candidate, len(snaps))
	for i, ep := range endpoints(snaps...) {
		out[i] = Candidate{EP: ep, S: ep.Snapshot()}
	}
	return out
}

func score(s Scorer, req *Request, c []Candidate) []float64 {
	out := make([]float64, len(c))
	for i := range out {
		out[i] = -1 // a scorer must write every slot
	}
	s.Score(req, c, out)
	return out
}

func mustNew(cfg Config) *Scheduler {
	s, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return s
}

func prefixOf(s *Scheduler) *PrefixScorer { return s.Plugin("prefix").(*PrefixScorer) }

// ends reports the picks ids ended, their output unknown.
func ends(ids ...uint64) []RequestEnd {
	out := make([]RequestEnd, len(ids))
	for i, id := range ids {
		out[i] = RequestEnd{ID: id, CompletionTokens: -1}
	}
	return out
}
