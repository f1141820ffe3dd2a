package replicas

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// What arrives out of order or twice still counts once: an end that comes
// before its pick (the request was shorter than the gossip lag), a
// duplicated packet, a pick for an endpoint not discovered here, a gap in a
// peer's numbering.
func TestReceiveOutOfOrderDuplicateUnknown(t *testing.T) {
	f := newFleet(2)
	n := start(t, f, nil, nil)
	ep := f.eps[0]
	send := func(b wireBatch) {
		b.From, b.SentAt = "peer", time.Now().UnixNano()
		data, err := encode(nil, kindBatch, &b)
		require.NoError(t, err)
		n.receive(data)
	}
	send(wireBatch{Seq: 1, Ends: []uint64{42}})
	send(wireBatch{Seq: 2, Picks: []wirePick{{ID: 42, Endpoint: ep.Addr, Prompt: 10}}})
	require.Zero(t, n.inFlight(ep), "the end that came first ends the pick")

	p := wirePick{ID: 43, Endpoint: ep.Addr, Strategy: strategyCode("PREFIX_CACHE"), Hashes: chain(3, 8)}
	send(wireBatch{Seq: 3, Picks: []wirePick{p}})
	send(wireBatch{Seq: 3, Picks: []wirePick{p}})
	require.Equal(t, 1, n.inFlight(ep), "a duplicate is applied once")
	require.Equal(t, 8, n.matches(ep, p.Hashes))

	send(wireBatch{Seq: 6, Picks: []wirePick{{ID: 44, Endpoint: "10.9.9.9:8000"}}})
	require.Equal(t, 1.0, testutil.ToFloat64(n.m.dropped.WithLabelValues(dropUnknownEndpoint)))
	require.Zero(t, testutil.ToFloat64(n.m.lost), "batches 4 and 5 may still come")
	send(wireBatch{Seq: 5})
	send(wireBatch{Seq: 6 + seqWindowSize})
	require.Equal(t, 1.0, testutil.ToFloat64(n.m.lost), "batch 4 never came")
	require.EqualValues(t, 2, testutil.ToFloat64(n.m.recvPicks))

	n.receive([]byte{kindBatch, 0xc1})
	n.receive([]byte{77})
	require.Equal(t, 2.0, testutil.ToFloat64(n.m.dropped.WithLabelValues(dropDecode)), "unreadable and unknown kinds are counted, not fatal")
}

// wirePickBefore is wirePick as the release before LATENCY's picks were
// shared encoded it.
type wirePickBefore struct {
	_struct  struct{} `codec:",toarray"` //nolint:unused // codec option
	ID       uint64
	Strategy uint8
	Endpoint string
	AgeUS    uint32
	Prompt   uint32
	Blocks   uint16
	Hashes   []uint64
}

// A rolling upgrade: each release reads the other's picks, the older one
// without the fields it does not know, the newer one with zeros for them,
// and a strategy code the older one does not know reads as DEFAULT.
func TestWirePickAcrossReleases(t *testing.T) {
	now := wirePick{ID: 7, Strategy: strategyCode("LATENCY"), Endpoint: "10.0.0.1:8000", AgeUS: 3, Prompt: 1550, Blocks: 2,
		Hashes: []uint64{9}, MaxTokens: 1800, Model: "m"}
	b, err := encode(nil, kindBatch, &wireBatch{From: "a", Seq: 1, Picks: []wirePick{now}})
	require.NoError(t, err)
	var old struct {
		_struct struct{} `codec:",toarray"` //nolint:unused // codec option
		From    string
		Seq     uint64
		SentAt  int64
		Picks   []wirePickBefore
		Ends    []uint64
	}
	require.NoError(t, decode(b, kindBatch, &old))
	require.Equal(t, wirePickBefore{ID: 7, Strategy: now.Strategy, Endpoint: now.Endpoint, AgeUS: 3, Prompt: 1550, Blocks: 2, Hashes: []uint64{9}}, old.Picks[0])
	require.Equal(t, "LATENCY", string(strategyOf(now.Strategy)))
	require.Equal(t, "DEFAULT", string(strategyOf(uint8(len(strategies)))), "a code from a newer release")

	old.Picks[0].Strategy = strategyCode("PREFIX_CACHE")
	b, err = encode(nil, kindBatch, &old)
	require.NoError(t, err)
	var got wireBatch
	require.NoError(t, decode(b, kindBatch, &got))
	require.Equal(t, wirePick{ID: 7, Strategy: old.Picks[0].Strategy, Endpoint: now.Endpoint, AgeUS: 3, Prompt: 1550, Blocks: 2, Hashes: []uint64{9}}, got.Picks[0])
	require.LessOrEqual(t, len(b)-1, batchOverhead("a")+pickSizeBound(&now), "the size bound holds with the new fields")
}
