package kvevents

// Speculative entries: when the picker sends a request to a pod, the pod
// will hold the request's blocks well before its BlockStored arrives (after
// the prefill). Counting them at once keeps the next requests with the same
// prefix on that pod. They expire after SpeculativeTTL unless an event
// confirms them; they count toward the bounds like other blocks.

type specEntry struct {
	rec      uint32
	deadline int64 // Unix ns
}

type specTimer struct {
	p        *pod
	own      uint64
	deadline int64
}

// AddSpeculative counts the full blocks of tokens (for adapter lora, ""
// for the base model) as held by the pod for SpeculativeTTL, in blocks of
// the pod's size as its events give it, or until it has sent one, of
// blockSize (what its metrics say; 0: add nothing).
//
// A pod the index has not heard from yet gets its entries too: in a fleet's
// first wave every pick goes out before any engine has stored a block, and
// the entries are all that keeps a second request with the same prefix on
// the first one's pod once that pod's events start (Restarted keeps them
// on first contact). A pod not caught up is not scored, entries or not.
func (ix *Index) AddSpeculative(podName string, tokens []uint32, lora string, blockSize int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	now := ix.cfg.Now().UnixNano()
	ix.expire(now)
	if ix.pods[podName] == nil && blockSize <= 0 {
		return
	}
	p, err := ix.podFor(podName)
	if err != nil {
		return
	}
	if p.blockSize == 0 {
		if blockSize <= 0 {
			return
		}
		p.blockSize = blockSize // an event of another size clears the pod (applyStored)
	}
	deadline := now + int64(ix.cfg.SpeculativeTTL)
	ix.keyBuf = ix.hasher.chain(ix.keyBuf[:0], lora, tokens, p.blockSize)
	added := 0
	for _, own := range ix.keyBuf {
		if se, ok := p.spec[own]; ok {
			p.spec[own] = specEntry{se.rec, deadline} // picked again: live longer
			ix.timers = append(ix.timers, specTimer{p, own, deadline})
			continue
		}
		k := ix.keySlotFor(own)
		ks := ix.keys.at(k)
		if ix.holds(ks, p.id) {
			continue // already held for real
		}
		if len(p.spec) >= ix.cfg.MaxSpeculativePerPod {
			if ks.holders == ([4]uint16{}) { // just made for this block: unmake it
				ix.byKey.remove(own)
				ix.keys.release(k)
			}
			break
		}
		ix.addHolder(ks, p.id)
		r := ix.newRec(p, k, 0, true)
		if p.spec == nil {
			p.spec = map[uint64]specEntry{}
		}
		p.spec[own] = specEntry{r, deadline}
		ix.timers = append(ix.timers, specTimer{p, own, deadline})
		added++
		ix.enforceBounds(p)
	}
	ix.m.speculative(specAdded, added)
}

// expire drops speculative entries whose time is up. Timers are in
// deadline order (the TTL is fixed); a refreshed or confirmed entry's old
// timer finds its entry gone or with another deadline and does nothing.
func (ix *Index) expire(now int64) {
	n, expired := 0, 0
	for ; n < len(ix.timers) && ix.timers[n].deadline <= now; n++ {
		t := ix.timers[n]
		if ix.pods[t.p.name] != t.p {
			continue // the pod was removed
		}
		if se, ok := t.p.spec[t.own]; ok && se.deadline == t.deadline {
			ix.removeRec(t.p, se.rec)
			expired++
		}
	}
	if n > 0 {
		ix.timers = append(ix.timers[:0], ix.timers[n:]...)
	}
	ix.m.speculative(specExpired, expired)
}
