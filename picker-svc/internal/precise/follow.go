package precise

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/kvevents"
)

// Publisher is where a pool's engines publish KV events.
type Publisher struct {
	// Port of each engine's publisher (vLLM's default 5557).
	Port int
	// ReplayPort of each engine's replay socket (0: none).
	ReplayPort int
	// Topic is the prefix subscribed to ("": every topic).
	Topic string
}

// Follower keeps the index fed from the endpoints of every pool whose
// strategy reads the engines' events (PRECISE_PREFIX_CACHE, or any whose
// profile has precise_prefix), as discovery changes them: one
// subscriber per endpoint (dialling the endpoint's host at its pool's
// publisher port), stopped and its pod forgotten when the endpoint leaves,
// restarted when its pool's settings change. In bind mode publishers dial
// in instead and the follower only forgets departed pods.
type Follower struct {
	View  func() *datastore.View
	Index *kvevents.Index
	// Sub tunes the subscribers (its Index is set from Index).
	Sub kvevents.SubscriberConfig
	// Default is where engines publish; Pools override it by pool name.
	Default Publisher
	Pools   map[string]Publisher
	// Strategies whose pools are followed: those whose profile reads the
	// engines' events (nil: PRECISE_PREFIX_CACHE alone).
	Strategies map[pickapi.Strategy]bool
	// Every is how often discovery's view is checked (default 1s).
	Every time.Duration

	mu   sync.Mutex
	subs map[string]follow // by endpoint address

	podMu    sync.Mutex
	podView  *datastore.View // the view podAddrs was made from
	podAddrs map[string]Publisher
}

// follow is one running subscription.
type follow struct {
	pub    Publisher
	cancel context.CancelFunc
}

// publisherOf is the publisher settings of a pool.
func (f *Follower) publisherOf(pool string) Publisher {
	if p, ok := f.Pools[pool]; ok {
		return p
	}
	return f.Default
}

func (f *Follower) follows(st pickapi.Strategy) bool {
	if f.Strategies == nil {
		return st == pickapi.StrategyPrecisePrefixCache
	}
	return f.Strategies[st]
}

// preciseAddrs lists the endpoint addresses of the pools that route
// precisely, with their pool's publisher settings. An address in several
// such pools takes the settings of the first pool by name.
func (f *Follower) preciseAddrs(v *datastore.View) map[string]Publisher {
	out := map[string]Publisher{}
	if v == nil {
		return out
	}
	for _, name := range slices.Sorted(maps.Keys(v.Pools)) {
		pv := v.Pools[name]
		if !f.follows(pv.Pool.Strategy) {
			continue
		}
		for _, ep := range pv.Endpoints {
			if _, ok := out[ep.Addr]; !ok {
				out[ep.Addr] = f.publisherOf(pv.Pool.Name)
			}
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
	t := time.NewTicker(every)
	defer t.Stop()
	var last *datastore.View
	for {
		if v := f.View(); v != last {
			f.reconcile(ctx, f.preciseAddrs(v), dial)
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

// reconcile starts subscribers for new addresses, restarts those whose
// pool's settings changed, and stops and forgets those gone.
func (f *Follower) reconcile(ctx context.Context, want map[string]Publisher, dial bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[string]follow{}
	}
	for addr, s := range f.subs {
		pub, ok := want[addr]
		if !ok {
			f.Index.RemovePod(addr)
		}
		if !ok || pub != s.pub {
			s.cancel()
			delete(f.subs, addr)
		}
	}
	for addr, pub := range want {
		if _, ok := f.subs[addr]; ok {
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		f.subs[addr] = follow{pub: pub, cancel: cancel}
		if dial {
			sub := f.Sub
			sub.Index = f.Index
			go kvevents.Subscribe(sctx, f.source(addr, pub), sub)
		}
	}
}

// source is the subscription to the engine at addr.
func (f *Follower) source(addr string, pub Publisher) kvevents.Source {
	src := kvevents.Source{Pod: addr, Endpoint: PublisherOf(addr, pub.Port), Topic: pub.Topic}
	if pub.ReplayPort != 0 {
		src.Replay = PublisherOf(addr, pub.ReplayPort)
	}
	return src
}

// PodOf names the pod of a bind-mode message's topic: llm-d's
// kv@<pod>@<model>, where <pod> is the engine's address (host:port, or
// host alone when only one endpoint of the precise pools has that host).
func (f *Follower) PodOf(topic string) string {
	name := kvevents.PodFromTopic(topic)
	addrs := f.addrs()
	if _, ok := addrs[name]; ok {
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

// addrs is preciseAddrs of the current view, made once per view.
func (f *Follower) addrs() map[string]Publisher {
	f.podMu.Lock()
	defer f.podMu.Unlock()
	if v := f.View(); v != f.podView || f.podAddrs == nil {
		f.podView, f.podAddrs = v, f.preciseAddrs(v)
	}
	return f.podAddrs
}

// ReplayOf is the replay socket of the engine at addr ("" without one),
// for bind mode: at its pool's replay port.
func (f *Follower) ReplayOf(addr string) string {
	pub, ok := f.addrs()[addr]
	if !ok {
		pub = f.Default
	}
	if pub.ReplayPort == 0 {
		return ""
	}
	return PublisherOf(addr, pub.ReplayPort)
}
