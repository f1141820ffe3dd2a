package kvevents

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
	ids := make([]uint16, len(pods))
	sizes := make([]int, 0, 1) // distinct block sizes among ready pods
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
		ix.alive = ix.alive[:0]
		for i, id := range ids {
			if id != 0 && ix.byID[id].blockSize == bs {
				ix.alive = append(ix.alive, i)
			}
		}
		ix.keyBuf = ix.hasher.chain(ix.keyBuf[:0], lora, tokens, bs)
		ix.walk(ix.keyBuf, ids, out)
	}
	return out
}

// walk follows the request's keys while any candidate (ix.alive, indexes
// into ids and out) still holds every block so far.
func (ix *Index) walk(keys []uint64, ids []uint16, out []PodScore) {
	alive := ix.alive
	for i, own := range keys {
		k, ok := ix.byKey.find(own)
		if !ok {
			for _, c := range alive {
				out[c].Blocks = i
			}
			return
		}
		ks := ix.keys.at(k)
		var bits []uint64
		if ks.holders[0] == overflowMark {
			bits = *ix.over.at(overIndex(ks))
		}
		j := 0
		for _, c := range alive {
			id := ids[c]
			var held bool
			if bits != nil {
				held = bitSet(bits, id)
			} else {
				held = ks.holders[0] == id || ks.holders[1] == id || ks.holders[2] == id || ks.holders[3] == id
			}
			if held {
				alive[j] = c
				j++
			} else {
				out[c].Blocks = i
			}
		}
		if alive = alive[:j]; len(alive) == 0 {
			return
		}
	}
	for _, c := range alive {
		out[c].Blocks = len(keys)
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
