package scheduling

import (
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// InFlightTracker counts, for every endpoint, the picks it answered that the
// endpoint's last scrape cannot show yet, and writes them into each
// candidate's InFlight. Without it every pick between two scrapes (50 ms)
// sees the same snapshot, and a burst lands on whichever pod looked best.
//
// A pick made at t is taken as visible in a scrape sent after t + Grace:
// Grace covers the request's way from the picker's answer to the pod's
// queue (filter, Envoy, vLLM's tokenizer). Counting a pick a little too
// long only makes its pod look one request busier for Grace.
//
// A pick whose request has ended (the filter reports it on its next pick,
// RequestsDone) stops counting at once: without that, a run of short
// requests, each over before the next is picked, made their pod look as
// busy as all of them together until its next scrape, and a pod with a
// real queue then looked the better one.
//
// Locks: a podPicks' mu may be held while taking the tracker's, never the
// other way round.
type InFlightTracker struct {
	Grace time.Duration

	mu   sync.Mutex
	pods map[*scrape.Endpoint]*podPicks
	byID map[uint64]*podPicks // the picks in some pod's picks, by id
}

type podPicks struct {
	mu    sync.Mutex
	picks []recentPick // in pick order, not yet in a scrape
	// all holds the last maxPrefillHistory (to twice that) picks, scraped
	// or not, for BacklogTokens; compacted by halves, amortised O(1).
	all []recentPick
	// Picks ever made, and the pod's first-token count that matched none
	// of them outstanding: picked - (firstTokens - base) is how many of
	// them have no first token yet.
	picked       float64
	base, lastFT float64
	// done counts picks reported ended while still in picks: picked - done
	// bounds how many can be before their first token.
	done float64
}

type recentPick struct {
	id     uint64
	at     time.Time
	tokens int
}

// DefaultInFlightGrace is InFlightTracker's default Grace.
const DefaultInFlightGrace = 50 * time.Millisecond

// maxRecentPicks bounds what one endpoint remembers whatever its scrapes
// do (an endpoint whose scrapes stop is not eligible long anyway).
const maxRecentPicks = 4096

func init() {
	Register("in_flight", func(params json.RawMessage) (Plugin, error) {
		p := struct {
			GraceMS float64 `json:"graceMs"`
		}{GraceMS: float64(DefaultInFlightGrace / time.Millisecond)}
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		if !(p.GraceMS >= 0 && p.GraceMS <= 60_000) {
			return nil, errors.New("graceMs must be in [0, 60000]")
		}
		return NewInFlightTracker(time.Duration(p.GraceMS * float64(time.Millisecond))), nil
	})
}

// NewInFlightTracker returns a tracker with the given grace.
func NewInFlightTracker(grace time.Duration) *InFlightTracker {
	return &InFlightTracker{Grace: grace, pods: map[*scrape.Endpoint]*podPicks{}, byID: map[uint64]*podPicks{}}
}

// Name implements Plugin.
func (*InFlightTracker) Name() string { return "in_flight" }

func (t *InFlightTracker) pod(ep *scrape.Endpoint, create bool) *podPicks {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pods[ep]
	if p == nil && create {
		p = &podPicks{}
		t.pods[ep] = p
	}
	return p
}

// Prepare implements Preparer.
func (t *InFlightTracker) Prepare(_ *Request, cands []Candidate, _ time.Time) {
	for i := range cands {
		c := &cands[i]
		c.InFlight = InFlight{}
		p := t.pod(c.EP, false)
		if p == nil {
			continue
		}
		seen := c.S.RequestedAt.Add(-t.Grace) // picks up to here are in the snapshot
		if c.S.RequestedAt.IsZero() {
			seen = c.S.ScrapedAt.Add(-t.Grace)
		}
		p.mu.Lock()
		drop := 0
		for drop < len(p.picks) && !p.picks[drop].at.After(seen) {
			drop++
		}
		if drop > 0 {
			t.forget(p.picks[:drop])
			p.picks = append(p.picks[:0], p.picks[drop:]...)
		}
		c.InFlight.Requests = len(p.picks)
		for _, r := range p.picks {
			c.InFlight.PromptTokens += r.tokens
		}
		c.InFlight.BeforeFirstToken = p.beforeFirstToken(c.S, c.InFlight.Requests)
		for i := len(p.all) - 1; i >= 0 && len(p.all)-i <= c.InFlight.BeforeFirstToken; i-- {
			c.InFlight.BacklogTokens += p.all[i].tokens
		}
		p.mu.Unlock()
	}
}

// maxPrefillHistory bounds the picks kept to sum BacklogTokens: at least
// every pick that can be before its first token.
const maxPrefillHistory = 1024

// maxPrefilling bounds how many requests one pod prefills at once beyond
// those it shows waiting: vLLM's per-step token budget
// (max_num_batched_tokens) admits only a few prompts a step. It keeps a
// pick that never reached the pod (the client went away, the gateway
// failed open) from counting for ever.
const maxPrefilling = 4

// beforeFirstToken is how many of this picker's picks for the pod have no
// first token yet (waiting, prefilling, or on their way), from the pod's
// TTFT count. A count that runs ahead of the picks (other gateways' traffic,
// a restarted pod) moves the base so that the answer never goes below what
// the scrape cannot show yet; p.mu held.
func (p *podPicks) beforeFirstToken(s *scrape.Snapshot, unscraped int) int {
	if !s.HasFirstTokens {
		return int(s.Waiting) + unscraped
	}
	if s.FirstTokens < p.lastFT { // counter reset
		p.base = s.FirstTokens - (p.picked - float64(unscraped))
	}
	p.lastFT = s.FirstTokens
	n := p.picked - (s.FirstTokens - p.base)
	if n < float64(unscraped) {
		p.base += float64(unscraped) - n
		n = float64(unscraped)
	}
	return int(min(n, p.picked-p.done, s.Waiting+float64(unscraped)+maxPrefilling))
}

// PostPick implements PostPicker.
// A pick's prefill work is its prompt less the prefix the pod likely holds.
func (t *InFlightTracker) PostPick(req *Request, c *Candidate, now time.Time) {
	picked := c.EP
	work := max(req.PromptTokens-c.PrefixBlocks*blockTokens, 0)
	p := t.pod(picked, true)
	if s := picked.Snapshot(); s != nil {
		p.mu.Lock()
		if p.picked == 0 && p.base == 0 && s.HasFirstTokens {
			p.base, p.lastFT = s.FirstTokens, s.FirstTokens // the pod's history before this picker
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	if len(p.picks) == maxRecentPicks {
		t.forget(p.picks[:1])
		p.picks = append(p.picks[:0], p.picks[1:]...)
	}
	p.picks = insertByTime(p.picks, recentPick{id: req.PickID, at: now, tokens: req.PromptTokens})
	if req.PickID != 0 {
		t.mu.Lock()
		t.byID[req.PickID] = p
		t.mu.Unlock()
	}
	if len(p.all) == 2*maxPrefillHistory {
		p.all = append(p.all[:0], p.all[maxPrefillHistory:]...)
	}
	p.all = append(p.all, recentPick{at: now, tokens: work})
	p.picked++
	p.mu.Unlock()
}

// insertByTime adds r to picks kept in time order: at the end for this
// picker's own picks, a little before it for a peer replica's, which
// arrive a few milliseconds after they were made (Prepare drops picks
// from the front, oldest first).
func insertByTime(picks []recentPick, r recentPick) []recentPick {
	i := len(picks)
	for i > 0 && picks[i-1].at.After(r.at) {
		i--
	}
	picks = append(picks, r)
	if i < len(picks)-1 {
		copy(picks[i+1:], picks[i:])
		picks[i] = r
	}
	return picks
}

// forget drops picks' ids from byID; their pod's mu held.
func (t *InFlightTracker) forget(picks []recentPick) {
	t.mu.Lock()
	for _, r := range picks {
		delete(t.byID, r.id)
	}
	t.mu.Unlock()
}

// RequestsDone implements RequestEnder: a pick whose request ended no
// longer counts as in flight. Ids of picks a scrape already covers (or
// that this tracker never made) change nothing.
func (t *InFlightTracker) RequestsDone(ends []RequestEnd, _ time.Time) {
	for _, e := range ends {
		id := e.ID
		t.mu.Lock()
		p := t.byID[id]
		delete(t.byID, id)
		t.mu.Unlock()
		if p == nil {
			continue
		}
		p.mu.Lock()
		for i := range p.picks {
			if p.picks[i].id == id {
				p.picks = append(p.picks[:i], p.picks[i+1:]...)
				p.done++
				break
			}
		}
		p.mu.Unlock()
	}
}

// EndpointsRemoved implements EndpointRemover.
func (t *InFlightTracker) EndpointsRemoved(eps []*scrape.Endpoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ep := range eps {
		if p := t.pods[ep]; p != nil {
			for id, q := range t.byID {
				if q == p {
					delete(t.byID, id)
				}
			}
		}
		delete(t.pods, ep)
	}
}
