package kvevents

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run subscribers against ZeroMQ publishers on loopback: a PUB
// socket and, for replay, a ROUTER answering as vLLM's does.

const deadline = 10 * time.Second

type traced struct {
	pod     string
	seq     uint64
	outcome string
}

type rig struct {
	ix    *Index
	m     *Metrics
	trace chan traced
	cfg   SubscriberConfig
}

func newRig(t *testing.T, icfg Config) *rig {
	r := &rig{m: NewMetrics(), trace: make(chan traced, 1<<16)}
	icfg.Metrics = r.m
	r.ix = New(icfg)
	r.cfg = SubscriberConfig{Index: r.ix, Metrics: r.m, RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond,
		Trace: func(pod string, seq uint64, outcome string) { r.trace <- traced{pod, seq, outcome} }}
	return r
}

// next waits for the next traced message.
func (r *rig) next(t *testing.T) traced {
	t.Helper()
	select {
	case e := <-r.trace:
		return e
	case <-time.After(deadline):
		t.Fatal("no message handled within the deadline")
		return traced{}
	}
}

// connected skips to the subscriber's next connection.
func (r *rig) connected(t *testing.T) {
	t.Helper()
	for e := r.next(t); e.outcome != TraceConnected; e = r.next(t) {
	}
}

func (r *rig) expect(t *testing.T, seq uint64, outcome string) {
	t.Helper()
	e := r.next(t)
	assert.Equal(t, traced{e.pod, seq, outcome}, e)
}

// subscribe starts a subscriber and waits until it connected.
func (r *rig) subscribe(t *testing.T, src Source) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Subscribe(ctx, src, r.cfg) }()
	r.connected(t)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(deadline):
			t.Error("Subscribe did not return after cancel")
		}
	})
}

type testPub struct {
	sock  zmq4.Socket
	topic string
}

func newPub(t *testing.T, addr string) *testPub {
	p := &testPub{sock: zmq4.NewPub(context.Background(), zmq4.WithLogger(discardLogger)), topic: "kv@pod@m"}
	require.NoError(t, p.sock.Listen(addr))
	t.Cleanup(func() { p.sock.Close() })
	return p
}

func (p *testPub) endpoint() string { return "tcp://" + p.sock.Addr().String() }

func (p *testPub) waitSubscriber(t *testing.T) {
	require.Eventually(t, func() bool { return len(p.sock.(zmq4.Topics).Topics()) > 0 }, deadline, time.Millisecond)
}

func (p *testPub) send(t *testing.T, seq uint64, payload []byte) {
	require.NoError(t, p.sock.SendMulti(zmq4.NewMsgFrom([]byte(p.topic), binary.BigEndian.AppendUint64(nil, seq), payload)))
}

// replayBuffer is what a test publisher has published (or lost), for
// its replay socket.
type replayBuffer struct {
	mu sync.Mutex
	m  map[uint64][]byte
}

func (b *replayBuffer) add(seq uint64, payload []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[uint64][]byte{}
	}
	b.m[seq] = payload
}

func (b *replayBuffer) get(seq uint64) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.m[seq]
	return p, ok
}

// replayServer answers vLLM's replay protocol from buf.
func replayServer(t *testing.T, buf *replayBuffer) string {
	sock := zmq4.NewRouter(context.Background(), zmq4.WithLogger(discardLogger))
	require.NoError(t, sock.Listen("tcp://127.0.0.1:0"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := sock.Recv()
			if err != nil {
				return
			}
			id, start := msg.Frames[0], binary.BigEndian.Uint64(msg.Frames[2])
			for seq := start; ; seq++ {
				b, ok := buf.get(seq)
				if !ok {
					break
				}
				_ = sock.SendMulti(zmq4.NewMsgFrom(id, nil, binary.BigEndian.AppendUint64(nil, seq), b))
			}
			_ = sock.SendMulti(zmq4.NewMsgFrom(id, nil, binary.BigEndian.AppendUint64(nil, replayEnd), nil))
		}
	}()
	t.Cleanup(func() { sock.Close(); <-done })
	return "tcp://" + sock.Addr().String()
}

// batches: batch i stores block i of a chain (tokens 16i..16i+15).
func chainBatch(i int) []byte {
	var parent *uint64
	if i > 0 {
		parent = u64(uint64(i - 1 + 100))
	}
	return payload(encArray, stored(uint64(i+100), parent, seqTokens(16*i, 16), 16))
}

func (r *rig) held(pod string, blocks int) PodScore {
	return r.ix.Score(seqTokens(0, 16*blocks), "", []string{pod}, nil)[0]
}

func TestSubscriberAppliesInOrder(t *testing.T) {
	r := newRig(t, Config{})
	pub := newPub(t, "tcp://127.0.0.1:0")
	r.subscribe(t, Source{Pod: "pod", Endpoint: pub.endpoint()})
	pub.waitSubscriber(t)
	for i := range 3 {
		pub.send(t, uint64(i), chainBatch(i))
		r.expect(t, uint64(i), TraceApplied)
	}
	assert.Equal(t, PodScore{3, true}, r.held("pod", 4))
}

func TestSubscriberGapReplayed(t *testing.T) {
	r := newRig(t, Config{})
	buf := &replayBuffer{}
	pub := newPub(t, "tcp://127.0.0.1:0")
	r.subscribe(t, Source{Pod: "pod", Endpoint: pub.endpoint(), Replay: replayServer(t, buf)})
	pub.waitSubscriber(t)
	for i := range 4 {
		buf.add(uint64(i), chainBatch(i))
	}
	pub.send(t, 0, chainBatch(0))
	r.expect(t, 0, TraceApplied)
	pub.send(t, 3, chainBatch(3)) // 1 and 2 went missing
	r.expect(t, 3, TraceReplayed)
	assert.Equal(t, PodScore{4, true}, r.held("pod", 5))
	assert.Equal(t, 1.0, testutil.ToFloat64(r.m.gaps.WithLabelValues(gapReplayed)))

	// Joining a publisher that has published 0..4: replay from 0 on
	// connecting makes the view complete at once; the live copy of a
	// replayed batch is not applied twice.
	buf.add(4, chainBatch(4))
	r2 := newRig(t, Config{})
	pub2 := newPub(t, "tcp://127.0.0.1:0")
	r2.subscribe(t, Source{Pod: "pod", Endpoint: pub2.endpoint(), Replay: replayServer(t, buf)})
	assert.Equal(t, PodScore{5, true}, r2.held("pod", 5))
	pub2.waitSubscriber(t)
	pub2.send(t, 4, chainBatch(4))
	pub2.send(t, 5, chainBatch(5))
	r2.expect(t, 5, TraceApplied)
	assert.Equal(t, PodScore{6, true}, r2.held("pod", 6))
}

func TestSubscriberGapLost(t *testing.T) {
	r := newRig(t, Config{CatchUpBlocks: 2})
	pub := newPub(t, "tcp://127.0.0.1:0")
	r.subscribe(t, Source{Pod: "pod", Endpoint: pub.endpoint(), Replay: "tcp://127.0.0.1:1"}) // replay unreachable
	pub.waitSubscriber(t)
	pub.send(t, 0, chainBatch(0))
	r.expect(t, 0, TraceApplied)
	pub.send(t, 2, chainBatch(2))
	r.expect(t, 2, TraceLost)
	assert.Equal(t, PodScore{0, false}, r.held("pod", 3), "events lost: fall back")
	assert.Equal(t, 1.0, testutil.ToFloat64(r.m.gaps.WithLabelValues(gapLost)))
	pub.send(t, 3, payload(encArray, stored(50, nil, seqTokens(1000, 16), 16)))
	r.expect(t, 3, TraceApplied)
	assert.False(t, r.ix.Ready("pod"))
	pub.send(t, 4, payload(encArray, stored(60, nil, seqTokens(2000, 16), 16)))
	r.expect(t, 4, TraceApplied)
	assert.True(t, r.ix.Ready("pod"), "caught up after CatchUpBlocks stored")
}

func TestSubscriberRestartAndMidStream(t *testing.T) {
	r := newRig(t, Config{})
	pub := newPub(t, "tcp://127.0.0.1:0")
	r.subscribe(t, Source{Pod: "pod", Endpoint: pub.endpoint()})
	pub.waitSubscriber(t)
	pub.send(t, 7, chainBatch(0))
	r.expect(t, 7, TraceLost)
	assert.False(t, r.ix.Ready("pod"), "joined mid-stream without replay: not caught up")
	assert.Zero(t, testutil.ToFloat64(r.m.gaps.WithLabelValues(gapLost)), "joining is not a gap")
	pub.send(t, 0, chainBatch(0))
	r.expect(t, 0, TraceRestart)
	assert.Equal(t, PodScore{1, true}, r.held("pod", 1), "sequence 0: a fresh engine, complete from here")
	assert.Equal(t, 1.0, testutil.ToFloat64(r.m.gaps.WithLabelValues(gapRestart)))
}

func TestSubscriberMalformed(t *testing.T) {
	r := newRig(t, Config{})
	pub := newPub(t, "tcp://127.0.0.1:0")
	r.subscribe(t, Source{Pod: "pod", Endpoint: pub.endpoint()})
	pub.waitSubscriber(t)
	pub.send(t, 0, chainBatch(0))
	r.expect(t, 0, TraceApplied)
	pub.send(t, 1, []byte{0x93, 0xc1, 0xff})
	r.expect(t, 1, TraceBad)
	assert.False(t, r.ix.Ready("pod"))
	require.NoError(t, pub.sock.SendMulti(zmq4.NewMsgFrom([]byte("kv@pod@m"), []byte{1, 2})))
	r.expect(t, 0, TraceBad)
	pub.send(t, 2, chainBatch(2))
	r.expect(t, 2, TraceApplied)
	assert.Equal(t, 2.0, testutil.ToFloat64(r.m.decodeErrs))
	assert.False(t, r.ix.Ready("pod"))
}

func TestSubscriberReconnectsToRestartedPublisher(t *testing.T) {
	r := newRig(t, Config{})
	pub := newPub(t, "tcp://127.0.0.1:0")
	ep := pub.endpoint()
	r.subscribe(t, Source{Pod: "pod", Endpoint: ep})
	pub.waitSubscriber(t)
	pub.send(t, 0, chainBatch(0))
	pub.send(t, 1, chainBatch(1))
	r.expect(t, 0, TraceApplied)
	r.expect(t, 1, TraceApplied)
	pub.sock.Close()
	pub2 := newPub(t, ep)
	r.connected(t)
	pub2.waitSubscriber(t)
	pub2.send(t, 0, payload(encArray, stored(9, nil, seqTokens(500, 16), 16)))
	r.expect(t, 0, TraceRestart)
	assert.Equal(t, PodScore{0, true}, r.held("pod", 2), "the restarted engine's cache is empty")
}

func TestSubscriberPublisherNeverThere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // a free port nobody listens on
	r := newRig(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Subscribe(ctx, Source{Pod: "pod", Endpoint: "tcp://" + addr}, r.cfg) }()
	require.Eventually(t, func() bool { return testutil.ToFloat64(r.m.connectErrs) >= 3 }, deadline, time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("Subscribe did not return")
	}
	assert.False(t, r.ix.Ready("pod"))
	assert.Zero(t, r.ix.Stats().Pods, "nothing heard, nothing kept")
}

// TestListenerBindMode: publishers dial in; topics name the pods.
func TestListenerBindMode(t *testing.T) {
	r := newRig(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	l, err := Listen(ctx, "tcp://127.0.0.1:0", ListenerConfig{Topic: "kv@"}, r.cfg)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var pubs []*testPub
	for _, pod := range []string{"a", "b"} {
		p := &testPub{sock: zmq4.NewPub(context.Background(), zmq4.WithLogger(discardLogger)), topic: "kv@" + pod + "@m"}
		require.NoError(t, p.sock.Dial(l.Endpoint()))
		t.Cleanup(func() { p.sock.Close() })
		p.waitSubscriber(t)
		pubs = append(pubs, p)
	}
	pubs[0].send(t, 0, chainBatch(0))
	pubs[1].send(t, 0, chainBatch(0))
	pubs[1].send(t, 1, chainBatch(1))
	got := map[string]int{}
	for range 3 {
		e := r.next(t)
		got[e.pod]++
	}
	assert.Equal(t, map[string]int{"a": 1, "b": 2}, got)
	assert.Equal(t, []PodScore{{1, true}, {2, true}}, r.ix.Score(seqTokens(0, 32), "", []string{"a", "b"}, nil))
	assert.Equal(t, "pod-7", PodFromTopic("kv@pod-7@meta-llama/Llama-3.1-8B"))
	assert.Equal(t, "plain", PodFromTopic("plain"))
}

// TestSubscriberStorm: a publisher sending as fast as it can; every batch
// arrives (no high-water mark here), and the index stays in its bounds.
func TestSubscriberStorm(t *testing.T) {
	r := newRig(t, Config{MaxBlocksPerPod: 5000, MaxBlocks: 5000})
	pub := newPub(t, "tcp://127.0.0.1:0")
	r.subscribe(t, Source{Pod: "pod", Endpoint: pub.endpoint()})
	pub.waitSubscriber(t)
	const n = 3000
	for i := range n {
		evs := []tev{stored(uint64(4*i), nil, seqTokens(64*i, 64), 16)}
		if i%2 == 1 {
			evs = append(evs, tev{kind: BlockRemoved, hashes: []uint64{uint64(4*i - 4), 999_999_999}, medium: "GPU"})
		}
		pub.send(t, uint64(i), payload(encMap, evs...))
	}
	for i := range n {
		e := r.next(t)
		require.Equal(t, traced{"pod", uint64(i), TraceApplied}, e)
	}
	st := r.ix.Stats()
	assert.LessOrEqual(t, st.Blocks, 5000)
	assert.True(t, st.Blocks > 4000, "%d", st.Blocks)
	assert.Equal(t, float64(n/2), testutil.ToFloat64(r.m.blocksTotal.WithLabelValues(blocksUnknownRemoved)))
}
