package vllmsim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// eventModel is what a subscriber knows from the events alone: the cached
// hashes, and for each the parent and tokens its BlockStored gave.
type eventModel struct {
	held   map[uint64]bool
	parent map[uint64]uint64 // 0: a prompt's first block
	tokens map[uint64][]uint32
	owner  map[uint64]int // adapter
}

func newEventModel() *eventModel {
	return &eventModel{held: map[uint64]bool{}, parent: map[uint64]uint64{}, tokens: map[uint64][]uint32{}, owner: map[uint64]int{}}
}

func (m *eventModel) apply(t *testing.T, b kvBatch, bs int) {
	t.Helper()
	for _, ev := range b.events {
		switch ev.kind {
		case kvBlockStored:
			require.Len(t, ev.tokens, len(ev.hashes)*bs, "token_ids cover the stored blocks")
			if ev.hasParent {
				require.True(t, m.held[ev.parent], "a stored block's parent is cached")
			}
			prev := uint64(0)
			if ev.hasParent {
				prev = ev.parent
			}
			for i, h := range ev.hashes {
				require.False(t, m.held[h], "stored twice without a removal")
				m.held[h], m.parent[h], m.tokens[h], m.owner[h] = true, prev, ev.tokens[i*bs:(i+1)*bs], ev.adapter
				prev = h
			}
		case kvBlockRemoved:
			for _, h := range ev.hashes {
				require.True(t, m.held[h], "removed a block never stored")
				delete(m.held, h)
			}
		case kvAllBlocksCleared:
			clear(m.held)
		}
	}
}

// prefixTokens rebuilds a block's whole prefix from the events' parents.
func (m *eventModel) prefixTokens(h uint64) []uint32 {
	var chain [][]uint32
	for ; h != 0; h = m.parent[h] {
		chain = append(chain, m.tokens[h])
	}
	var out []uint32
	for i := len(chain) - 1; i >= 0; i-- {
		out = append(out, chain[i]...)
	}
	return out
}

func recordingEngine(t *testing.T, cfg Config) (*Engine, *[]kvBatch) {
	e := testEngine(t, cfg)
	var got []kvBatch
	e.kv.recording = true
	e.kvOut = func(b kvBatch) { got = append(got, b) }
	return e, &got
}

// TestKVEventsDescribeTheCache runs a workload with shared prefixes,
// adapters, evictions, preemptions and aborts in virtual time and checks
// after every step that the events alone give exactly the cache's hashes,
// with parents and tokens that hash back to the same chain.
func TestKVEventsDescribeTheCache(t *testing.T) {
	loras := []LoRAModule{{"a", "/a"}, {"b", "/b"}}
	cfg := Config{NumGPUBlocks: 160, MaxModelLen: 1024, MaxNumBatchedTokens: 512, LoRAModules: loras, MaxLoRAs: 2}
	e, batches := recordingEngine(t, cfg)
	bs := e.cfg.BlockSize
	m := newEventModel()
	rng := rand.New(rand.NewPCG(7, 7))
	systems := [][]byte{text("sysA", 300), text("sysB", 200), text("sysC", 450)}
	var live []*Seq
	removed, stored := 0, 0
	now := 0.0
	for step := 0; step < 3000; step++ {
		if rng.IntN(3) == 0 {
			sys := systems[rng.IntN(len(systems))]
			p := append(slices.Clone(sys), text(fmt.Sprint("q", step), 8+rng.IntN(200))...)
			s := e.newSeq(rng.IntN(3)-1, p, 1+rng.IntN(64), 0, true)
			e.add(s, now)
			live = append(live, s)
		}
		if len(live) > 0 && rng.IntN(40) == 0 {
			e.Abort(live[rng.IntN(len(live))])
		}
		if !e.hasWork() {
			continue
		}
		p := e.schedule(now)
		now += p.dur
		e.complete(p, now)
		for _, b := range *batches {
			for _, ev := range b.events {
				switch ev.kind {
				case kvBlockStored:
					stored += len(ev.hashes)
				case kvBlockRemoved:
					removed += len(ev.hashes)
				}
			}
			m.apply(t, b, bs)
		}
		*batches = (*batches)[:0]
		require.Equal(t, len(e.kv.cache), len(m.held), "step %d", step)
		for h := range e.kv.cache {
			require.True(t, m.held[h], "step %d: cached hash %x not announced", step, h)
		}
	}
	assert.Greater(t, e.Stats().Preemptions+uint64(removed), uint64(0))
	assert.Greater(t, removed, 100, "the workload evicts")
	assert.Equal(t, uint64(removed), e.Stats().EvictedBlocks, "every eviction is counted")
	assert.Greater(t, stored, 500)
	for h := range m.held {
		name := e.cfg.Model
		if a := m.owner[h]; a >= 0 {
			name = loras[a].Name
		}
		toks := m.prefixTokens(h)
		hs := blockHashes(name, toks, bs)
		require.Equal(t, h, hs[len(hs)-1], "parents and tokens rebuild the block's hash")
	}
}

func TestKVEventsStoredRunAndParent(t *testing.T) {
	e, batches := recordingEngine(t, Config{LoRAModules: []LoRAModule{{"a", "/a"}}})
	sys := text("system", 64)
	r := runVirtual(t, e, []vreq{
		{adapter: 0, prompt: append(slices.Clone(sys), text("one", 40)...), maxTokens: 2, ignoreEOS: true},
		{at: 10, adapter: 0, prompt: append(slices.Clone(sys), text("two", 40)...), maxTokens: 2, ignoreEOS: true},
	})
	require.Len(t, r.results, 2)
	var st []kvEvent
	for _, b := range *batches {
		for _, ev := range b.events {
			if ev.kind == kvBlockStored {
				st = append(st, ev)
			}
		}
	}
	require.Len(t, st, 2)
	first := tokenize(append(slices.Clone(sys), text("one", 40)...))
	assert.Len(t, st[0].hashes, 6) // 104 tokens: 6 full blocks of 16
	assert.False(t, st[0].hasParent)
	assert.Equal(t, first[:96], st[0].tokens)
	assert.Equal(t, 0, st[0].adapter)
	// The second shares the 4 system blocks: it stores its own 2, whose
	// parent is the last shared block.
	assert.Len(t, st[1].hashes, 2)
	assert.True(t, st[1].hasParent)
	assert.Equal(t, st[0].hashes[3], st[1].parent)
}

func TestKVEventsResetClears(t *testing.T) {
	e, batches := recordingEngine(t, Config{})
	runVirtual(t, e, []vreq{{adapter: -1, prompt: text("x", 100), maxTokens: 1, ignoreEOS: true}})
	require.NotEmpty(t, e.kv.cache)
	*batches = nil

	busy := e.newSeq(-1, text("y", 40), 10, 0, true)
	e.add(busy, 0)
	e.complete(e.schedule(0), 1)
	*batches = nil
	assert.False(t, e.ResetPrefixCache(), "blocks in use: vLLM refuses to reset")
	assert.Empty(t, *batches)
	e.Abort(busy)

	assert.True(t, e.ResetPrefixCache())
	assert.Empty(t, e.kv.cache)
	require.Len(t, *batches, 1)
	assert.Equal(t, []kvEvent{{kind: kvAllBlocksCleared}}, (*batches)[0].events)
	assert.Equal(t, 0, e.kv.lookup(e.newSeq(-1, text("x", 100), 1, 0, true)), "nothing is found after a reset")
}

func TestKVEventsOffRecordsNothing(t *testing.T) {
	e := testEngine(t, Config{})
	runVirtual(t, e, []vreq{{adapter: -1, prompt: text("x", 100), maxTokens: 1, ignoreEOS: true}})
	assert.Nil(t, e.kv.events)
	assert.True(t, e.ResetPrefixCache())
	assert.Nil(t, e.kv.events)
}
