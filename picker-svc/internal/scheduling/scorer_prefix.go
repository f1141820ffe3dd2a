package scheduling

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// PrefixScorer scores the longest prefix of the request's block hashes that
// the pod recently served (see PrefixLRU), as a fraction of the request's
// blocks: 1 means the whole hashed prompt is likely in the pod's prefix
// cache. Requests without hashes score 0 everywhere (no preference).
//
// It owns one index per endpoint: a pick adds the request's hashes to the
// chosen endpoint's index (PostPick), and an endpoint that leaves every
// pool takes its index with it.
type PrefixScorer struct {
	capacity int

	mu      sync.RWMutex
	indexes map[*scrape.Endpoint]*PrefixLRU
}

func init() {
	Register("prefix", func(params json.RawMessage) (Plugin, error) {
		p := struct {
			Capacity int `json:"capacity"`
		}{Capacity: DefaultPrefixCapacity}
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		if p.Capacity < 1 || p.Capacity > 1<<22 {
			return nil, fmt.Errorf("capacity %d outside 1..%d", p.Capacity, 1<<22)
		}
		return NewPrefixScorer(p.Capacity), nil
	})
}

// NewPrefixScorer returns a scorer whose indexes hold capacity blocks each.
func NewPrefixScorer(capacity int) *PrefixScorer {
	return &PrefixScorer{capacity: capacity, indexes: map[*scrape.Endpoint]*PrefixLRU{}}
}

// Name implements Plugin.
func (*PrefixScorer) Name() string { return "prefix" }

// Index returns ep's index, or nil if nothing was picked there yet.
func (p *PrefixScorer) Index(ep *scrape.Endpoint) *PrefixLRU {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.indexes[ep]
}

// Prepare implements Preparer: each candidate's PrefixBlocks, for this
// scorer and for others that weigh what a pod would have to prefill.
func (p *PrefixScorer) Prepare(req *Request, cands []Candidate, _ time.Time) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for i := range cands {
		cands[i].PrefixBlocks = 0
		if idx := p.indexes[cands[i].EP]; idx != nil && len(req.PrefixHashes) > 0 {
			cands[i].PrefixBlocks = idx.Match(req.PrefixHashes)
		}
	}
}

// Score implements Scorer (PrefixBlocks comes from Prepare: a profile
// that weighs prefix lists it under prepare too).
func (p *PrefixScorer) Score(req *Request, cands []Candidate, scores []float64) {
	n := len(req.PrefixHashes)
	for i := range cands {
		if n == 0 {
			scores[i] = 0
			continue
		}
		scores[i] = float64(cands[i].PrefixBlocks) / float64(n)
	}
}

// PostPick implements PostPicker: whatever was picked will hold this
// prefix in its cache.
func (p *PrefixScorer) PostPick(req *Request, c *Candidate, _ time.Time) {
	if len(req.PrefixHashes) == 0 {
		return
	}
	picked := c.EP
	idx := p.Index(picked)
	if idx == nil {
		p.mu.Lock()
		if idx = p.indexes[picked]; idx == nil {
			idx = NewPrefixLRU(p.capacity)
			p.indexes[picked] = idx
		}
		p.mu.Unlock()
	}
	idx.Add(req.PrefixHashes)
}

// EndpointsRemoved implements EndpointRemover.
func (p *PrefixScorer) EndpointsRemoved(eps []*scrape.Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ep := range eps {
		delete(p.indexes, ep)
	}
}
