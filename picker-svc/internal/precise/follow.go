package precise

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/kvevents"
)

// Follower keeps the index fed from the endpoints of every pool whose
// strategy is PRECISE_PREFIX_CACHE, as discovery changes them: one
// subscriber per endpoint (dialling the endpoint's host at Port), stopped
// and its pod forgotten when the endpoint leaves. In bind mode (Listen set)
// publishers dial in instead and the follower only forgets departed pods.
type Follower struct {
	View  func() *datastore.View
	Index *kvevents.Index
	// Sub tunes the subscribers (its Index is set from Index).
	Sub kvevents.SubscriberConfig
	// Port of every engine's publisher (vLLM's default 5557) and the topic
	// prefix to subscribe to ("": every topic).
	Port  int
	Topic string
	// ReplayPort of every engine's replay socket (0: none).
	ReplayPort int
	// Every is how often discovery's view is checked (default 1s).
	Every time.Duration

	mu   sync.Mutex
	subs map[string]context.CancelFunc // by endpoint address

	podMu    sync.Mutex
	podView  *datastore.View // the view podAddrs was made from
	podAddrs map[string]bool
}

// preciseAddrs lists the endpoint addresses of the pools that route precisely.
func preciseAddrs(v *datastore.View) map[string]bool {
	out := map[string]bool{}
	if v == nil {
		return out
	}
	for _, pv := range v.Pools {
		if pv.Pool.Strategy != pickapi.StrategyPrecisePrefixCache {
			continue
		}
		for _, ep := range pv.Endpoints {
			out[ep.Addr] = true
		}
	}
	return out
}

// PublisherOf is the publisher endpoint of the engine at addr (host:port).
func PublisherOf(addr string, port int) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return "tcp://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// Run follows discovery until ctx ends. dial says whether to subscribe to
// each endpoint (false in bind mode).
func (f *Follower) Run(ctx context.Context, dial bool) {
	every := f.Every
	if every <= 0 {
		every = time.Second
	}
	f.Sub.Index = f.Index
	t := time.NewTicker(every)
	defer t.Stop()
	var last *datastore.View
	for {
		if v := f.View(); v != last {
			f.reconcile(ctx, preciseAddrs(v), dial)
			last = v
		}
		select {
		case <-ctx.Done():
			f.reconcile(ctx, nil, dial)
			return
		case <-t.C:
		}
	}
}

// reconcile starts subscribers for new addresses and stops and forgets
// those gone.
func (f *Follower) reconcile(ctx context.Context, want map[string]bool, dial bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[string]context.CancelFunc{}
	}
	for addr, cancel := range f.subs {
		if !want[addr] {
			cancel()
			delete(f.subs, addr)
			f.Index.RemovePod(addr)
		}
	}
	for addr := range want {
		if _, ok := f.subs[addr]; ok {
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		f.subs[addr] = cancel
		if dial {
			go kvevents.Subscribe(sctx, kvevents.Source{Pod: addr, Endpoint: PublisherOf(addr, f.Port), Replay: f.ReplayOf(addr), Topic: f.Topic}, f.Sub)
		}
	}
}

// PodOf names the pod of a bind-mode message's topic: llm-d's
// kv@<pod>@<model>, where <pod> is the engine's address (host:port, or
// host alone when only one endpoint of the precise pools has that host).
func (f *Follower) PodOf(topic string) string {
	name := kvevents.PodFromTopic(topic)
	f.podMu.Lock()
	if v := f.View(); v != f.podView || f.podAddrs == nil {
		f.podView, f.podAddrs = v, preciseAddrs(v)
	}
	addrs := f.podAddrs
	f.podMu.Unlock()
	if addrs[name] {
		return name
	}
	match := ""
	for a := range addrs {
		if host, _, err := net.SplitHostPort(a); err == nil && host == name {
			if match != "" {
				return name // ambiguous: several engines on that host
			}
			match = a
		}
	}
	if match != "" {
		return match
	}
	return name
}

// ReplayOf is the replay socket of the engine at addr ("" without one).
func (f *Follower) ReplayOf(addr string) string {
	if f.ReplayPort == 0 {
		return ""
	}
	return PublisherOf(addr, f.ReplayPort)
}
