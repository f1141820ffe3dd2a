package kvevents

import "math/bits"

// PodScore is what the index knows of one candidate pod for a request.
type PodScore struct {
	// Blocks is how many leading full blocks of the request the pod holds
	// (a prefix-cache hit of Blocks x block size tokens).
	Blocks int
	// Ready is false when the index cannot tell: the pod is unknown, or
	// its events are incomplete (started mid-stream, lost events, a decode
	// error) and it has not caught up. Score such a pod another way.
	Ready bool
}

// Score returns, for each pod in pods (in order), how many leading blocks
// of the request (its prompt token ids, and its adapter: "" for the base
// model) the pod holds. out is reused when large enough.
func (ix *Index) Score(tokens []uint32, lora string, pods []string, out []PodScore) []PodScore {
	if cap(out) < len(pods) {
		out = make([]PodScore, len(pods))
	}
	out = out[:len(pods)]
	clear(out)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.expire(ix.cfg.Now().UnixNano())
	ids := make([]uint16, len(pods)) // 0: not scored here
	var sizes []int                  // distinct block sizes among the ready candidates
	for i, name := range pods {
		p := ix.pods[name]
		if p == nil || !p.ready {
			continue
		}
		out[i].Ready = true
		ids[i] = p.id
		if p.blockSize != 0 && !contains(sizes, p.blockSize) {
			sizes = append(sizes, p.blockSize)
		}
	}
	for _, bs := range sizes {
		ix.keyBuf = ix.hasher.chain(ix.keyBuf[:0], lora, tokens, bs)
		ix.walk(ix.keyBuf, bs)
		for i, id := range ids {
			if id != 0 && ix.byID[id].blockSize == bs {
				out[i].Blocks = int(ix.blocksOf[id])
			}
		}
	}
	return out
}

// walk follows a request's keys through the key table while some ready
// pod of block size bs still holds every block so far, with the pods as a
// bitset over their ids (one AND per 64 pods a block), and leaves each
// pod's count of leading blocks in ix.blocksOf.
func (ix *Index) walk(keys []uint64, bs int) {
	words := (len(ix.byID) + 63) / 64
	if cap(ix.alive) < 2*words {
		ix.alive = make([]uint64, 2*words)
	}
	alive, mask := ix.alive[:words], ix.alive[words:2*words]
	clear(alive)
	if len(ix.blocksOf) < len(ix.byID) {
		ix.blocksOf = make([]int32, len(ix.byID))
	}
	live := 0
	for id, p := range ix.byID {
		if p != nil && p.ready && p.blockSize == bs {
			alive[id>>6] |= 1 << (id & 63)
			live++
		}
	}
	settle := func(w int, died uint64, blocks int) {
		for died != 0 {
			b := bits.TrailingZeros64(died)
			ix.blocksOf[w<<6|b] = int32(blocks)
			died &= died - 1
			live--
		}
	}
	for i, own := range keys {
		k, ok := ix.byKey.find(own)
		held := mask
		if ok {
			ks := ix.keys.at(k)
			if ks.holders[0] == overflowMark {
				held = *ix.over.at(overIndex(ks))
			} else {
				clear(mask)
				for _, h := range ks.holders {
					if h != 0 {
						mask[h>>6] |= 1 << (h & 63)
					}
				}
			}
		} else {
			clear(mask)
		}
		for w := range alive {
			var h uint64
			if w < len(held) {
				h = held[w]
			}
			settle(w, alive[w]&^h, i)
			alive[w] &= h
		}
		if live == 0 {
			return
		}
	}
	for w := range alive {
		settle(w, alive[w], len(keys))
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
