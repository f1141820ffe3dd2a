package scheduling

import (
	"slices"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// PrefixState is a prefix index as a replica hands it to a peer that
// starts: what each endpoint likely holds, and which endpoints last served
// each prompt start. Endpoints are named by address, which every replica
// discovers alike.
type PrefixState struct {
	// Blocks holds, per endpoint address, the live blocks of its index,
	// least recently used first.
	Blocks map[string][]uint64
	// Holders lists prompt starts, least recently served first, each with
	// its holders most recent first.
	Holders []PrefixHolders
}

// PrefixHolders is one prompt start and the endpoints that last served it.
type PrefixHolders struct {
	Hash  uint64
	Addrs []string
}

// liveBySeq returns t's live slots, least recently used first.
func liveBySeq[V any](t *slotTable[V]) []*slot[V] {
	var out []*slot[V]
	for i := range t.slots {
		if s := &t.slots[i]; t.live(s) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *slot[V]) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	return out
}

// ExportState returns the index: at most maxBlocks blocks in all (the most
// recent of each endpoint's, shared evenly) and the maxHolders most
// recently served prompt starts.
func (p *PrefixScorer) ExportState(maxBlocks, maxHolders int) PrefixState {
	p.mu.RLock()
	idx := make([]*endpointIndex, 0, len(p.indexes))
	for _, e := range p.indexes {
		idx = append(idx, e)
	}
	addrByID := make(map[uint32]string, len(p.byID))
	for _, e := range p.byID {
		if e != nil {
			addrByID[e.id] = e.ep.Addr
		}
	}
	p.mu.RUnlock()
	st := PrefixState{Blocks: make(map[string][]uint64, len(idx))}
	if len(idx) == 0 || maxBlocks <= 0 {
		return st
	}
	per := max(maxBlocks/len(idx), 1)
	for _, e := range idx {
		e.lru.mu.Lock()
		live := liveBySeq(&e.lru.table)
		live = live[max(len(live)-per, 0):]
		hashes := make([]uint64, len(live))
		for i, s := range live {
			hashes[i] = s.hash
		}
		e.lru.mu.Unlock()
		st.Blocks[e.ep.Addr] = hashes
	}
	p.holders.mu.Lock()
	live := liveBySeq(&p.holders.table)
	live = live[max(len(live)-maxHolders, 0):]
	for _, s := range live {
		h := PrefixHolders{Hash: s.hash}
		for _, id := range s.val {
			if id == 0 {
				break
			}
			if a, ok := addrByID[id]; ok {
				h.Addrs = append(h.Addrs, a)
			}
		}
		if len(h.Addrs) > 0 {
			st.Holders = append(st.Holders, h)
		}
	}
	p.holders.mu.Unlock()
	return st
}

// ImportState adds a peer's index to this one, as if the peer's picks had
// been made here just now (in the peer's order). Addresses lookup does not
// know (endpoints this replica has not discovered) are skipped.
func (p *PrefixScorer) ImportState(st PrefixState, lookup func(addr string) *scrape.Endpoint) {
	for addr, hashes := range st.Blocks {
		ep := lookup(addr)
		if ep == nil || len(hashes) == 0 {
			continue
		}
		e := p.join(ep)
		e.lru.mu.Lock()
		for _, h := range hashes {
			e.lru.table.touch(h)
		}
		e.lru.mu.Unlock()
	}
	for _, h := range st.Holders {
		for _, addr := range slices.Backward(h.Addrs) {
			if ep := lookup(addr); ep != nil {
				p.holders.add(h.Hash, p.join(ep).id)
			}
		}
	}
}
