package kvevents

import (
	"context"
	"strings"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Listener is the bind mode: one SUB socket that publishers dial into
// (vLLM with an endpoint without a wildcard connects), as llm-d gathers
// every pod's events. Each message's topic names its pod.
type Listener struct {
	sock    zmq4.Socket
	cfg     SubscriberConfig
	lcfg    ListenerConfig
	streams map[string]*stream
}

// ListenerConfig says how a listener tells publishers apart.
type ListenerConfig struct {
	// Topic is the subscription prefix ("" receives every topic).
	Topic string
	// PodOf names the pod of a message's topic (default: llm-d's
	// "kv@<pod>@<model>" gives <pod>; any other topic is its own name).
	PodOf func(topic string) string
	// ReplayOf gives a pod's replay endpoint ("" or nil: none).
	ReplayOf func(pod string) string
}

// PodFromTopic reads llm-d's topic convention "kv@<pod>@<model>".
func PodFromTopic(topic string) string {
	parts := strings.Split(topic, "@")
	if len(parts) == 3 && parts[0] == "kv" {
		return parts[1]
	}
	return topic
}

// Listen binds endpoint (tcp://*:5557, say).
func Listen(ctx context.Context, endpoint string, lcfg ListenerConfig, cfg SubscriberConfig) (*Listener, error) {
	cfg = cfg.withDefaults()
	if lcfg.PodOf == nil {
		lcfg.PodOf = PodFromTopic
	}
	sock := zmq4.NewSub(ctx, zmq4.WithLogger(discardLogger))
	if err := sock.Listen(guarded(endpoint)); err != nil {
		sock.Close()
		return nil, err
	}
	if err := sock.SetOption(zmq4.OptionSubscribe, lcfg.Topic); err != nil {
		sock.Close()
		return nil, err
	}
	return &Listener{sock: sock, cfg: cfg, lcfg: lcfg, streams: map[string]*stream{}}, nil
}

// Endpoint is the bound address (tcp://host:port).
func (l *Listener) Endpoint() string { return "tcp://" + l.sock.Addr().String() }

// Run reads until ctx is done, then closes the socket.
func (l *Listener) Run(ctx context.Context) {
	go func() { <-ctx.Done(); l.sock.Close() }()
	for {
		msg, err := l.sock.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// One publisher's connection broke; the socket serves the others.
			// Pause briefly should errors repeat, not spin.
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if len(msg.Frames) == 0 {
			l.cfg.Metrics.decodeError()
			continue
		}
		l.stream(string(msg.Frames[0])).handle(msg.Frames)
	}
}

func (l *Listener) stream(topic string) *stream {
	pod := l.lcfg.PodOf(topic)
	st := l.streams[pod]
	if st == nil {
		var rp replayer
		if l.lcfg.ReplayOf != nil {
			rp = l.cfg.replayer(l.lcfg.ReplayOf(pod))
		}
		st = newStream(pod, l.cfg.Index, l.cfg.Metrics, l.cfg.Logger, rp, l.cfg.Trace)
		if len(l.streams) < l.cfg.Index.cfg.MaxPods {
			l.streams[pod] = st // past the bound the index refuses the pod anyway
		}
	}
	return st
}
