package vllmsim

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// These tests read the simulator's KV events over ZeroMQ on loopback with
// a plain SUB socket and a generic msgpack decoder, as any consumer would.

const waitLong = 10 * time.Second

func kvServer(t *testing.T, encoding string, mutate func(*KVEventsConfig)) *Server {
	t.Helper()
	replay := "tcp://127.0.0.1:*"
	kv := KVEventsConfig{EnableKVCacheEvents: true, Endpoint: "tcp://127.0.0.1:*", ReplayEndpoint: &replay,
		Topic: "kv@sim-0@m", Encoding: encoding}
	if mutate != nil {
		mutate(&kv)
	}
	f := startFleet(t, Config{Model: "m", Speed: 1000, KVEvents: kv, LoRAModules: []LoRAModule{{"sql", "/sql"}}})
	return f.Servers[0]
}

// zmqReader receives messages from a socket into a channel, so tests can
// wait for them with a deadline.
type zmqReader struct {
	sock zmq4.Socket
	msgs chan zmq4.Msg
}

func newReader(t *testing.T, sock zmq4.Socket) *zmqReader {
	r := &zmqReader{sock: sock, msgs: make(chan zmq4.Msg, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := sock.Recv()
			if err != nil {
				return
			}
			r.msgs <- m
		}
	}()
	t.Cleanup(func() { _ = sock.Close(); <-done })
	return r
}

func (r *zmqReader) next(t *testing.T) zmq4.Msg {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(waitLong):
		t.Fatal("no message within the deadline")
		return zmq4.Msg{}
	}
}

func subscribe(t *testing.T, s *Server) *zmqReader {
	t.Helper()
	sub := zmq4.NewSub(context.Background())
	require.NoError(t, sub.Dial(s.KVEventsEndpoint()))
	require.NoError(t, sub.SetOption(zmq4.OptionSubscribe, ""))
	r := newReader(t, sub)
	require.Eventually(t, s.KVEventsSubscribed, waitLong, 5*time.Millisecond, "subscription reaches the publisher")
	return r
}

// batch is one decoded message.
type batch struct {
	topic  string
	seq    uint64
	ts     float64
	events []any
	rank   any
}

func decodeMsg(t *testing.T, m zmq4.Msg) batch {
	t.Helper()
	require.Len(t, m.Frames, 3, "topic, sequence, payload")
	require.Len(t, m.Frames[1], 8)
	var v []any
	require.NoError(t, msgpack.Unmarshal(m.Frames[2], &v))
	require.Len(t, v, 3, "[ts, events, data_parallel_rank]")
	ts, ok := v[0].(float64)
	require.True(t, ok, "ts is a float: %T", v[0])
	evs, ok := v[1].([]any)
	require.True(t, ok)
	return batch{topic: string(m.Frames[0]), seq: binary.BigEndian.Uint64(m.Frames[1]), ts: ts, events: evs, rank: v[2]}
}

func num(v any) uint64 {
	switch n := v.(type) {
	case int8:
		return uint64(n)
	case int16:
		return uint64(n)
	case int32:
		return uint64(n)
	case int64:
		return uint64(n)
	case uint8:
		return uint64(n)
	case uint16:
		return uint64(n)
	case uint32:
		return uint64(n)
	case uint64:
		return n
	}
	panic(fmt.Sprintf("not a number: %T", v))
}

func nums(v any) []uint64 {
	var out []uint64
	for _, x := range v.([]any) {
		out = append(out, num(x))
	}
	return out
}

// stored is a BlockStored read from either encoding by field name.
func fields(t *testing.T, ev any) map[string]any {
	t.Helper()
	if m, ok := ev.(map[string]any); ok {
		return m
	}
	a, ok := ev.([]any)
	require.True(t, ok, "an event is a map or an array: %T", ev)
	names := map[string][]string{
		"BlockStored":      {"type", "block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium", "lora_name"},
		"BlockRemoved":     {"type", "block_hashes", "medium"},
		"AllBlocksCleared": {"type"},
	}[a[0].(string)]
	require.Len(t, a, len(names), "positional %v", a[0])
	m := map[string]any{}
	for i, n := range names {
		m[n] = a[i]
	}
	return m
}

func tokenizeVia(t *testing.T, s *Server, body string) []uint64 {
	t.Helper()
	code, b := post(t, s.URL()+"/tokenize", body)
	require.Equal(t, 200, code, string(b))
	var r struct {
		Count  int      `json:"count"`
		Tokens []uint64 `json:"tokens"`
	}
	require.NoError(t, json.Unmarshal(b, &r))
	require.Equal(t, r.Count, len(r.Tokens))
	return r.Tokens
}

func TestKVEventsOverZMQ(t *testing.T) {
	for _, enc := range []string{EncodingMap, EncodingArray} {
		t.Run(enc, func(t *testing.T) {
			s := kvServer(t, enc, nil)
			r := subscribe(t, s)
			prompt := strings.Repeat("abcd", 40) // 40 tokens: 2 full blocks
			code, body := post(t, s.URL()+"/v1/completions", `{"model":"sql","prompt":"`+prompt+`","max_tokens":2}`)
			require.Equal(t, 200, code, string(body))

			b := decodeMsg(t, r.next(t))
			assert.Equal(t, "kv@sim-0@m", b.topic)
			assert.Equal(t, uint64(0), b.seq)
			assert.Equal(t, uint64(0), num(b.rank))
			assert.InDelta(t, float64(time.Now().Unix()), b.ts, 60)
			require.Len(t, b.events, 1)
			if enc == EncodingMap {
				m := b.events[0].(map[string]any)
				assert.Equal(t, []any{nil, nil}, m["extra_keys"])
				assert.Equal(t, uint64(0), num(m["group_idx"]))
				assert.Equal(t, "full_attention", m["kv_cache_spec_kind"])
			}
			ev := fields(t, b.events[0])
			assert.Equal(t, "BlockStored", ev["type"])
			assert.Len(t, ev["block_hashes"], 2)
			assert.Nil(t, ev["parent_block_hash"])
			want := tokenizeVia(t, s, `{"model":"sql","prompt":"`+prompt+`"}`)
			assert.Equal(t, want[:32], nums(ev["token_ids"]), "events carry exactly the ids /tokenize gives")
			assert.Equal(t, uint64(16), num(ev["block_size"]))
			assert.Equal(t, uint64(1), num(ev["lora_id"]))
			assert.Equal(t, "sql", ev["lora_name"])
			assert.Equal(t, "GPU", ev["medium"])

			// A chat request: its stored tokens are /tokenize's for the messages.
			msgs := `[{"role":"user","content":"` + strings.Repeat("wxyz", 30) + `"}]`
			code, body = post(t, s.URL()+"/v1/chat/completions", `{"messages":`+msgs+`,"max_tokens":1}`)
			require.Equal(t, 200, code, string(body))
			b = decodeMsg(t, r.next(t))
			assert.Equal(t, uint64(1), b.seq)
			ev = fields(t, b.events[0])
			want = tokenizeVia(t, s, `{"messages":`+msgs+`}`)
			got := nums(ev["token_ids"])
			assert.Equal(t, want[:len(got)], got)
			assert.Nil(t, ev["lora_id"])
			assert.Nil(t, ev["lora_name"])

			// Reset when idle: AllBlocksCleared.
			code, _ = post(t, s.URL()+"/reset_prefix_cache", "")
			require.Equal(t, 200, code)
			b = decodeMsg(t, r.next(t))
			assert.Equal(t, "AllBlocksCleared", fields(t, b.events[0])["type"])
		})
	}
}

func TestKVEventsEvictionAndReplay(t *testing.T) {
	s := startFleet(t, Config{Model: "m", Speed: 1000, NumGPUBlocks: 600, MaxModelLen: 8192, MaxNumBatchedTokens: 8192, KVEvents: KVEventsConfig{
		EnableKVCacheEvents: true, Endpoint: "tcp://127.0.0.1:*", ReplayEndpoint: ptr("tcp://127.0.0.1:*"), BufferSteps: 2}}).Servers[0]
	r := subscribe(t, s)
	complete := func(tag string, tokens int) {
		code, body := post(t, s.URL()+"/v1/completions", fmt.Sprintf(`{"prompt":"%s","max_tokens":1}`, text(tag, tokens)))
		require.Equal(t, 200, code, string(body))
	}
	complete("a", 6000)
	first := decodeMsg(t, r.next(t))
	storedA := nums(fields(t, first.events[0])["block_hashes"])
	require.Len(t, storedA, 375)

	// The next request needs blocks only evicting A's can give: the events
	// name A's blocks, the least recently freed first (A's last block).
	require.NoError(t, s.DropKVEvents(1))
	complete("b", 6000)
	complete("c", 16)
	third := decodeMsg(t, r.next(t))
	assert.Equal(t, uint64(2), third.seq, "seq 1 went missing")

	dealer := zmq4.NewDealer(context.Background())
	require.NoError(t, dealer.Dial(s.KVEventsReplayEndpoint()))
	rr := newReader(t, dealer)
	require.NoError(t, dealer.SendMulti(zmq4.NewMsgFrom(nil, binary.BigEndian.AppendUint64(nil, 0))))
	var seqs []uint64
	var missing batch
	for {
		m := rr.next(t)
		require.Len(t, m.Frames, 3, "empty delimiter, sequence, payload")
		seq := binary.BigEndian.Uint64(m.Frames[1])
		if seq == 1<<64-1 {
			assert.Empty(t, m.Frames[2], "the end marker has an empty payload")
			break
		}
		seqs = append(seqs, seq)
		if seq == 1 {
			missing = decodeMsg(t, zmq4.NewMsgFrom(nil, m.Frames[1], m.Frames[2]))
		}
	}
	assert.Equal(t, []uint64{1, 2}, seqs, "replay serves the buffered batches (buffer_steps 2) from the start asked")
	var removed []uint64
	for _, ev := range missing.events {
		f := fields(t, ev)
		if f["type"] == "BlockRemoved" {
			removed = append(removed, nums(f["block_hashes"])...)
		}
	}
	require.NotEmpty(t, removed)
	assert.Equal(t, storedA[len(storedA)-1], removed[0], "a request's last block is evicted first")
	for _, h := range removed {
		assert.Contains(t, storedA, h)
	}
}

func ptr[T any](v T) *T { return &v }

// TestKVEventsConnectMode: without a wildcard the publisher dials the
// subscriber, which binds (how llm-d gathers every pod's events).
func TestKVEventsConnectMode(t *testing.T) {
	sub := zmq4.NewSub(context.Background())
	require.NoError(t, sub.Listen("tcp://127.0.0.1:0"))
	require.NoError(t, sub.SetOption(zmq4.OptionSubscribe, "kv@"))
	r := newReader(t, sub)
	port := sub.Addr().(*net.TCPAddr).Port
	s := kvServer(t, EncodingMap, func(c *KVEventsConfig) {
		c.Endpoint = fmt.Sprintf("tcp://127.0.0.1:%d", port)
		c.ReplayEndpoint = nil
	})
	assert.Empty(t, s.KVEventsEndpoint(), "nothing to dial: the publisher connects")
	require.Eventually(t, s.KVEventsSubscribed, waitLong, 5*time.Millisecond)
	code, body := post(t, s.URL()+"/v1/completions", `{"prompt":"`+strings.Repeat("x", 64)+`","max_tokens":1}`)
	require.Equal(t, 200, code, string(body))
	b := decodeMsg(t, r.next(t))
	assert.Equal(t, "kv@sim-0@m", b.topic)
	assert.Equal(t, "BlockStored", fields(t, b.events[0])["type"])
}

func TestKVEventsConfig(t *testing.T) {
	c, err := ParseKVEventsConfig(`{"enable_kv_cache_events":true}`)
	require.NoError(t, err)
	assert.Equal(t, KVEventsConfig{EnableKVCacheEvents: true, Publisher: "zmq", Endpoint: "tcp://*:5557",
		BufferSteps: 10_000, HWM: 100_000, MaxQueueSize: 100_000, Encoding: EncodingMap}, c)
	assert.True(t, c.enabled())
	c, err = ParseKVEventsConfig(`{"enable_kv_cache_events":true,"publisher":"null"}`)
	require.NoError(t, err)
	assert.False(t, c.enabled())
	for _, bad := range []string{`{"enable_kv_cache_events":true,"bogus":1}`, `{"publisher":"kafka"}`,
		`{"endpoint":"http://x:1"}`, `{"replay_endpoint":"x"}`, `{"hwm":-1}`, `{`, `{} {}`} {
		_, err := ParseKVEventsConfig(bad)
		assert.Error(t, err, bad)
	}
	assert.True(t, endpointBinds("tcp://*:5557"))
	assert.True(t, endpointBinds("tcp://127.0.0.1:*"))
	assert.True(t, endpointBinds("ipc:///tmp/kv"))
	assert.False(t, endpointBinds("tcp://picker:5557"))
	assert.Equal(t, "tcp://*:5559", OffsetEndpointPort("tcp://*:5557", 2))
	assert.Equal(t, "tcp://127.0.0.1:*", OffsetEndpointPort("tcp://127.0.0.1:*", 2))
	assert.Equal(t, "inproc://kv_dp1", OffsetEndpointPort("inproc://kv", 1))
	_, err = Config{KVEvents: KVEventsConfig{EnableKVCacheEvents: true}, DisablePrefixCaching: true}.withDefaults()
	assert.Error(t, err, "events report the prefix cache")
}
