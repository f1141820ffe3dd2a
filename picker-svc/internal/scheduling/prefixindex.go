package scheduling

import (
	"math/bits"
	"slices"
	"sync"
)

// DefaultPrefixCapacity is the default number of blocks remembered per
// endpoint: 8192 blocks of 64 bytes, about 130k tokens of recent prompts, in
// a 128 KiB table (128 MiB for 1,000 endpoints).
const DefaultPrefixCapacity = 8192

// probe is how many slots an insert or lookup examines (two cache lines).
const probe = 8

// PrefixLRU remembers which prefix blocks one endpoint recently served: the
// last Capacity distinct blocks, least recently used out first. A block
// served again (a cache hit) moves to the front without taking room, as in
// the pod's own cache: only new blocks age the others (counting hits as
// insertions made a pod that served one long prefix twenty times forget
// every other one). It approximates the pod's real prefix cache at no
// scraping cost.
//
// It is a fixed table of Capacity slots (rounded up to a power of two) with
// bounded linear probing and no deletions: a slot is live while fewer than
// Capacity new blocks were inserted after its last use, and an insert that
// finds its probe window full of live slots overwrites the oldest. Memory is fixed at
// 16 bytes a slot, lookups touch at most two cache lines, and there are no
// tombstones to slow misses down (a Go map with constant deletes did).
type PrefixLRU struct {
	mu    sync.Mutex
	slots []prefixSlot
	shift uint8
	seq   uint64 // new blocks inserted so far; slot.seq == 0 means empty
	cap   uint64
}

type prefixSlot struct {
	hash uint64
	seq  uint64
}

// NewPrefixLRU returns an index of about capacity blocks (at least probe).
func NewPrefixLRU(capacity int) *PrefixLRU {
	capacity = max(capacity, probe)
	size := 1 << bits.Len(uint(capacity-1)) // next power of two
	return &PrefixLRU{slots: make([]prefixSlot, size), shift: uint8(64 - bits.Len(uint(size-1))), cap: uint64(size)}
}

func (p *PrefixLRU) home(h uint64) uint64 { return homeSlot(h, p.shift) }

// homeSlot is h's first slot in a table of 1<<(64-shift) slots: Fibonacci
// hashing, whose high bits are well mixed.
func homeSlot(h uint64, shift uint8) uint64 { return (h * 0x9e3779b97f4a7c15) >> shift }

func (p *PrefixLRU) live(s *prefixSlot) bool {
	return s.seq != 0 && p.seq-s.seq < p.cap
}

// Len is the number of distinct live blocks (O(capacity): for tests).
func (p *PrefixLRU) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for i := range p.slots {
		if p.live(&p.slots[i]) {
			n++
		}
	}
	return n
}

// Add records that the endpoint served hashes (a chain, in order). The
// chain goes in tail first, so that its first blocks are the most recent
// and age out last: vLLM frees a request's blocks in reverse order for the
// same reason (the tail is the part no other prompt shares), and the
// index then forgets a chain from its end, as the pod does.
func (p *PrefixLRU) Add(hashes []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mask := p.cap - 1
	for _, h := range slices.Backward(hashes) {
		i := p.home(h)
		victim, touch := i, false
		for k := uint64(0); k < probe; k++ {
			j := (i + k) & mask
			s := &p.slots[j]
			if s.hash == h && p.live(s) { // touch
				victim, touch = j, true
				break
			}
			if !p.live(s) { // empty or expired: take it unless h sits further on
				if p.live(&p.slots[victim]) {
					victim = j
				}
				continue
			}
			if p.live(&p.slots[victim]) && s.seq < p.slots[victim].seq {
				victim = j // oldest live slot so far
			}
		}
		if !touch {
			p.seq++
		}
		p.slots[victim] = prefixSlot{hash: h, seq: p.seq}
	}
}

// contains reports whether h is live; p.mu held.
func (p *PrefixLRU) contains(h uint64) bool {
	mask := p.cap - 1
	i := p.home(h)
	for k := uint64(0); k < probe; k++ {
		s := &p.slots[(i+k)&mask]
		if s.hash == h && p.live(s) {
			return true
		}
	}
	return false
}

// Match returns the length of the longest prefix of hashes held. Hashes
// chain, so holding hash i means blocks 0..i were served together; a chain
// ages out from its tail (see Add), so presence is monotone along it, up
// to bounded probing's rare early losses, and a binary search finds the
// boundary.
func (p *PrefixLRU) Match(hashes []uint64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(hashes) == 0 || !p.contains(hashes[0]) {
		return 0
	}
	lo, hi := 1, len(hashes) // hashes[:lo] held; answer in [lo, hi]
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if p.contains(hashes[mid-1]) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}
