package scheduling

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// KVDemandScorer prefers the pod whose admitted requests will need the
// least KV cache at their peak: the sum, over this picker's picks for the
// pod that have not ended, of prompt + max_tokens (the tokens a request
// holds on its last step), as a fraction of the pod's KV cache. A pod's
// KV usage says where its requests are now; each of them still grows by
// up to its max_tokens, and a pod filled with new requests that all grow
// preempts them later.
//
// A pick stops counting when the filter reports its request ended
// (RequestsDone). Without a report the pod's scrape bounds it: a pod that
// shows R requests (running + waiting) holds at most R of this picker's
// scraped picks, so the oldest beyond that are dropped (those that ended
// first, as a rule). State is therefore bounded by the pods' own batch
// sizes. Requests of other gateways count only in the pod's KV usage (the
// kv_cache scorer).
//
// Scores are normalised across candidates: 1 - (d-min)/max(max-min,
// Floor), where d is the demand fraction; a spread smaller than Floor (5%
// of a pod's cache: one or two requests) never takes the whole range.
type KVDemandScorer struct {
	// Grace: a pick made at t is visible in a scrape sent after t + Grace
	// (as InFlightTracker).
	Grace time.Duration
	// DefaultOutput is the output counted for a request without
	// max_tokens.
	DefaultOutput int

	mu   sync.Mutex
	pods map[*scrape.Endpoint]*podDemand
	byID map[uint64]*podDemand
}

type podDemand struct {
	open   []openPick // in pick order
	tokens int        // sum of open[*].tokens
}

type openPick struct {
	id     uint64
	at     time.Time
	tokens int
}

const (
	// DefaultOutputTokens is KVDemandScorer's default DefaultOutput.
	DefaultOutputTokens = 256
	// kvDemandFloor is the smallest demand spread (a fraction of one pod's
	// cache) that spans the score's whole range.
	kvDemandFloor = 0.05
	// assumedKVTokens is the cache a pod that does not export its size is
	// taken to have (about an A10's with a 7B model).
	assumedKVTokens = 128 << 10
	// maxOpenPicks bounds one pod's open picks whatever its scrapes say.
	maxOpenPicks = 4096
)

func init() {
	Register("kv_demand", func(params json.RawMessage) (Plugin, error) {
		p := struct {
			GraceMS       float64 `json:"graceMs"`
			DefaultOutput int     `json:"defaultOutputTokens"`
		}{GraceMS: float64(DefaultInFlightGrace / time.Millisecond), DefaultOutput: DefaultOutputTokens}
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		if !(p.GraceMS >= 0 && p.GraceMS <= 60_000) {
			return nil, fmt.Errorf("graceMs %v outside [0, 60000]", p.GraceMS)
		}
		if p.DefaultOutput < 0 || p.DefaultOutput > 1<<20 {
			return nil, fmt.Errorf("defaultOutputTokens %d outside 0..%d", p.DefaultOutput, 1<<20)
		}
		return NewKVDemandScorer(time.Duration(p.GraceMS*float64(time.Millisecond)), p.DefaultOutput), nil
	})
}

// NewKVDemandScorer returns the plugin with the given grace and default
// output.
func NewKVDemandScorer(grace time.Duration, defaultOutput int) *KVDemandScorer {
	return &KVDemandScorer{Grace: grace, DefaultOutput: defaultOutput,
		pods: map[*scrape.Endpoint]*podDemand{}, byID: map[uint64]*podDemand{}}
}

// Name implements Plugin.
func (*KVDemandScorer) Name() string { return "kv_demand" }

func kvTokens(s *scrape.Snapshot) int {
	if n := s.NumGPUBlocks * s.BlockSize; n > 0 {
		return n
	}
	return assumedKVTokens
}

// Prepare implements Preparer: each candidate's KVDemand, after dropping
// the picks its scrape shows cannot still be there.
func (k *KVDemandScorer) Prepare(_ *Request, cands []Candidate, _ time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range cands {
		c := &cands[i]
		c.KVDemand = 0
		p := k.pods[c.EP]
		if p == nil {
			continue
		}
		seen := c.S.RequestedAt.Add(-k.Grace)
		if c.S.RequestedAt.IsZero() {
			seen = c.S.ScrapedAt.Add(-k.Grace)
		}
		unscraped := 0
		for j := len(p.open) - 1; j >= 0 && p.open[j].at.After(seen); j-- {
			unscraped++
		}
		if limit := int(c.S.Running+c.S.Waiting) + unscraped; len(p.open) > limit {
			k.drop(p, len(p.open)-limit)
		}
		c.KVDemand = float64(p.tokens) / float64(kvTokens(c.S))
	}
}

// drop forgets p's n oldest open picks; k.mu held.
func (k *KVDemandScorer) drop(p *podDemand, n int) {
	for _, o := range p.open[:n] {
		p.tokens -= o.tokens
		delete(k.byID, o.id)
	}
	p.open = append(p.open[:0], p.open[n:]...)
}

// Score implements Scorer (KVDemand comes from Prepare).
func (k *KVDemandScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	lo, hi := values(cands, scores, func(c *Candidate) float64 { return c.KVDemand })
	span := max(hi-lo, kvDemandFloor)
	for i, x := range scores[:len(cands)] {
		scores[i] = 1 - (x-lo)/span
	}
}

// PostPick implements PostPicker: the picked pod now holds the request's
// peak demand, capped at its whole cache (a request cannot hold more, and
// a client's huge max_tokens must not make its pod look full for long).
func (k *KVDemandScorer) PostPick(req *Request, c *Candidate, now time.Time) {
	out := req.MaxTokens
	if out <= 0 {
		out = k.DefaultOutput
	}
	total := kvTokens(c.S)
	tokens := min(max(req.PromptTokens, 0)+out, total)
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.pods[c.EP]
	if p == nil {
		p = &podDemand{}
		k.pods[c.EP] = p
	}
	if len(p.open) == maxOpenPicks {
		k.drop(p, 1)
	}
	p.open = append(p.open, openPick{id: req.PickID, at: now, tokens: tokens})
	p.tokens += tokens
	if req.PickID != 0 {
		k.byID[req.PickID] = p
	}
}

// RequestsDone implements RequestEnder: an ended request holds no KV.
func (k *KVDemandScorer) RequestsDone(ids []uint64, _ time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, id := range ids {
		p := k.byID[id]
		if p == nil {
			continue
		}
		delete(k.byID, id)
		for i := range p.open {
			if p.open[i].id == id {
				p.tokens -= p.open[i].tokens
				p.open = append(p.open[:i], p.open[i+1:]...)
				break
			}
		}
	}
}

// EndpointsRemoved implements EndpointRemover.
func (k *KVDemandScorer) EndpointsRemoved(eps []*scrape.Endpoint) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ep := range eps {
		if p := k.pods[ep]; p != nil {
			for _, o := range p.open {
				delete(k.byID, o.id)
			}
			delete(k.pods, ep)
		}
	}
}
