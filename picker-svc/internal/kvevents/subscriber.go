package kvevents

import (
	"context"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/go-zeromq/zmq4"
)

// discardLogger silences the ZeroMQ library's own log lines (its errors
// reach us as return values).
var discardLogger = log.New(io.Discard, "", 0)

// Source is one engine's KV event publisher, as the subscriber dials it.
type Source struct {
	// Pod is the index's name for the engine (its address, say).
	Pod string
	// Endpoint is its PUB socket: tcp://10.0.0.5:5557 (vLLM's
	// --kv-events-config "endpoint", with the pod's address for "*").
	Endpoint string
	// Replay is its replay socket ("replay_endpoint"), "" when it has none.
	Replay string
	// Topic is the subscription prefix ("" receives every topic).
	Topic string
}

// SubscriberConfig tunes subscribers and listeners. Zero fields take defaults.
type SubscriberConfig struct {
	Index   *Index
	Metrics *Metrics
	Logger  *slog.Logger
	// RetryMin and RetryMax bound the wait before redialling a publisher
	// (doubling from min to max; defaults 100ms and 5s).
	RetryMin, RetryMax time.Duration
	// ReplayTimeout bounds one replay request (default 2s).
	ReplayTimeout time.Duration
	// MaxReplayBatches bounds what one replay may bring (default 10,000,
	// vLLM's default buffer_steps).
	MaxReplayBatches int
	// Trace, when set, is told the outcome of every message (tests).
	Trace func(pod string, seq uint64, outcome string)
}

func (c SubscriberConfig) withDefaults() SubscriberConfig {
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(5*time.Second, c.RetryMin)
	}
	if c.ReplayTimeout <= 0 {
		c.ReplayTimeout = 2 * time.Second
	}
	if c.MaxReplayBatches <= 0 {
		c.MaxReplayBatches = 10_000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c SubscriberConfig) replayer(endpoint string) replayer {
	if endpoint == "" {
		return nil
	}
	return &zmqReplayer{endpoint: endpoint, timeout: c.ReplayTimeout, limit: c.MaxReplayBatches, m: c.Metrics}
}

// Subscribe dials src's publisher and feeds its events to the index until
// ctx is done, redialling (with backoff) whenever it cannot connect or the
// connection breaks. A publisher that never answers costs a redial now and
// then and nothing else; its pod stays not caught up.
func Subscribe(ctx context.Context, src Source, cfg SubscriberConfig) {
	cfg = cfg.withDefaults()
	st := newStream(src.Pod, cfg.Index, cfg.Metrics, cfg.Logger, cfg.replayer(src.Replay), cfg.Trace)
	wait := cfg.RetryMin
	for ctx.Err() == nil {
		if receive(ctx, src, st) {
			wait = cfg.RetryMin // it was connected: the next try may come soon
		} else {
			cfg.Metrics.connectError()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, cfg.RetryMax)
	}
}

// receive connects once and reads until the connection or ctx ends; it
// reports whether it connected.
func receive(ctx context.Context, src Source, st *stream) bool {
	sock := zmq4.NewSub(ctx, zmq4.WithDialerMaxRetries(0), zmq4.WithLogger(discardLogger))
	defer sock.Close()
	if err := sock.Dial(guarded(src.Endpoint)); err != nil {
		return false
	}
	if err := sock.SetOption(zmq4.OptionSubscribe, src.Topic); err != nil {
		return true
	}
	st.catchUp()
	for {
		msg, err := sock.Recv()
		if err != nil {
			return true // the publisher went away (or ctx ended)
		}
		st.handle(msg.Frames)
	}
}
