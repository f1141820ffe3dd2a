package kvevents

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// apply decodes an encoded batch and applies it to pod.
func apply(t testing.TB, ix *Index, pod string, evs ...tev) {
	t.Helper()
	b, err := NewDecoder().Decode(payload(encMap, evs...))
	require.NoError(t, err)
	require.NoError(t, ix.Apply(pod, b))
}

// applyDirect applies events without encoding them (for long runs).
func applyDirect(t testing.TB, ix *Index, pod string, evs ...tev) {
	t.Helper()
	b := &Batch{DPRank: -1}
	for _, e := range evs {
		ev := Event{Kind: e.kind, Hashes: e.hashes, Tokens: e.tokens, BlockSize: e.bs, Medium: e.medium}
		if e.parent != nil {
			ev.Parent, ev.HasParent = *e.parent, true
		}
		b.Events = append(b.Events, ev)
	}
	require.NoError(t, ix.Apply(pod, b))
}

func score(ix *Index, tokens []uint32, lora string, pods ...string) []PodScore {
	return ix.Score(tokens, lora, pods, nil)
}

func readyIndex(t *testing.T, cfg Config, pods ...string) *Index {
	ix := New(cfg)
	for _, p := range pods {
		require.NoError(t, ix.Restarted(p))
	}
	return ix
}

func TestScoreLeadingBlocks(t *testing.T) {
	ix := readyIndex(t, Config{}, "a", "b")
	req := seqTokens(0, 100)                                 // 6 full blocks
	apply(t, ix, "a", stored(100, nil, req[:48], 16))        // blocks 0-2
	apply(t, ix, "a", stored(200, u64(102), req[48:80], 16)) // blocks 3-4, chained on block 2
	apply(t, ix, "b", stored(900, nil, req[:16], 16))        // other engine hashes, same tokens

	got := score(ix, req, "", "a", "b", "c")
	assert.Equal(t, []PodScore{{5, true}, {1, true}, {0, false}}, got, "c is unknown: not ready")

	apply(t, ix, "a", tev{kind: BlockRemoved, hashes: []uint64{101}, medium: "GPU"})
	assert.Equal(t, 1, score(ix, req, "", "a")[0].Blocks, "a hole ends the leading run")
	assert.Equal(t, 0, score(ix, seqTokens(1, 100), "", "a")[0].Blocks, "other tokens: nothing")
	assert.Equal(t, 0, score(ix, req[:15], "", "a")[0].Blocks, "no full block")

	apply(t, ix, "a", tev{kind: AllBlocksCleared})
	assert.Equal(t, PodScore{0, true}, score(ix, req, "", "a")[0])
	st := ix.Stats()
	assert.Equal(t, 1, st.Blocks)
	assert.Equal(t, 1, st.Keys)
}

func TestOrphanAndUnknownRemovalAreCounted(t *testing.T) {
	m := NewMetrics()
	ix := readyIndex(t, Config{Metrics: m}, "a")
	apply(t, ix, "a", stored(5, u64(4), seqTokens(0, 16), 16))
	apply(t, ix, "a", tev{kind: BlockRemoved, hashes: []uint64{77}, medium: "GPU"})
	assert.Zero(t, ix.Stats().Blocks)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.events.WithLabelValues(eventOrphaned)))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.blocksTotal.WithLabelValues(blocksUnknownRemoved)))
}

func TestLoRAAndExtraKeys(t *testing.T) {
	ix := readyIndex(t, Config{}, "a")
	req := seqTokens(0, 32)
	sql, id := "sql", int64(3)
	apply(t, ix, "a", tev{kind: BlockStored, hashes: []uint64{1, 2}, tokens: req, bs: 16, loraName: &sql, medium: "GPU",
		extra: []any{[]any{"sql"}, []any{"sql"}}})
	assert.Equal(t, 0, score(ix, req, "", "a")[0].Blocks, "an adapter's blocks are not the base model's")
	assert.Equal(t, 2, score(ix, req, "sql", "a")[0].Blocks, "extra keys naming only the adapter key nothing apart")

	apply(t, ix, "a", tev{kind: BlockStored, hashes: []uint64{3}, tokens: req[:16], bs: 16, loraID: &id, medium: "GPU"})
	assert.Equal(t, 1, score(ix, req, "lora_id:3", "a")[0].Blocks, "vLLM without lora_name: keyed by lora_id")

	apply(t, ix, "a", tev{kind: BlockStored, hashes: []uint64{4}, tokens: req[:16], bs: 16, medium: "GPU", extra: []any{[]any{"salt-x"}}})
	assert.Equal(t, 0, score(ix, req, "", "a")[0].Blocks, "a salted block is not a plain one")
}

func TestOtherCachesAreSkipped(t *testing.T) {
	ix := readyIndex(t, Config{}, "a")
	req := seqTokens(0, 16)
	cpu := stored(1, nil, req, 16)
	cpu.medium = "CPU"
	apply(t, ix, "a", cpu)
	b, err := NewDecoder().Decode(mustMarshal([]any{1.0, []any{[]any{"BlockStored", []any{2}, nil, req, 16, nil, "GPU", nil, []any{nil}, 1, "sliding_window"}}}))
	require.NoError(t, err)
	require.NoError(t, ix.Apply("a", b))
	assert.Zero(t, ix.Stats().Blocks)
}

func TestSharedBlocksOverflowToBitset(t *testing.T) {
	var pods []string
	for i := range 70 {
		pods = append(pods, fmt.Sprint("p", i))
	}
	ix := readyIndex(t, Config{}, pods...)
	req := seqTokens(0, 48)
	for i, p := range pods {
		apply(t, ix, p, stored(uint64(1000*i), nil, req[:16*(1+i%3)], 16))
	}
	got := ix.Score(req, "", pods, nil)
	for i := range pods {
		assert.Equal(t, PodScore{1 + i%3, true}, got[i], pods[i])
	}
	assert.Equal(t, 3, ix.Stats().Keys)
	for i, p := range pods {
		if i%2 == 0 {
			apply(t, ix, p, tev{kind: BlockRemoved, hashes: []uint64{uint64(1000 * i)}, medium: "GPU"})
		}
	}
	got = ix.Score(req, "", pods, nil)
	for i := range pods {
		want := 1 + i%3
		if i%2 == 0 {
			want = 0
		}
		assert.Equal(t, want, got[i].Blocks, pods[i])
	}
	for _, p := range pods {
		apply(t, ix, p, tev{kind: AllBlocksCleared})
	}
	st := ix.Stats()
	assert.Zero(t, st.Blocks)
	assert.Zero(t, st.Keys)
	assert.Zero(t, ix.over.live(), "bitsets freed")
}

func TestSameContentUnderTwoEngineHashes(t *testing.T) {
	ix := readyIndex(t, Config{}, "a")
	req := seqTokens(0, 16)
	apply(t, ix, "a", stored(1, nil, req, 16))
	apply(t, ix, "a", stored(2, nil, req, 16)) // e.g. a cache salt the event does not show
	apply(t, ix, "a", tev{kind: BlockRemoved, hashes: []uint64{1}, medium: "GPU"})
	assert.Equal(t, 1, score(ix, req, "", "a")[0].Blocks, "still held under the other hash")
	apply(t, ix, "a", tev{kind: BlockRemoved, hashes: []uint64{2}, medium: "GPU"})
	assert.Equal(t, 0, score(ix, req, "", "a")[0].Blocks)
	assert.Zero(t, ix.Stats().Keys)
}

func TestBoundsEvictLeastRecentlyStored(t *testing.T) {
	m := NewMetrics()
	ix := readyIndex(t, Config{MaxBlocksPerPod: 10, MaxBlocks: 25, Metrics: m}, "a", "b", "c")
	for i := range 20 {
		apply(t, ix, "a", stored(uint64(i), nil, seqTokens(16*i, 16), 16))
	}
	assert.Equal(t, 10, ix.Stats().Blocks)
	assert.Equal(t, 0, score(ix, seqTokens(0, 16), "", "a")[0].Blocks, "oldest out")
	assert.Equal(t, 1, score(ix, seqTokens(16*19, 16), "", "a")[0].Blocks, "newest kept")
	for i := range 10 {
		apply(t, ix, "b", stored(uint64(i), nil, seqTokens(16*i+5000, 16), 16))
		apply(t, ix, "c", stored(uint64(i), nil, seqTokens(16*i+9000, 16), 16))
	}
	assert.LessOrEqual(t, ix.Stats().Blocks, 25)
	assert.Greater(t, testutil.ToFloat64(m.blocksTotal.WithLabelValues(blocksEvicted)), 10.0)
}

func TestLostAndCatchUp(t *testing.T) {
	ix := readyIndex(t, Config{CatchUpBlocks: 4}, "a")
	apply(t, ix, "a", stored(1, nil, seqTokens(0, 32), 16))
	require.NoError(t, ix.Lost("a"))
	assert.Equal(t, PodScore{0, false}, score(ix, seqTokens(0, 32), "", "a")[0])
	assert.Zero(t, ix.Stats().Blocks)
	apply(t, ix, "a", stored(10, nil, seqTokens(100, 48), 16))
	assert.False(t, ix.Ready("a"), "3 blocks since: not caught up")
	apply(t, ix, "a", stored(20, nil, seqTokens(200, 16), 16))
	assert.True(t, ix.Ready("a"))
	assert.Equal(t, 3, score(ix, seqTokens(100, 48), "", "a")[0].Blocks)

	require.NoError(t, ix.Lost("a"))
	apply(t, ix, "a", tev{kind: AllBlocksCleared})
	assert.True(t, ix.Ready("a"), "a cleared cache is a known state")
}

func TestBlockSizeChangeClears(t *testing.T) {
	ix := readyIndex(t, Config{}, "a", "b")
	apply(t, ix, "a", stored(1, nil, seqTokens(0, 32), 16))
	apply(t, ix, "b", stored(1, nil, seqTokens(0, 32), 32))
	apply(t, ix, "a", stored(7, nil, seqTokens(0, 32), 32))
	got := score(ix, seqTokens(0, 64), "", "a", "b")
	assert.Equal(t, []PodScore{{1, true}, {1, true}}, got, "scored in blocks of each pod's size")
	assert.Equal(t, 2, ix.Stats().Blocks)
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestSpeculativeEntries(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	m := NewMetrics()
	ix := readyIndex(t, Config{SpeculativeTTL: time.Second, Now: clk.now, Metrics: m}, "a", "b")
	req := seqTokens(0, 64)
	ix.AddSpeculative("a", req, "", 0)
	assert.Equal(t, 0, ix.Stats().Speculative, "block size unknown yet, no hint: nothing")
	apply(t, ix, "a", stored(1, nil, seqTokens(500, 16), 16))
	apply(t, ix, "b", stored(1, nil, seqTokens(500, 16), 16))

	ix.AddSpeculative("a", req, "", 16)
	ix.AddSpeculative("b", req, "", 32) // the events' size wins over the hint
	assert.Equal(t, []PodScore{{4, true}, {4, true}}, score(ix, req, "", "a", "b"))
	// a's engine confirms its first two blocks; b's confirms nothing.
	apply(t, ix, "a", stored(10, nil, req[:32], 16))
	clk.t = clk.t.Add(2 * time.Second)
	assert.Equal(t, []PodScore{{2, true}, {0, true}}, score(ix, req, "", "a", "b"), "unconfirmed ones expired")
	st := ix.Stats()
	assert.Zero(t, st.Speculative)
	assert.Equal(t, 4, st.Blocks)
	assert.Equal(t, 2.0, testutil.ToFloat64(m.specBlocks.WithLabelValues(specConfirmed)))
	assert.Equal(t, 6.0, testutil.ToFloat64(m.specBlocks.WithLabelValues(specExpired)))
	// The confirmed blocks answer BlockRemoved by their engine hash.
	apply(t, ix, "a", tev{kind: BlockRemoved, hashes: []uint64{10, 11}, medium: "GPU"})
	assert.Equal(t, 0, score(ix, req, "", "a")[0].Blocks)

	small := readyIndex(t, Config{MaxSpeculativePerPod: 2, Now: clk.now}, "a")
	apply(t, small, "a", stored(1, nil, seqTokens(500, 16), 16))
	small.AddSpeculative("a", req, "", 16)
	assert.Equal(t, 2, small.Stats().Speculative, "bounded per pod")
	assert.Equal(t, 3, small.Stats().Keys)
}

// TestSpeculativeBeforeFirstContact: in a fleet's first wave the picks go
// out before any engine has published; their entries wait, not scored,
// and count once the pod's first message says it is a fresh engine. A
// later restart drops them with everything else.
func TestSpeculativeBeforeFirstContact(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	ix := New(Config{SpeculativeTTL: time.Minute, Now: clk.now})
	req := seqTokens(0, 64)
	ix.AddSpeculative("a", req, "", 0)
	assert.Zero(t, ix.Stats().Pods, "no block size: nothing, not even the pod")
	ix.AddSpeculative("a", req, "", 16)
	assert.Equal(t, []PodScore{{0, false}}, score(ix, req, "", "a"), "not heard from: not scored")
	require.NoError(t, ix.Restarted("a"))
	assert.Equal(t, []PodScore{{4, true}}, score(ix, req, "", "a"), "first contact keeps the picks made before it")
	apply(t, ix, "a", stored(1, nil, req[:16], 16))
	require.NoError(t, ix.Restarted("a"))
	assert.Equal(t, []PodScore{{0, true}}, score(ix, req, "", "a"), "a restart clears them")

	// The hint was wrong: the first event's block size clears the entries.
	ix.AddSpeculative("b", req, "", 16)
	require.NoError(t, ix.Restarted("b"))
	apply(t, ix, "b", stored(1, nil, seqTokens(500, 32), 32))
	assert.Equal(t, []PodScore{{0, true}}, score(ix, req, "", "b"))
	assert.Zero(t, ix.Stats().Speculative)
}

func TestTooManyPods(t *testing.T) {
	ix := New(Config{MaxPods: 2})
	require.NoError(t, ix.Restarted("a"))
	require.NoError(t, ix.Restarted("b"))
	assert.ErrorIs(t, ix.Restarted("c"), ErrTooManyPods)
	ix.RemovePod("a")
	assert.NoError(t, ix.Restarted("c"), "a removed pod frees its place")
	assert.Equal(t, 2, ix.Stats().Pods)
}

// TestIndexMatchesModel runs random stores, removals, clears, losses and
// pod removals against a plain model (per pod: engine hash -> token
// chain) and compares every score.
func TestIndexMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ix := New(Config{CatchUpBlocks: 1 << 30})
	type blk struct{ chain string }
	model := map[string]map[uint64]string{} // pod -> engine hash -> chain id ("t1,t2,..." of block firsts)
	pods := []string{"a", "b", "c", "d", "e", "f"}
	// Requests are paths in a small tree of blocks so that prefixes share.
	block := func(path []int) []uint32 {
		var out []uint32
		for _, b := range path {
			out = append(out, seqTokens(b*16, 16)...)
		}
		return out
	}
	chainID := func(path []int) string { return fmt.Sprint(path) }
	engineHash := map[string]uint64{} // pod+chain -> hash
	next := uint64(1)
	for _, p := range pods {
		require.NoError(t, ix.Restarted(p))
		model[p] = map[uint64]string{}
	}
	for step := range 10000 {
		p := pods[rng.IntN(len(pods))]
		path := make([]int, 1+rng.IntN(6))
		for i := range path {
			path[i] = rng.IntN(3)
		}
		switch op := rng.IntN(20); {
		case op < 12: // store the path's blocks from a random held prefix
			start := 0
			for start < len(path) {
				if _, ok := engineHash[p+chainID(path[:start+1])]; !ok {
					break
				}
				if _, held := model[p][engineHash[p+chainID(path[:start+1])]]; !held {
					break
				}
				start++
			}
			if start == len(path) {
				continue
			}
			var parent *uint64
			if start > 0 {
				parent = u64(engineHash[p+chainID(path[:start])])
			}
			hs := make([]uint64, 0, len(path)-start)
			for i := start; i < len(path); i++ {
				id := p + chainID(path[:i+1])
				if _, ok := engineHash[id]; !ok {
					engineHash[id] = next
					next++
				}
				h := engineHash[id]
				hs = append(hs, h)
				model[p][h] = chainID(path[:i+1])
			}
			applyDirect(t, ix, p, tev{kind: BlockStored, hashes: hs, parent: parent, tokens: block(path)[16*start:], bs: 16, medium: "GPU"})
		case op < 17: // remove a held block
			for h := range model[p] {
				delete(model[p], h)
				applyDirect(t, ix, p, tev{kind: BlockRemoved, hashes: []uint64{h}, medium: "GPU"})
				break
			}
		case op < 18:
			clear(model[p])
			applyDirect(t, ix, p, tev{kind: AllBlocksCleared})
		case op < 19:
			clear(model[p])
			ix.RemovePod(p)
			require.NoError(t, ix.Restarted(p))
		default:
			got := ix.Score(block(path), "", pods, nil)
			for i, q := range pods {
				want := 0
				held := map[string]bool{}
				for _, c := range model[q] {
					held[c] = true
				}
				for want < len(path) && held[chainID(path[:want+1])] {
					want++
				}
				require.Equal(t, PodScore{want, true}, got[i], "step %d pod %s path %v", step, q, path)
			}
		}
	}
	total := 0
	for _, m := range model {
		total += len(m)
	}
	assert.Equal(t, total, ix.Stats().Blocks)
}

// TestThousandPodsBoundedMemory: 1,000 pods storing far more than the
// bound: the index stays within it.
func TestThousandPodsBoundedMemory(t *testing.T) {
	ix := New(Config{MaxPods: 1000, MaxBlocks: 20_000, MaxBlocksPerPod: 50})
	for i := range 1000 {
		pod := fmt.Sprint("pod-", i)
		require.NoError(t, ix.Restarted(pod))
		for j := range 3 {
			applyDirect(t, ix, pod, stored(uint64(j*100), nil, seqTokens(i*7+j*1000, 16*20), 16))
		}
	}
	assert.ErrorIs(t, ix.Restarted("one-too-many"), ErrTooManyPods)
	st := ix.Stats()
	assert.LessOrEqual(t, st.Blocks, 20_000)
	assert.Greater(t, st.Blocks, 15_000)
	assert.Less(t, st.Bytes, 4<<20, "bytes %d", st.Bytes)
}
