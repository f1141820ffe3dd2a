package kvevents

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/go-zeromq/zmq4"
)

// zmqReplayer asks a vLLM publisher's replay (ROUTER) socket for missed
// batches: a DEALER sends ["", start as 8 big-endian bytes] and reads
// ["", seq, payload] until seq is -1 (vLLM's ZmqEventPublisher._service_replay).
// Each request uses a fresh connection: gaps are rare, and a reply cut
// short by the deadline must not leak into the next.
type zmqReplayer struct {
	endpoint string
	timeout  time.Duration
	limit    int
	m        *Metrics
}

var replayEnd = ^uint64(0)

func (z *zmqReplayer) fetch(from uint64) ([]replayed, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), z.timeout)
	defer cancel()
	sock := zmq4.NewDealer(ctx, zmq4.WithDialerMaxRetries(0), zmq4.WithLogger(discardLogger))
	defer sock.Close()
	if err := sock.Dial(guarded(z.endpoint)); err != nil {
		z.m.connectError()
		return nil, false
	}
	if err := sock.SendMulti(zmq4.NewMsgFrom(nil, binary.BigEndian.AppendUint64(nil, from))); err != nil {
		return nil, false
	}
	var out []replayed
	for {
		msg, err := sock.Recv() // ends with ctx: the deadline closes the socket
		if err != nil || len(msg.Frames) != 3 || len(msg.Frames[1]) != 8 {
			return nil, false
		}
		seq := binary.BigEndian.Uint64(msg.Frames[1])
		if seq == replayEnd {
			return out, true
		}
		if len(out) >= z.limit {
			continue // read on to the end marker, keep the first limit
		}
		out = append(out, replayed{seq, msg.Frames[2]})
	}
}
