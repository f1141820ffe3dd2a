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
// It owns one index per endpoint and a shortlist of the endpoints that
// last served each prompt start (prefixHolders), so that a pick probes the
// few indexes that can match rather than every candidate's. A pick adds
// the request's hashes to the chosen endpoint's index (PostPick), and an
// endpoint that leaves every pool takes its index with it.
type PrefixScorer struct {
	capacity int
	holders  *prefixHolders

	mu      sync.RWMutex
	indexes map[*scrape.Endpoint]*endpointIndex
	byID    []*endpointIndex // id-1 → index; nil where an endpoint left
	freeIDs []uint32
}

type endpointIndex struct {
	ep  *scrape.Endpoint
	id  uint32
	lru *PrefixLRU
}

// holderSlotsPerIndex sizes the holders table from the pool: one slot per
// 16 blocks an endpoint remembers (chains of 16 blocks, a 1 KiB prompt,
// on average before the table, not the pods, forgets first).
const holderSlotsPerIndex = 16

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
	return &PrefixScorer{capacity: capacity, holders: newPrefixHolders(0), indexes: map[*scrape.Endpoint]*endpointIndex{}}
}

// Name implements Plugin.
func (*PrefixScorer) Name() string { return "prefix" }

// Index returns ep's index, or nil if nothing was picked there yet.
func (p *PrefixScorer) Index(ep *scrape.Endpoint) *PrefixLRU {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if e := p.indexes[ep]; e != nil {
		return e.lru
	}
	return nil
}

// Prepare implements Preparer: each candidate's PrefixBlocks, for this
// scorer and for others that weigh what a pod would have to prefill. Only
// the endpoints that last served the prompt's first block are probed.
func (p *PrefixScorer) Prepare(req *Request, cands []Candidate, _ time.Time) {
	for i := range cands {
		cands[i].PrefixBlocks = 0
	}
	if len(req.PrefixHashes) == 0 {
		return
	}
	var ids [HoldersPerPrefix]uint32
	n := p.holders.get(req.PrefixHashes[0], &ids)
	if n == 0 {
		return
	}
	var held [HoldersPerPrefix]*endpointIndex
	p.mu.RLock()
	m := 0
	for _, id := range ids[:n] {
		if int(id) <= len(p.byID) && p.byID[id-1] != nil {
			held[m] = p.byID[id-1]
			m++
		}
	}
	p.mu.RUnlock()
	for i := range cands {
		for _, e := range held[:m] {
			if cands[i].EP == e.ep {
				cands[i].PrefixBlocks = e.lru.Match(req.PrefixHashes)
				break
			}
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
	p.mu.RLock()
	e := p.indexes[c.EP]
	p.mu.RUnlock()
	if e == nil {
		e = p.join(c.EP)
	}
	e.lru.Add(req.PrefixHashes)
	p.holders.add(req.PrefixHashes[0], e.id)
}

// join gives ep an index and an id, and grows the holders table with the
// pool.
func (p *PrefixScorer) join(ep *scrape.Endpoint) *endpointIndex {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.indexes[ep]; e != nil {
		return e
	}
	e := &endpointIndex{ep: ep, lru: NewPrefixLRU(p.capacity)}
	if k := len(p.freeIDs); k > 0 {
		e.id = p.freeIDs[k-1]
		p.freeIDs = p.freeIDs[:k-1]
		p.byID[e.id-1] = e
	} else {
		p.byID = append(p.byID, e)
		e.id = uint32(len(p.byID))
	}
	p.indexes[ep] = e
	p.holders.grow(len(p.indexes) * p.capacity / holderSlotsPerIndex)
	return e
}

// EndpointsRemoved implements EndpointRemover. The holders table may still
// name a removed id; it is reused by a later endpoint, whose own index then
// answers for it.
func (p *PrefixScorer) EndpointsRemoved(eps []*scrape.Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ep := range eps {
		if e := p.indexes[ep]; e != nil {
			delete(p.indexes, ep)
			p.byID[e.id-1] = nil
			p.freeIDs = append(p.freeIDs, e.id)
		}
	}
}
