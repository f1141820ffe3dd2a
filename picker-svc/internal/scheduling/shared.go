package scheduling

import (
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// Picker replicas route as one when each learns from the others' picks what
// it learns from its own: the stateful plugins (the in-flight counts, the
// prefix index) learn from PostPick and RequestsDone, so a peer's pick is
// replayed through the same hooks. The scheduler reports its own picks and
// the ends reported to it to an observer (the replica layer, which ships
// them), and applies what peers ship without reporting it again.

// PickRecord is one pick as a peer replica replays it.
type PickRecord struct {
	ID       uint64
	Strategy pickapi.Strategy // the profile whose plugins learned from the pick
	Endpoint *scrape.Endpoint
	At       time.Time
	// TargetModel and MaxTokens are the request's, for the plugins that
	// forecast its output (predicted_ttft).
	TargetModel string
	MaxTokens   int
	// PromptTokens is the request's estimated prompt; PrefixBlocks how
	// many of its leading blocks the picked endpoint likely held.
	PromptTokens int
	PrefixBlocks int
	// PrefixHashes is the request's hash chain when the profile keeps a
	// prefix index (else nil). In PickMade it is the request's own slice:
	// copy it to keep it.
	PrefixHashes []uint64
}

// PickObserver learns of the picks a scheduler makes and of the request
// ends reported to it; not of what ApplyPeerPick and ApplyPeerEnds apply.
// Its methods run on the pick path: they must be quick and not block.
type PickObserver interface {
	PickMade(r PickRecord)
	RequestsEnded(ids []uint64)
}

// SetObserver sets the observer of picks and ends; call it before the
// scheduler picks.
func (s *Scheduler) SetObserver(o PickObserver) { s.observer = o }

// prefixLearner marks plugins that learn from a pick's prefix hashes.
type prefixLearner interface{ learnsPrefixes() }

func (*PrefixScorer) learnsPrefixes() {}

// record is the pick of req on c at now, as peers replay it.
func (p *profile) record(strategy pickapi.Strategy, req *Request, c *Candidate, now time.Time) PickRecord {
	r := PickRecord{ID: req.PickID, Strategy: strategy, Endpoint: c.EP, At: now, TargetModel: req.TargetModel,
		MaxTokens: req.MaxTokens, PromptTokens: req.PromptTokens, PrefixBlocks: c.PrefixBlocks}
	for _, pp := range p.postPickers {
		if _, ok := pp.(prefixLearner); ok {
			r.PrefixHashes = req.PrefixHashes
			break
		}
	}
	return r
}

// ApplyPeerPick replays a peer replica's pick through the post-pick hooks
// of its profile, as if this scheduler had made it at r.At.
func (s *Scheduler) ApplyPeerPick(r *PickRecord) {
	prof := s.profiles[r.Strategy]
	if prof == nil {
		prof = s.profiles[pickapi.DefaultStrategy]
	}
	if prof == nil || r.Endpoint == nil {
		return
	}
	req := Request{PrefixHashes: r.PrefixHashes, PromptTokens: r.PromptTokens, PickID: r.ID, TargetModel: r.TargetModel,
		MaxTokens: r.MaxTokens}
	c := Candidate{EP: r.Endpoint, S: r.Endpoint.Snapshot(), PrefixBlocks: r.PrefixBlocks}
	s.decide.Lock()
	defer s.decide.Unlock()
	for _, p := range prof.postPickers {
		p.PostPick(&req, &c, r.At)
	}
}

// ApplyPeerEnds takes request ends a peer replica was told of.
func (s *Scheduler) ApplyPeerEnds(ids []uint64, now time.Time) {
	ends := make([]RequestEnd, len(ids))
	for i, id := range ids {
		ends[i] = RequestEnd{ID: id, CompletionTokens: -1}
	}
	for _, e := range s.enders {
		e.RequestsDone(ends, now)
	}
}
