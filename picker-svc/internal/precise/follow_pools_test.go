package precise

import (
	"context"
	"encoding/binary"
	"io"
	"log"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/kvevents"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// pools is a view of several precise pools.
func pools(byPool map[string][]string) *datastore.View {
	v := &datastore.View{Pools: map[string]*datastore.PoolView{}}
	for name, addrs := range byPool {
		pv := &datastore.PoolView{Pool: inference.Pool{Name: name, Strategy: pickapi.StrategyPrecisePrefixCache}}
		for _, a := range addrs {
			pv.Endpoints = append(pv.Endpoints, scrape.NewEndpoint(a, scrape.Config{}))
		}
		v.Pools[name] = pv
	}
	return v
}

// Each pool's engines are dialled at its own port, topic and replay port;
// a pool whose settings change is subscribed again with the new ones.
func TestFollowerPerPoolPublishers(t *testing.T) {
	f := &Follower{Index: kvevents.New(kvevents.Config{}), Default: Publisher{Port: 5557},
		Pools: map[string]Publisher{"chat": {Port: 6000, ReplayPort: 6001, Topic: "kv@chat"}}}
	v := pools(map[string][]string{"chat": {"10.0.0.1:8000"}, "code": {"10.0.0.2:8000"}})
	want := f.preciseAddrs(v)
	assert.Equal(t, map[string]Publisher{"10.0.0.1:8000": {Port: 6000, ReplayPort: 6001, Topic: "kv@chat"}, "10.0.0.2:8000": {Port: 5557}}, want)
	assert.Equal(t, kvevents.Source{Pod: "10.0.0.1:8000", Endpoint: "tcp://10.0.0.1:6000", Replay: "tcp://10.0.0.1:6001", Topic: "kv@chat"},
		f.source("10.0.0.1:8000", want["10.0.0.1:8000"]))
	assert.Equal(t, kvevents.Source{Pod: "10.0.0.2:8000", Endpoint: "tcp://10.0.0.2:5557"}, f.source("10.0.0.2:8000", want["10.0.0.2:8000"]))

	f.View = func() *datastore.View { return v }
	assert.Equal(t, "tcp://10.0.0.1:6001", f.ReplayOf("10.0.0.1:8000"), "bind mode asks the pool's replay port")
	assert.Equal(t, "", f.ReplayOf("10.0.0.2:8000"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.reconcile(ctx, want, false)
	first := f.subs["10.0.0.1:8000"]
	f.Pools["chat"] = Publisher{Port: 6100}
	f.reconcile(ctx, f.preciseAddrs(v), false)
	assert.Equal(t, Publisher{Port: 6100}, f.subs["10.0.0.1:8000"].pub, "resubscribed with the new settings")
	assert.NotEqual(t, first, f.subs["10.0.0.1:8000"])
	assert.Equal(t, Publisher{Port: 5557}, f.subs["10.0.0.2:8000"].pub)
}

// End to end over ZeroMQ: the follower dials the pool's port and
// subscribes to the pool's topic only.
func TestFollowerDialsPoolPortAndTopic(t *testing.T) {
	pub := zmq4.NewPub(context.Background(), zmq4.WithLogger(log.New(io.Discard, "", 0)))
	require.NoError(t, pub.Listen("tcp://127.0.0.1:0"))
	defer pub.Close()
	_, port, err := net.SplitHostPort(pub.Addr().String())
	require.NoError(t, err)
	p, _ := strconv.Atoi(port)

	const addr = "127.0.0.1:8000"
	ix := kvevents.New(kvevents.Config{})
	v := pools(map[string][]string{"chat": {addr}})
	f := &Follower{View: func() *datastore.View { return v }, Index: ix, Default: Publisher{Port: 1},
		Pools: map[string]Publisher{"chat": {Port: p, Topic: "kv@chat"}}, Sub: kvevents.SubscriberConfig{RetryMin: time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.reconcile(ctx, f.preciseAddrs(v), true)
	require.Eventually(t, func() bool { return len(pub.(zmq4.Topics).Topics()) > 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, []string{"kv@chat"}, pub.(zmq4.Topics).Topics())

	tokens := make([]uint32, 32)
	for i := range tokens {
		tokens[i] = uint32(i + 1)
	}
	batch, err := msgpack.Marshal([]any{1.5e9, []any{[]any{"BlockStored", []uint64{1, 2}, nil, tokens, 16, nil, "GPU"}}, 0})
	require.NoError(t, err)
	send := func(topic string, seq uint64) {
		require.NoError(t, pub.SendMulti(zmq4.NewMsgFrom([]byte(topic), binary.BigEndian.AppendUint64(nil, seq), batch)))
	}
	send("kv@other@m", 0) // not subscribed: never arrives
	send("kv@chat@m", 0)
	require.Eventually(t, func() bool { return ix.Score(tokens, "", []string{addr}, nil)[0].Blocks == 2 }, 10*time.Second, time.Millisecond)
}
