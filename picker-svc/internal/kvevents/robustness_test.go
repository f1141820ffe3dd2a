package kvevents

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What a publisher can do wrong, message by message, straight into a
// stream (the socket tests cover the same over ZeroMQ): each case is
// counted, and the pod falls back to the approximate source while its
// view is incomplete.

func frames(seq uint64, payload []byte) [][]byte {
	return [][]byte{[]byte("kv@pod@m"), binary.BigEndian.AppendUint64(nil, seq), payload}
}

// A sequence that jumps back to a number other than 0 (an engine that
// restarted and published before we heard it, or a publisher that reset
// its counter) is lost events, not a fresh engine: the pod falls back.
func TestSequenceJumpsBack(t *testing.T) {
	m := NewMetrics()
	ix := New(Config{Metrics: m, CatchUpBlocks: 2})
	st := newStream("pod", ix, m, nil, nil, nil)
	for i := range 5 {
		st.handle(frames(uint64(i), chainBatch(i)))
	}
	require.Equal(t, PodScore{5, true}, ix.Score(seqTokens(0, 16*5), "", []string{"pod"}, nil)[0])
	st.handle(frames(2, chainBatch(0)))
	assert.False(t, ix.Ready("pod"), "a backwards jump loses what the pod did meanwhile")
	assert.False(t, ix.Score(seqTokens(0, 16*5), "", []string{"pod"}, nil)[0].Ready)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.gaps.WithLabelValues(gapLost)))
	st.handle(frames(3, payload(encArray, stored(77, nil, seqTokens(5000, 16), 16))))
	assert.True(t, ix.Ready("pod"), "caught up once it stored CatchUpBlocks blocks since")
}

// Malformed messages of every kind: each counted as a decode error, the
// pod cleared and falling back; the stream goes on.
func TestMalformedMessagesCounted(t *testing.T) {
	m := NewMetrics()
	ix := New(Config{Metrics: m})
	st := newStream("pod", ix, m, nil, nil, nil)
	st.handle(frames(0, chainBatch(0)))
	require.True(t, ix.Ready("pod"))
	bad := [][][]byte{
		frames(1, []byte{0x93, 0xc1, 0xff}),            // msgpack that is not
		frames(2, mustMarshal(map[string]any{"x": 1})), // msgpack of the wrong shape
		frames(3, nil), // an empty payload
		{[]byte("kv@pod@m"), []byte{1, 2, 3}, chainBatch(1)}, // a sequence number of 3 bytes
		{[]byte("kv@pod@m")}, // one frame
	}
	for i, f := range bad {
		st.handle(f)
		assert.False(t, ix.Ready("pod"), "case %d", i)
		assert.Equal(t, float64(i+1), testutil.ToFloat64(m.decodeErrs), "case %d", i)
	}
	assert.Zero(t, ix.Stats().Blocks, "nothing is kept of a pod whose events broke")
}

// More pods than the index takes: their messages are refused and counted,
// and they fall back; the pods already tracked are untouched.
func TestRefusedPodsCounted(t *testing.T) {
	m := NewMetrics()
	ix := New(Config{Metrics: m, MaxPods: 3})
	for i := range 5 {
		st := newStream(fmt.Sprint("pod-", i), ix, m, nil, nil, nil)
		st.handle(frames(0, chainBatch(0)))
		st.handle(frames(1, chainBatch(1)))
	}
	assert.Equal(t, 4.0, testutil.ToFloat64(m.refused), "two messages each from two pods")
	scores := ix.Score(seqTokens(0, 32), "", []string{"pod-0", "pod-2", "pod-3", "pod-4"}, nil)
	assert.Equal(t, []PodScore{{2, true}, {2, true}, {0, false}, {0, false}}, scores)
}

// A storm: far more blocks than the index may hold, as fast as they come.
// The index stays within its bounds and memory, counts what it evicted,
// and the pod keeps scoring from what it holds.
func TestStormStaysBounded(t *testing.T) {
	m := NewMetrics()
	const maxBlocks = 4096
	ix := New(Config{Metrics: m, MaxBlocks: maxBlocks, MaxBlocksPerPod: maxBlocks})
	st := newStream("pod", ix, m, nil, nil, nil)
	const n, per = 2000, 64 // 128,000 blocks
	for i := range n {
		st.handle(frames(uint64(i), payload(encArray, stored(uint64(i*per), nil, seqTokens(i*per*16, per*16), 16))))
	}
	s := ix.Stats()
	assert.Equal(t, maxBlocks, s.Blocks)
	assert.Equal(t, float64(n*per-maxBlocks), testutil.ToFloat64(m.blocksTotal.WithLabelValues(blocksEvicted)))
	assert.Less(t, s.Bytes, 1<<20, "index bytes %d for %d blocks", s.Bytes, s.Blocks)
	last := (n - 1) * per * 16
	assert.Equal(t, PodScore{per, true}, ix.Score(seqTokens(last, per*16), "", []string{"pod"}, nil)[0], "the latest blocks are held")
}
