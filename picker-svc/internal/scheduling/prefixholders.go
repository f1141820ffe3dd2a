package scheduling

import "sync"

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
// The table is a slotTable, as PrefixLRU's (a slot is live while fewer
// than len(slots) new first blocks were inserted after its last use). It is only a shortlist: the
// per-endpoint index still decides how much of the chain a holder has, so
// a stale id (a holder that forgot the prefix, or an id reused by a new
// endpoint) costs one probe and scores what that index says.
type prefixHolders struct {
	mu    sync.Mutex
	table slotTable[[HoldersPerPrefix]uint32] // ids, most recent first; 0 ends the list
}

func newPrefixHolders(slots int) *prefixHolders {
	h := &prefixHolders{}
	h.resize(slots)
	return h
}

// resize sets the table to at least slots and re-inserts the live
// entries; h.mu held or h not yet shared.
func (h *prefixHolders) resize(slots int) {
	old := h.table
	h.table = newSlotTable[[HoldersPerPrefix]uint32](max(slots, minHolderSlots))
	h.table.seq = old.seq
	for i := range old.slots {
		if s := &old.slots[i]; old.live(s) {
			dst, _ := h.table.find(s.hash)
			*dst = *s
		}
	}
}

// grow enlarges the table to at least slots; it never shrinks, so that
// a pool that loses pods keeps what the others hold.
func (h *prefixHolders) grow(slots int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if slots > len(h.table.slots) {
		h.resize(slots)
	}
}

// add records that endpoint id served a chain starting with hash.
func (h *prefixHolders) add(hash uint64, id uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, _ := h.table.touch(hash)
	ids := &s.val
	// Move id to the front; the oldest holder falls off a full list.
	last := len(ids) - 1
	for k, v := range ids {
		if v == id || v == 0 {
			last = k
			break
		}
	}
	copy(ids[1:last+1], ids[:last])
	ids[0] = id
}

// get copies hash's holders into ids, most recent first, and returns how
// many there are.
func (h *prefixHolders) get(hash uint64, ids *[HoldersPerPrefix]uint32) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, found := h.table.find(hash)
	if !found {
		return 0
	}
	*ids = s.val
	n := 0
	for n < len(ids) && ids[n] != 0 {
		n++
	}
	return n
}
