package scheduling

import "math/bits"

// probe is how many slots an insert or lookup examines (two cache lines of
// 16-byte slots).
const probe = 8

// slotTable is the fixed hash table under the prefix index (PrefixLRU) and
// the holders shortlist (prefixHolders): a power-of-two number of slots,
// bounded linear probing, no deletions. A slot is live while fewer than
// len(slots) new hashes were inserted after its last use; an insert that
// finds its probe window full of live slots overwrites the oldest. Memory
// is fixed, lookups touch at most probe slots, and there are no
// tombstones to slow misses down (a Go map with constant deletes did).
// Not safe for concurrent use: its owners lock.
type slotTable[V any] struct {
	slots []slot[V]
	shift uint8
	seq   uint64 // new hashes inserted so far; slot.seq == 0 means empty
}

// slot keeps val first: a zero-size V then adds no padding (16 bytes).
type slot[V any] struct {
	val  V
	hash uint64
	seq  uint64
}

// newSlotTable returns a table of at least size slots (rounded up to a
// power of two).
func newSlotTable[V any](size int) slotTable[V] {
	size = 1 << bits.Len(uint(size-1))
	return slotTable[V]{slots: make([]slot[V], size), shift: uint8(64 - bits.Len(uint(size-1)))}
}

// homeSlot is h's first slot in a table of 1<<(64-shift) slots: Fibonacci
// hashing, whose high bits are well mixed.
func homeSlot(h uint64, shift uint8) uint64 { return (h * 0x9e3779b97f4a7c15) >> shift }

func (t *slotTable[V]) live(s *slot[V]) bool {
	return s.seq != 0 && t.seq-s.seq < uint64(len(t.slots))
}

// find returns hash's live slot and true, else the slot an insert takes
// and false: an empty or expired one in the probe window, else the
// window's oldest.
func (t *slotTable[V]) find(hash uint64) (*slot[V], bool) {
	mask := uint64(len(t.slots) - 1)
	i := homeSlot(hash, t.shift)
	var victim *slot[V]
	for k := uint64(0); k < probe; k++ {
		s := &t.slots[(i+k)&mask]
		if s.hash == hash && t.live(s) {
			return s, true
		}
		switch {
		case victim == nil, !t.live(s) && t.live(victim):
			victim = s
		case t.live(victim) && t.live(s) && s.seq < victim.seq:
			victim = s
		}
	}
	return victim, false
}

// touch marks hash used now, inserting it (a new hash ages the others) if
// it was not live, and returns its slot and whether it was new.
func (t *slotTable[V]) touch(hash uint64) (*slot[V], bool) {
	s, found := t.find(hash)
	if !found {
		t.seq++
		*s = slot[V]{hash: hash}
	}
	s.seq = t.seq
	return s, !found
}

// contains reports whether hash is live.
func (t *slotTable[V]) contains(hash uint64) bool {
	_, found := t.find(hash)
	return found
}

// liveCount is the number of live slots (O(len(slots)): for tests).
func (t *slotTable[V]) liveCount() int {
	n := 0
	for i := range t.slots {
		if t.live(&t.slots[i]) {
			n++
		}
	}
	return n
}
