package scheduling

import (
	"slices"
	"sync"
)

// DefaultPrefixCapacity is the default number of blocks remembered per
// endpoint: 8192 blocks of 64 bytes, about 130k tokens of recent prompts, in
// a 128 KiB table (128 MiB for 1,000 endpoints).
const DefaultPrefixCapacity = 8192

// PrefixLRU remembers which prefix blocks one endpoint recently served: the
// last Capacity distinct blocks, least recently used out first. A block
// served again (a cache hit) moves to the front without taking room, as in
// the pod's own cache: only new blocks age the others (counting hits as
// insertions made a pod that served one long prefix twenty times forget
// every other one). It approximates the pod's real prefix cache at no
// scraping cost.
//
// It is a slotTable of Capacity slots (rounded up to a power of two):
// memory is fixed at 16 bytes a slot.
type PrefixLRU struct {
	mu    sync.Mutex
	table slotTable[struct{}]
}

// NewPrefixLRU returns an index of about capacity blocks (at least probe).
func NewPrefixLRU(capacity int) *PrefixLRU {
	return &PrefixLRU{table: newSlotTable[struct{}](max(capacity, probe))}
}

// Len is the number of distinct live blocks (O(capacity): for tests).
func (p *PrefixLRU) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.table.liveCount()
}

// Add records that the endpoint served hashes (a chain, in order). The
// chain goes in tail first, so that its first blocks are the most recent
// and age out last: vLLM frees a request's blocks in reverse order for the
// same reason (the tail is the part no other prompt shares), and the
// index then forgets a chain from its end, as the pod does.
func (p *PrefixLRU) Add(hashes []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range slices.Backward(hashes) {
		p.table.touch(h)
	}
}

// Match returns the length of the longest prefix of hashes held. Hashes
// chain, so holding hash i means blocks 0..i were served together; a chain
// ages out from its tail (see Add), so presence is monotone along it, up
// to bounded probing's rare early losses, and a binary search finds the
// boundary.
func (p *PrefixLRU) Match(hashes []uint64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(hashes) == 0 || !p.table.contains(hashes[0]) {
		return 0
	}
	lo, hi := 1, len(hashes) // hashes[:lo] held; answer in [lo, hi]
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if p.table.contains(hashes[mid-1]) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}
