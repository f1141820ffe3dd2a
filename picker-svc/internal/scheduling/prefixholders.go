package scheduling

import (
	"math/bits"
	"sync"
)

// HoldersPerPrefix is how many endpoints the prefix plugin remembers for
// one prompt start: the ones that served it most recently. A prefix that
// more endpoints have served is credited on the last HoldersPerPrefix of
// them only; that is enough pods to choose among, and it keeps a pick's
// prefix work independent of the pool's size.
const HoldersPerPrefix = 8

// minHolderSlots is the smallest holders table (a pool of a few pods).
const minHolderSlots = 4096

// prefixHolders maps the first block hash of a chain to the endpoints
// (by id, 1-based) that most recently served a chain starting there, most
// recent first. It lets a pick probe only those endpoints' indexes instead
// of every candidate's: probing 1,000 per-endpoint tables cost a cache
// miss each and was half of a PREFIX_CACHE pick.
//
// The table has PrefixLRU's shape (fixed slots, bounded probing, no
// deletions; a slot is live while fewer than len(slots) new first blocks
// were inserted after its last use). It is only a shortlist: the
// per-endpoint index still decides how much of the chain a holder has, so
// a stale id (a holder that forgot the prefix, or an id reused by a new
// endpoint) costs one probe and scores what that index says.
type prefixHolders struct {
	mu    sync.Mutex
	slots []holderSlot
	shift uint8
	seq   uint64 // new first blocks inserted so far; slot.seq == 0 means empty
}

type holderSlot struct {
	hash uint64
	seq  uint64
	ids  [HoldersPerPrefix]uint32 // most recent first; 0 ends the list
}

func newPrefixHolders(slots int) *prefixHolders {
	h := &prefixHolders{}
	h.resize(slots)
	return h
}

// resize sets the table to at least slots (a power of two) and re-inserts
// the live entries; h.mu held or h not yet shared.
func (h *prefixHolders) resize(slots int) {
	size := 1 << bits.Len(uint(max(slots, minHolderSlots)-1))
	old, oldN := h.slots, uint64(len(h.slots))
	h.slots = make([]holderSlot, size)
	h.shift = uint8(64 - bits.Len(uint(size-1)))
	for i := range old {
		if s := &old[i]; s.seq != 0 && h.seq-s.seq < oldN {
			*h.find(s.hash) = *s
		}
	}
}

// grow enlarges the table to at least slots; it never shrinks, so that
// a pool that loses pods keeps what the others hold.
func (h *prefixHolders) grow(slots int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if slots > len(h.slots) {
		h.resize(slots)
	}
}

func (h *prefixHolders) live(s *holderSlot) bool {
	return s.seq != 0 && h.seq-s.seq < uint64(len(h.slots))
}

// find returns hash's live slot, else the slot an insert takes: an empty
// or expired one in the probe window, else the window's oldest.
func (h *prefixHolders) find(hash uint64) *holderSlot {
	mask := uint64(len(h.slots) - 1)
	i := homeSlot(hash, h.shift)
	var victim *holderSlot
	for k := uint64(0); k < probe; k++ {
		s := &h.slots[(i+k)&mask]
		if s.hash == hash && h.live(s) {
			return s
		}
		switch {
		case victim == nil, !h.live(s) && h.live(victim):
			victim = s
		case h.live(victim) && h.live(s) && s.seq < victim.seq:
			victim = s
		}
	}
	return victim
}

// add records that endpoint id served a chain starting with hash.
func (h *prefixHolders) add(hash uint64, id uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.find(hash)
	if s.hash != hash || !h.live(s) {
		h.seq++
		*s = holderSlot{hash: hash}
	}
	s.seq = h.seq
	// Move id to the front; the oldest holder falls off a full list.
	last := len(s.ids) - 1
	for k, v := range s.ids {
		if v == id || v == 0 {
			last = k
			break
		}
	}
	copy(s.ids[1:last+1], s.ids[:last])
	s.ids[0] = id
}

// get copies hash's holders into ids, most recent first, and returns how
// many there are.
func (h *prefixHolders) get(hash uint64, ids *[HoldersPerPrefix]uint32) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.find(hash)
	if s.hash != hash || !h.live(s) {
		return 0
	}
	*ids = s.ids
	n := 0
	for n < len(ids) && ids[n] != 0 {
		n++
	}
	return n
}
