package kvevents

import (
	"errors"
	"sync"
	"time"
)

// Config bounds and tunes an Index. Zero fields take their defaults.
type Config struct {
	// MaxPods is how many pods the index tracks at once (default 4096, at
	// most 65534).
	MaxPods int
	// MaxBlocksPerPod bounds one pod's blocks (default 262,144: 4M tokens
	// of 16-token blocks, more than any GPU holds). Past it the pod's
	// least recently stored blocks go first.
	MaxBlocksPerPod int
	// MaxBlocks bounds every pod's blocks together (default 4,194,304,
	// about 256 MiB); past it the pod holding the most loses its least
	// recently stored blocks.
	MaxBlocks int
	// CatchUpBlocks: after events were lost for good, a pod counts as
	// caught up again once it has stored this many blocks (its cache has
	// turned over, so what was missed has aged out) or cleared its cache
	// (default 8192; set it to the pod's cache size in blocks when known).
	CatchUpBlocks int
	// SpeculativeTTL is how long a pick's blocks count as held before the
	// pod's BlockStored confirms them (default 5s).
	SpeculativeTTL time.Duration
	// MaxSpeculativePerPod bounds a pod's unconfirmed blocks (default 8192).
	MaxSpeculativePerPod int
	// Now is the clock for speculative entries (default time.Now).
	Now func() time.Time
	// Metrics receives the index's counters (optional).
	Metrics *Metrics
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxPods, 4096)
	c.MaxPods = min(c.MaxPods, maxPodID)
	def(&c.MaxBlocksPerPod, 1<<18)
	def(&c.MaxBlocks, 1<<22)
	def(&c.CatchUpBlocks, 8192)
	def(&c.MaxSpeculativePerPod, 8192)
	if c.SpeculativeTTL <= 0 {
		c.SpeculativeTTL = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ErrTooManyPods: the index already tracks Config.MaxPods pods.
var ErrTooManyPods = errors.New("kvevents: too many pods")

// Index knows which blocks each pod's engine holds, from its KV events.
// Blocks are keyed by the index's own chain of hashes over token ids
// (keys.go); per pod it keeps the engine's hash of each block, which
// BlockRemoved names. Memory is bounded per pod and in total. Safe for
// concurrent use.
type Index struct {
	mu       sync.Mutex
	cfg      Config
	m        *Metrics
	recs     slab[rec]
	keys     slab[keySlot]
	over     slab[[]uint64] // holder bitsets of keys held by more than 4 pods
	byEngine table[engineKey, engineOps]
	byKey    table[uint64, keyOps]
	dups     map[uint64]uint16 // (key, pod) held under more than one engine hash: the extra count
	pods     map[string]*pod
	byID     []*pod // by id (from 1); nil when free
	freeIDs  []uint16
	total    int // blocks held, all pods
	timers   []specTimer
	hasher   keyHasher

	// Scoring scratch, guarded by mu.
	keyBuf   []uint64
	alive    []uint64 // pods still holding every block so far, and a mask: bitsets over pod ids
	blocksOf []int32  // by pod id: leading blocks held
}

// rec is one block a pod holds: 24 bytes.
type rec struct {
	engine     uint64 // the engine's hash (unset while speculative)
	key        uint32 // the block's keySlot
	prev, next uint32 // the pod's list, most recently stored first
	pod        uint16
	spec       bool // a pick's block not yet confirmed by BlockStored
}

// keySlot is one distinct block (own key) and the pods holding it: 16
// bytes. Up to 4 holders sit inline; more move to a bitset over pod ids.
type keySlot struct {
	own     uint64
	holders [4]uint16 // pod ids, 0 = empty; holders[0] == overflowMark: bitset index in holders[2:4]
}

const (
	overflowMark = 0xffff
	maxPodID     = overflowMark - 1
)

type engineKey struct {
	hash uint64
	pod  uint16
}

type engineOps struct{ ix *Index }

func mixEngine(h uint64, pod uint16) uint64 { return h ^ uint64(pod)*0xff51afd7ed558ccd }

func (o engineOps) hashKey(k engineKey) uint64 { return mixEngine(k.hash, k.pod) }
func (o engineOps) hashEntry(v uint32) uint64 {
	r := o.ix.recs.at(v)
	return mixEngine(r.engine, r.pod)
}
func (o engineOps) match(v uint32, k engineKey) bool {
	r := o.ix.recs.at(v)
	return r.engine == k.hash && r.pod == k.pod
}

type keyOps struct{ ix *Index }

func (o keyOps) hashKey(k uint64) uint64       { return k }
func (o keyOps) hashEntry(v uint32) uint64     { return o.ix.keys.at(v).own }
func (o keyOps) match(v uint32, k uint64) bool { return o.ix.keys.at(v).own == k }
func dupKey(k uint32, pod uint16) uint64       { return uint64(k)<<16 | uint64(pod) }
func overIndex(ks *keySlot) uint32             { return uint32(ks.holders[2]) | uint32(ks.holders[3])<<16 }
func setOverIndex(ks *keySlot, i uint32) {
	ks.holders = [4]uint16{overflowMark, 0, uint16(i), uint16(i >> 16)}
}
func bitSet(bs []uint64, id uint16) bool {
	w := int(id >> 6)
	return w < len(bs) && bs[w]&(1<<(id&63)) != 0
}
func (ix *Index) engineFind(h uint64, p *pod) (uint32, bool) {
	return ix.byEngine.find(engineKey{h, p.id})
}

// pod is one engine's view.
type pod struct {
	name       string
	id         uint16
	blockSize  int // from its events; 0 until the first BlockStored (or a speculative entry's hint)
	head, tail uint32
	n          int
	ready      bool // its events are complete since a known state
	heard      bool // a message of its publisher has arrived (or a replay answered)
	sinceLost  int  // blocks stored since events were lost
	spec       map[uint64]specEntry
}

// New returns an empty index.
func New(cfg Config) *Index {
	cfg = cfg.withDefaults()
	ix := &Index{cfg: cfg, m: cfg.Metrics, dups: map[uint64]uint16{}, pods: map[string]*pod{}, byID: []*pod{nil}}
	ix.byEngine = newTable[engineKey](engineOps{ix})
	ix.byKey = newTable[uint64](keyOps{ix})
	return ix
}

// podFor returns the named pod, creating it (not ready) when new.
func (ix *Index) podFor(name string) (*pod, error) {
	if p := ix.pods[name]; p != nil {
		return p, nil
	}
	var id uint16
	switch {
	case len(ix.freeIDs) > 0:
		id = ix.freeIDs[len(ix.freeIDs)-1]
		ix.freeIDs = ix.freeIDs[:len(ix.freeIDs)-1]
	case len(ix.byID)-1 < ix.cfg.MaxPods:
		id = uint16(len(ix.byID))
		ix.byID = append(ix.byID, nil)
	default:
		return nil, ErrTooManyPods
	}
	p := &pod{name: name, id: id, head: noRec, tail: noRec}
	ix.pods[name] = p
	ix.byID[id] = p
	return p, nil
}

// holds reports whether key slot k lists pod id.
func (ix *Index) holds(ks *keySlot, id uint16) bool {
	if ks.holders[0] == overflowMark {
		return bitSet(*ix.over.at(overIndex(ks)), id)
	}
	return ks.holders[0] == id || ks.holders[1] == id || ks.holders[2] == id || ks.holders[3] == id
}

func (ix *Index) addHolder(ks *keySlot, id uint16) {
	if ks.holders[0] != overflowMark {
		for i, h := range ks.holders {
			if h == 0 {
				ks.holders[i] = id
				return
			}
		}
		// A fifth holder: move them all to a bitset.
		o := ix.over.alloc()
		bs := ix.over.at(o)
		*bs = make([]uint64, (len(ix.byID)+63)/64)
		for _, h := range ks.holders {
			(*bs)[h>>6] |= 1 << (h & 63)
		}
		setOverIndex(ks, o)
	}
	bs := ix.over.at(overIndex(ks))
	for int(id>>6) >= len(*bs) {
		*bs = append(*bs, 0)
	}
	(*bs)[id>>6] |= 1 << (id & 63)
}

// dropHolder removes pod id from k and reports whether no holder is left.
func (ix *Index) dropHolder(ks *keySlot, id uint16) bool {
	if ks.holders[0] != overflowMark {
		empty := true
		for i, h := range ks.holders {
			if h == id {
				ks.holders[i] = 0
			} else if h != 0 {
				empty = false
			}
		}
		return empty
	}
	o := overIndex(ks)
	bs := *ix.over.at(o)
	if int(id>>6) < len(bs) {
		bs[id>>6] &^= 1 << (id & 63)
	}
	for _, w := range bs {
		if w != 0 {
			return false
		}
	}
	ix.over.release(o)
	ks.holders = [4]uint16{}
	return true
}

// link puts r at the head of p's list.
func (ix *Index) link(p *pod, r uint32) {
	rr := ix.recs.at(r)
	rr.prev, rr.next = noRec, p.head
	if p.head != noRec {
		ix.recs.at(p.head).prev = r
	} else {
		p.tail = r
	}
	p.head = r
}

func (ix *Index) unlink(p *pod, r uint32) {
	rr := ix.recs.at(r)
	if rr.prev != noRec {
		ix.recs.at(rr.prev).next = rr.next
	} else {
		p.head = rr.next
	}
	if rr.next != noRec {
		ix.recs.at(rr.next).prev = rr.prev
	} else {
		p.tail = rr.prev
	}
}

// keySlotFor returns own's key slot, creating it when new.
func (ix *Index) keySlotFor(own uint64) uint32 {
	if k, ok := ix.byKey.find(own); ok {
		return k
	}
	k := ix.keys.alloc()
	ix.keys.at(k).own = own
	ix.byKey.insert(own, k)
	return k
}

// newRec adds a block to p (a holder of key k already) as the most recent.
func (ix *Index) newRec(p *pod, k uint32, engine uint64, spec bool) uint32 {
	r := ix.recs.alloc()
	*ix.recs.at(r) = rec{engine: engine, key: k, pod: p.id, spec: spec}
	ix.link(p, r)
	p.n++
	ix.total++
	return r
}

// store records that p's engine holds engine-hash h with own key own.
func (ix *Index) store(p *pod, h, own uint64) {
	if r, ok := ix.engineFind(h, p); ok {
		if ix.keys.at(ix.recs.at(r).key).own == own {
			ix.unlink(p, r)
			ix.link(p, r) // stored again: the most recent now
			return
		}
		ix.removeRec(p, r) // the engine reused a hash for other content: the new event wins
	}
	k := ix.keySlotFor(own)
	ks := ix.keys.at(k)
	if ix.holds(ks, p.id) {
		if se, ok := p.spec[own]; ok {
			// A pick's speculative block, now confirmed.
			delete(p.spec, own)
			rr := ix.recs.at(se.rec)
			rr.spec, rr.engine = false, h
			ix.byEngine.insert(mixEngine(h, p.id), se.rec)
			ix.unlink(p, se.rec)
			ix.link(p, se.rec)
			ix.m.speculative(specConfirmed, 1)
			return
		}
		ix.dups[dupKey(k, p.id)]++ // the same content under a second engine hash
	} else {
		ix.addHolder(ks, p.id)
	}
	r := ix.newRec(p, k, h, false)
	ix.byEngine.insert(mixEngine(h, p.id), r)
	ix.enforceBounds(p)
}

// removeRec drops one of p's blocks.
func (ix *Index) removeRec(p *pod, r uint32) {
	rr := ix.recs.at(r)
	k := rr.key
	ks := ix.keys.at(k)
	if rr.spec {
		delete(p.spec, ks.own)
	} else {
		ix.byEngine.remove(engineKey{rr.engine, p.id})
	}
	ix.unlink(p, r)
	if d := dupKey(k, p.id); ix.dups[d] > 0 {
		if ix.dups[d]--; ix.dups[d] == 0 {
			delete(ix.dups, d)
		}
	} else if ix.dropHolder(ks, p.id) {
		ix.byKey.remove(ks.own)
		ix.keys.release(k)
	}
	ix.recs.release(r)
	p.n--
	ix.total--
}

// enforceBounds evicts least recently stored blocks past the bounds: p's
// own, then, past the total, the largest pod's, down to 1/64 under the
// bound so that the scan for the largest pod is rare.
func (ix *Index) enforceBounds(p *pod) {
	for p.n > ix.cfg.MaxBlocksPerPod {
		ix.removeRec(p, p.tail)
		ix.m.blocks(blocksEvicted, 1)
	}
	if ix.total <= ix.cfg.MaxBlocks {
		return
	}
	target := ix.cfg.MaxBlocks - ix.cfg.MaxBlocks/64
	for ix.total > target {
		var big *pod
		for _, q := range ix.byID {
			if q != nil && (big == nil || q.n > big.n) {
				big = q
			}
		}
		n := min(big.n, ix.total-target, max(big.n/8, 1))
		for range n {
			ix.removeRec(big, big.tail)
		}
		ix.m.blocks(blocksEvicted, n)
	}
}

// clearPod drops every block of p.
func (ix *Index) clearPod(p *pod) {
	for p.head != noRec {
		ix.removeRec(p, p.head)
	}
	clear(p.spec)
}

// Stats is the index's size.
type Stats struct {
	Pods, NotReady int
	Blocks, Keys   int // blocks held (pod, block) and distinct blocks
	Speculative    int
	Bytes          int // memory of the index's structures
}

// Stats reports the index's size.
func (ix *Index) Stats() Stats {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	st := Stats{Pods: len(ix.pods), Blocks: ix.total, Keys: ix.keys.live()}
	for _, p := range ix.pods {
		if !p.ready {
			st.NotReady++
		}
		st.Speculative += len(p.spec)
	}
	st.Bytes = len(ix.recs.chunks)*chunkLen*24 + len(ix.keys.chunks)*chunkLen*16 +
		ix.byEngine.bytes() + ix.byKey.bytes() + 4*(cap(ix.recs.free)+cap(ix.keys.free))
	for i := uint32(0); i < ix.over.n; i++ {
		st.Bytes += 8 * cap(*ix.over.at(i))
	}
	return st
}
