package vllmsim

// kvCache is a paged KV cache with automatic prefix caching, after vLLM v1's
// block pool: blocks are reference counted; a block whose count drops to
// zero goes to the tail of a free queue but keeps its hash, so a later
// request with the same prefix can take it back (a hit); allocation pops the
// head of the queue (least recently freed) and evicts its hash then.
type kvCache struct {
	bs      int
	n       int
	ref     []int32
	hash    []uint64
	hashed  []bool
	prev    []int32 // free queue links; index n is the sentinel
	next    []int32
	free    int
	cache   map[uint64]int32
	caching bool

	// recording makes the cache keep the KV events (kvevents_wire.go) of
	// its changes in events until the engine publishes them.
	recording bool
	events    []kvEvent

	// evicted counts cached blocks whose prefix was dropped to make room.
	evicted uint64
}

func newKVCache(numBlocks, blockSize int, caching bool) *kvCache {
	kv := &kvCache{
		bs: blockSize, n: numBlocks, caching: caching,
		ref: make([]int32, numBlocks), hash: make([]uint64, numBlocks), hashed: make([]bool, numBlocks),
		prev: make([]int32, numBlocks+1), next: make([]int32, numBlocks+1),
		cache: make(map[uint64]int32),
	}
	s := int32(numBlocks)
	kv.prev[s], kv.next[s] = s, s
	for b := int32(0); b < s; b++ {
		kv.pushFree(b)
	}
	return kv
}

func (kv *kvCache) pushFree(b int32) {
	s := int32(kv.n)
	last := kv.prev[s]
	kv.prev[b], kv.next[b] = last, s
	kv.next[last], kv.prev[s] = b, b
	kv.free++
}

func (kv *kvCache) unlink(b int32) {
	p, nx := kv.prev[b], kv.next[b]
	kv.next[p], kv.prev[nx] = nx, p
	kv.free--
}

func (kv *kvCache) popFree() int32 {
	b := kv.next[kv.n]
	kv.unlink(b)
	if kv.hashed[b] {
		if kv.cache[kv.hash[b]] == b {
			delete(kv.cache, kv.hash[b])
			kv.evicted++
			if kv.recording {
				kv.events = append(kv.events, kvEvent{kind: kvBlockRemoved, hashes: []uint64{kv.hash[b]}})
			}
		}
		kv.hashed[b] = false
	}
	return b
}

// usage is the fraction of blocks in use; free blocks that still hold
// cached prefixes count as free, as in vLLM v1.
func (kv *kvCache) usage() float64 { return 1 - float64(kv.free)/float64(kv.n) }

// lookup counts the leading full blocks of s's prompt present in the cache.
// At least the last token is always recomputed (vLLM needs its logits).
func (kv *kvCache) lookup(s *Seq) int {
	if !kv.caching {
		return 0
	}
	limit := min(len(s.hashes), (s.numTokens()-1)/kv.bs)
	hits := 0
	for hits < limit {
		if _, ok := kv.cache[s.hashes[hits]]; !ok {
			break
		}
		hits++
	}
	return hits
}

// allocate gives s the blocks it needs to hold totalTokens tokens, first
// taking its hits leading cached blocks (only for a sequence holding no
// blocks). It changes nothing and reports false when blocks run short.
func (kv *kvCache) allocate(s *Seq, hits, totalTokens int) bool {
	need := (totalTokens+kv.bs-1)/kv.bs - len(s.blocks) - hits
	reclaim := 0
	for i := 0; i < hits; i++ {
		if kv.ref[kv.cache[s.hashes[i]]] == 0 {
			reclaim++
		}
	}
	if need > kv.free-reclaim {
		return false
	}
	for i := 0; i < hits; i++ {
		b := kv.cache[s.hashes[i]]
		if kv.ref[b] == 0 {
			kv.unlink(b)
		}
		kv.ref[b]++
		s.blocks = append(s.blocks, b)
	}
	for ; need > 0; need-- {
		b := kv.popFree()
		kv.ref[b] = 1
		s.blocks = append(s.blocks, b)
	}
	return true
}

// release drops s's blocks, tail first, so that a request's last blocks are
// evicted before its first ones (which other requests are likelier to share).
func (kv *kvCache) release(s *Seq) {
	for i := len(s.blocks) - 1; i >= 0; i-- {
		b := s.blocks[i]
		kv.ref[b]--
		if kv.ref[b] == 0 {
			kv.pushFree(b)
		}
	}
	s.blocks = s.blocks[:0]
}

// register makes a computed full block findable by its prefix hash and
// reports whether it did.
func (kv *kvCache) register(b int32, h uint64) bool {
	if !kv.caching || kv.hashed[b] {
		return false
	}
	if _, ok := kv.cache[h]; ok {
		return false // an identical block computed concurrently already holds the hash
	}
	kv.cache[h] = b
	kv.hash[b], kv.hashed[b] = h, true
	return true
}

// registerBlocks registers s's full blocks from..to-1 (computed now) and,
// when recording, reports each run of newly cached consecutive blocks as one
// BlockStored, as vLLM reports the blocks a step filled for a request.
func (kv *kvCache) registerBlocks(s *Seq, from, to int) {
	run := -1 // first block of the current run
	flush := func(end int) {
		if run < 0 {
			return
		}
		ev := kvEvent{kind: kvBlockStored, hashes: s.hashes[run:end], tokens: s.tokens[run*kv.bs : end*kv.bs], adapter: s.adapter}
		if run > 0 {
			ev.parent, ev.hasParent = s.hashes[run-1], true
		}
		kv.events = append(kv.events, ev)
		run = -1
	}
	for i := from; i < to; i++ {
		if kv.register(s.blocks[i], s.hashes[i]) {
			if run < 0 && kv.recording {
				run = i
			}
		} else {
			flush(i)
		}
	}
	flush(to)
}

// reset drops every cached prefix, as vLLM's reset_prefix_cache: only when
// no block is in use (it reports false otherwise).
func (kv *kvCache) reset() bool {
	if kv.free != kv.n {
		return false
	}
	clear(kv.cache)
	clear(kv.hashed)
	if kv.recording {
		kv.events = append(kv.events, kvEvent{kind: kvAllBlocksCleared})
	}
	return true
}

// takeEvents hands the recorded events over to the caller.
func (kv *kvCache) takeEvents() []kvEvent {
	ev := kv.events
	kv.events = nil
	return ev
}
