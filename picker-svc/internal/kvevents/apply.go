package kvevents

import (
	"bytes"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

// Apply applies one decoded batch of the named pod's events, in order. The
// pod is created (not caught up) when new. The caller (the subscriber)
// keeps batches in sequence and reports breaks with Lost or Restarted.
func (ix *Index) Apply(podName string, b *Batch) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	p, err := ix.podFor(podName)
	if err != nil {
		return err
	}
	p.heard = true
	ix.m.event(eventUnknown, b.Unknown)
	for i := range b.Events {
		ev := &b.Events[i]
		if !mainCache(ev) {
			ix.m.event(eventSkipped, 1)
			continue
		}
		switch ev.Kind {
		case BlockStored:
			ix.applyStored(p, ev)
		case BlockRemoved:
			ix.applyRemoved(p, ev)
		case AllBlocksCleared:
			ix.clearPod(p)
			p.ready, p.sinceLost = true, 0 // an empty cache is a known state
			ix.m.event(eventCleared, 1)
		}
	}
	return nil
}

// mainCache: the event is about the GPU cache's (first) full-attention
// group, the one a prefix hit reads. Older vLLM sends none of these fields.
func mainCache(ev *Event) bool {
	return (ev.Medium == "" || ev.Medium == "GPU") && ev.GroupIdx == 0 &&
		(ev.SpecKind == "" || ev.SpecKind == "full_attention")
}

// loraOf names the adapter an event's blocks belong to: lora_name, or for
// vLLM before it "lora_id:N" ("" for the base model).
func loraOf(ev *Event) string {
	switch {
	case ev.HasLoRAName:
		return ev.LoRAName
	case ev.HasLoRAID:
		return "lora_id:" + strconv.FormatInt(ev.LoRAID, 10)
	}
	return ""
}

func (ix *Index) applyStored(p *pod, ev *Event) {
	bs := ev.BlockSize
	if p.blockSize != bs {
		if p.blockSize != 0 {
			ix.clearPod(p) // the engine restarted with other blocks: nothing old is valid
		}
		p.blockSize = bs
	}
	lora := loraOf(ev)
	parent := rootKey(lora)
	if ev.HasParent {
		r, ok := ix.engineFind(ev.Parent, p)
		if !ok {
			// Without the parent's key the chain cannot be followed: the
			// parent was lost with missed events or to the index's bounds.
			ix.m.event(eventOrphaned, 1)
			return
		}
		parent = ix.keys.at(ix.recs.at(r).key).own
	}
	var plain []byte // extra keys that hold nothing but the adapter's name
	for i, h := range ev.Hashes {
		var salt []byte
		if ev.Extra != nil && ev.Extra[i] != nil {
			if plain == nil {
				plain, _ = msgpack.Marshal([]string{lora})
			}
			if !bytes.Equal(ev.Extra[i], plain) {
				salt = ev.Extra[i]
			}
		}
		own := ix.hasher.next(parent, ev.Tokens[i*bs:(i+1)*bs], salt)
		ix.store(p, h, own)
		parent = own
	}
	n := len(ev.Hashes)
	ix.m.event(eventStored, 1)
	ix.m.blocks(blocksStored, n)
	if !p.ready {
		if p.sinceLost += n; p.sinceLost >= ix.cfg.CatchUpBlocks {
			p.ready = true
		}
	}
}

func (ix *Index) applyRemoved(p *pod, ev *Event) {
	unknown := 0
	for _, h := range ev.Hashes {
		if r, ok := ix.engineFind(h, p); ok {
			ix.removeRec(p, r)
		} else {
			unknown++
		}
	}
	ix.m.event(eventRemoved, 1)
	ix.m.blocks(blocksRemoved, len(ev.Hashes)-unknown)
	ix.m.blocks(blocksUnknownRemoved, unknown)
}

// Lost says the pod's events since the last applied batch are gone for
// good: its blocks are dropped and it is not caught up (Score reports it
// not Ready) until it stored CatchUpBlocks blocks or cleared its cache.
func (ix *Index) Lost(podName string) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	p, err := ix.podFor(podName)
	if err != nil {
		return err
	}
	ix.clearPod(p)
	p.ready, p.sinceLost, p.heard = false, 0, true
	return nil
}

// Restarted says the pod's publisher started again from sequence 0: a new
// engine with an empty cache, whose events from now on are complete.
func (ix *Index) Restarted(podName string) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	p, err := ix.podFor(podName)
	if err != nil {
		return err
	}
	if p.heard {
		ix.clearPod(p)
		p.blockSize = 0
	}
	// On first contact the pod holds only this picker's speculative
	// entries, for requests it was sent before its first event: a fresh
	// engine will store those prompts, so they stay.
	p.ready, p.sinceLost, p.heard = true, 0, true
	return nil
}

// Ready reports whether the pod's events are complete (see Score).
func (ix *Index) Ready(podName string) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	p := ix.pods[podName]
	return p != nil && p.ready
}

// RemovePod forgets a pod (gone from discovery) and frees its blocks.
func (ix *Index) RemovePod(podName string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	p := ix.pods[podName]
	if p == nil {
		return
	}
	ix.clearPod(p)
	delete(ix.pods, podName)
	ix.byID[p.id] = nil
	ix.freeIDs = append(ix.freeIDs, p.id)
}
