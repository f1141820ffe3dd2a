package scheduling

import (
	"fmt"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

var t0 = time.Unix(1_700_000_000, 0)

// cands builds candidates from snapshots (no members' prefix state).
func cands(snaps ...scrape.Snapshot) []Candidate {
	out := make([]Candidate, len(snaps))
	for i := range snaps {
		s := snaps[i]
		out[i] = Candidate{M: member(i, s), S: &s}
	}
	return out
}

func member(i int, s scrape.Snapshot) *Member {
	ep := scrape.NewEndpoint(fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250+1), scrape.Config{})
	if s.ScrapedAt.IsZero() {
		s.ScrapedAt = t0
	}
	ep.Store(&s)
	return NewMember(ep, 1024)
}

func score(s Scorer, req *Request, c []Candidate) []float64 {
	out := make([]float64, len(c))
	for i := range out {
		out[i] = -1 // a scorer must write every slot
	}
	s.Score(req, c, out)
	return out
}
