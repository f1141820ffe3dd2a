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
// for the base model) as held by the pod for SpeculativeTTL. It does
// nothing for a pod that is unknown, not caught up or whose block size is
// not known yet.
func (ix *Index) AddSpeculative(podName string, tokens []uint32, lora string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	now := ix.cfg.Now().UnixNano()
	ix.expire(now)
	p := ix.pods[podName]
	if p == nil || !p.ready || p.blockSize == 0 {
		return
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
