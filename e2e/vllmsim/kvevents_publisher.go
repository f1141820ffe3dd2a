package vllmsim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/go-zeromq/zmq4"
)

// replayEnd is the sequence number that ends a replay answer: -1 as 8
// big-endian bytes (vLLM's ZmqEventPublisher.END_SEQ).
var replayEnd = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// kvPublisher is vLLM's ZmqEventPublisher: a PUB socket sending each batch
// as three frames (topic, 8-byte big-endian sequence number from 0, msgpack
// payload), a buffer of the last BufferSteps payloads and, with a replay
// endpoint, a ROUTER socket that answers a request [identity, "", start
// sequence] with every buffered batch from start ([identity, "", seq,
// payload] each) and then [identity, "", -1, ""].
type kvPublisher struct {
	cfg    KVEventsConfig
	log    *slog.Logger
	enc    *kvEncoder
	topic  []byte
	pub    zmq4.Socket
	replay zmq4.Socket
	queue  chan kvBatch
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	ring    []bufferedBatch // the last BufferSteps batches, oldest at head
	head    int
	nextSeq uint64
	drop    int // the next drop batches are buffered but not sent (dropKVEvents)
}

type bufferedBatch struct {
	seq     uint64
	payload []byte
}

func newKVPublisher(cfg KVEventsConfig, blockSize int, loras []LoRAModule, log *slog.Logger) (*kvPublisher, error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &kvPublisher{
		cfg: cfg, log: log, enc: newKVEncoder(cfg.Encoding, blockSize, loras), topic: []byte(cfg.Topic),
		queue: make(chan kvBatch, cfg.MaxQueueSize), ctx: ctx, cancel: cancel,
	}
	opts := []zmq4.Option{zmq4.WithLogger(newZMQLogger(log))}
	binds := endpointBinds(cfg.Endpoint)
	if !binds {
		// Redial a subscriber that went away (only when connecting: the
		// library would otherwise dial its own listening address).
		opts = append(opts, zmq4.WithDialerMaxRetries(-1), zmq4.WithAutomaticReconnect(true))
	}
	p.pub = zmq4.NewPub(ctx, opts...)
	if err := p.pub.SetOption(zmq4.OptionHWM, cfg.HWM); err != nil {
		p.close()
		return nil, fmt.Errorf("kv events: %w", err)
	}
	if binds {
		if err := p.pub.Listen(cfg.Endpoint); err != nil {
			p.close()
			return nil, fmt.Errorf("kv events: %w", err)
		}
	} else {
		// Like libzmq's connect, never fail: keep dialling until the
		// subscriber is there (or the server stops).
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := p.pub.Dial(cfg.Endpoint); err != nil && ctx.Err() == nil {
				log.Warn("vllm-sim kv events: cannot connect", "endpoint", cfg.Endpoint, "err", err)
			}
		}()
	}
	if cfg.ReplayEndpoint != nil {
		p.replay = zmq4.NewRouter(ctx, zmq4.WithLogger(newZMQLogger(log)))
		if err := p.replay.Listen(*cfg.ReplayEndpoint); err != nil {
			p.close()
			return nil, fmt.Errorf("kv events replay: %w", err)
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serveReplay() }()
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.run() }()
	return p, nil
}

// publish queues a batch; like vLLM's, it waits while the queue is full.
func (p *kvPublisher) publish(b kvBatch) {
	select {
	case p.queue <- b:
	case <-p.ctx.Done():
	}
}

func (p *kvPublisher) run() {
	for {
		select {
		case <-p.ctx.Done():
			return
		case b := <-p.queue:
			p.send(b)
		}
	}
}

func (p *kvPublisher) send(b kvBatch) {
	payload := bytes.Clone(p.enc.encode(b))
	p.mu.Lock()
	seq := p.nextSeq
	p.nextSeq++
	dropped := p.drop > 0
	if dropped {
		p.drop--
	}
	p.buffer(seq, payload)
	p.mu.Unlock()
	if dropped {
		return
	}
	msg := zmq4.NewMsgFrom(p.topic, binary.BigEndian.AppendUint64(nil, seq), payload)
	if err := p.pub.SendMulti(msg); err != nil && p.ctx.Err() == nil {
		p.log.Warn("vllm-sim kv events: send", "seq", seq, "err", err)
	}
}

// buffer keeps the last BufferSteps batches for replay. Callers hold p.mu.
func (p *kvPublisher) buffer(seq uint64, payload []byte) {
	if p.cfg.BufferSteps == 0 {
		return
	}
	if len(p.ring) < p.cfg.BufferSteps {
		p.ring = append(p.ring, bufferedBatch{seq, payload})
		return
	}
	p.ring[p.head] = bufferedBatch{seq, payload}
	p.head = (p.head + 1) % len(p.ring)
}

// buffered returns the buffered batches with seq >= start, oldest first.
func (p *kvPublisher) buffered(start uint64) []bufferedBatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []bufferedBatch
	for i := range p.ring {
		b := p.ring[(p.head+i)%len(p.ring)]
		if b.seq >= start {
			out = append(out, b)
		}
	}
	return out
}

func (p *kvPublisher) serveReplay() {
	for {
		msg, err := p.replay.Recv()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			continue // a client went away; the socket still serves others
		}
		if len(msg.Frames) != 3 || len(msg.Frames[2]) == 0 || len(msg.Frames[2]) > 8 {
			p.log.Warn("vllm-sim kv events: invalid replay request", "frames", len(msg.Frames))
			continue
		}
		id, start := msg.Frames[0], msg.Frames[2]
		var seq [8]byte
		copy(seq[8-len(start):], start)
		for _, b := range p.buffered(binary.BigEndian.Uint64(seq[:])) {
			reply := zmq4.NewMsgFrom(id, nil, binary.BigEndian.AppendUint64(nil, b.seq), b.payload)
			if err := p.replay.SendMulti(reply); err != nil {
				break
			}
		}
		_ = p.replay.SendMulti(zmq4.NewMsgFrom(id, nil, replayEnd, nil))
	}
}

// dropNext makes the next n batches go missing on the PUB socket (as if
// lost on the network) while they still get sequence numbers and stay
// replayable: how tests produce a sequence gap.
func (p *kvPublisher) dropNext(n int) {
	p.mu.Lock()
	p.drop += n
	p.mu.Unlock()
}

// subscribed reports whether a subscriber's subscription has reached the
// PUB socket: messages sent before that are dropped (ZeroMQ's slow joiner).
func (p *kvPublisher) subscribed() bool {
	t, ok := p.pub.(zmq4.Topics)
	return ok && len(t.Topics()) > 0
}

// endpoint is the PUB socket's dialable address once bound ("" when it
// connects): a wildcard host becomes 127.0.0.1.
func (p *kvPublisher) endpoint() string { return dialable(p.pub, p.cfg.Endpoint) }

// replayEndpoint is the ROUTER socket's dialable address ("" without one).
func (p *kvPublisher) replayEndpoint() string {
	if p.replay == nil {
		return ""
	}
	return dialable(p.replay, *p.cfg.ReplayEndpoint)
}

func dialable(s zmq4.Socket, configured string) string {
	a := s.Addr()
	if a == nil {
		return ""
	}
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return configured // ipc and inproc addresses are dialable as configured
	}
	host := ta.IP
	if host.IsUnspecified() {
		host = net.IPv4(127, 0, 0, 1)
	}
	return "tcp://" + net.JoinHostPort(host.String(), fmt.Sprint(ta.Port))
}

func (p *kvPublisher) close() {
	p.cancel()
	if p.replay != nil {
		_ = p.replay.Close()
	}
	_ = p.pub.Close()
	p.wg.Wait()
}

// newZMQLogger routes the ZeroMQ library's log lines to slog at debug level.
func newZMQLogger(l *slog.Logger) *log.Logger { return log.New(zmqLogWriter{l}, "", 0) }

type zmqLogWriter struct{ log *slog.Logger }

func (w zmqLogWriter) Write(b []byte) (int, error) {
	w.log.Debug("vllm-sim kv events: zmq", "msg", strings.TrimSpace(string(b)))
	return len(b), nil
}

var errNoKVEvents = errors.New("KV cache events are not enabled on this server")
