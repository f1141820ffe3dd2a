package replicas

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// How long shared state may take to reach a peer in these tests: the
// flush interval plus loopback, with a loaded machine's slack.
const lagBound = 2 * time.Second

// fleet is a few endpoints every replica of a test discovers alike.
type fleet struct {
	eps    []*scrape.Endpoint
	byAddr map[string]*scrape.Endpoint
}

func newFleet(n int) *fleet {
	f := &fleet{byAddr: map[string]*scrape.Endpoint{}}
	for i := range n {
		ep := scrape.NewEndpoint(fmt.Sprintf("10.0.0.%d:8000", i+1), scrape.Config{StaleAfter: time.Hour})
		f.eps = append(f.eps, ep)
		f.byAddr[ep.Addr] = ep
	}
	f.scraped(time.Now())
	return f
}

// scraped stores a fresh snapshot on every endpoint, as a scrape would.
func (f *fleet) scraped(now time.Time) {
	for _, ep := range f.eps {
		ep.Store(&scrape.Snapshot{ScrapedAt: now, RequestedAt: now, Waiting: 1, Running: 2, KVCacheUsage: 0.2})
	}
}

func (f *fleet) lookup(addr string) *scrape.Endpoint { return f.byAddr[addr] }

type node struct {
	*Replica
	sched *scheduling.Scheduler
	reg   *prometheus.Registry
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// start runs a replica on loopback that joins peers.
func start(t testing.TB, f *fleet, peers []string, tune func(*Config)) *node {
	t.Helper()
	sched, err := scheduling.New(scheduling.DefaultConfig())
	require.NoError(t, err)
	cfg := Config{Listen: "127.0.0.1:0", Peers: peers, FlushInterval: time.Millisecond, WarmupTimeout: 5 * time.Second}
	if tune != nil {
		tune(&cfg)
	}
	reg := prometheus.NewRegistry()
	r, err := New(cfg, sched, f.lookup, nil, reg, quiet)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = r.Close()
	})
	return &node{Replica: r, sched: sched, reg: reg}
}

// group starts n replicas that find each other through the first.
func group(t testing.TB, f *fleet, n int, tune func(*Config)) []*node {
	first := start(t, f, nil, tune)
	nodes := []*node{first}
	for len(nodes) < n {
		nodes = append(nodes, start(t, f, []string{first.Addr()}, tune))
	}
	for _, nd := range nodes {
		require.Eventually(t, func() bool { return nd.Warm() && nd.Members() == n }, lagBound, time.Millisecond)
	}
	return nodes
}

func (n *node) pick(t *testing.T, f *fleet, hashes []uint64) scheduling.Result {
	t.Helper()
	res, err := n.sched.Pick(f.eps, pickapi.StrategyPrefixCache, &scheduling.Request{PrefixHashes: hashes, PromptTokens: 500}, time.Now())
	require.NoError(t, err)
	return res
}

// inFlight is what n's in_flight plugin counts on ep now.
func (n *node) inFlight(ep *scrape.Endpoint) int {
	c := []scheduling.Candidate{{EP: ep, S: ep.Snapshot()}}
	n.sched.Plugin("in_flight").(scheduling.Preparer).Prepare(&scheduling.Request{}, c, time.Now())
	return c[0].InFlight.Requests
}

func (n *node) matches(ep *scrape.Endpoint, hashes []uint64) int {
	ix := n.sched.Plugin("prefix").(*scheduling.PrefixScorer).Index(ep)
	if ix == nil {
		return 0
	}
	return ix.Match(hashes)
}

func chain(seed uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		seed = seed*6364136223846793005 + 1442695040888963407
		out[i] = seed
	}
	return out
}

// A pick on one replica is in every peer's prefix index and in-flight
// counts within the lag bound; its end, reported to another replica,
// reaches all three.
func TestPicksAndEndsReachEveryPeer(t *testing.T) {
	f := newFleet(4)
	nodes := group(t, f, 3, nil)
	h := chain(1, 40)
	res := nodes[0].pick(t, f, h)
	ep := res.Endpoints[0]
	for _, n := range nodes[1:] {
		require.Eventually(t, func() bool { return n.matches(ep, h) == 40 && n.inFlight(ep) == 1 }, lagBound, time.Millisecond,
			"the peer holds the pick's prefix and counts it in flight")
	}
	for _, other := range f.eps {
		if other != ep {
			require.Zero(t, nodes[1].inFlight(other))
		}
	}

	// The filter reports the end to whichever replica it reaches next.
	nodes[2].sched.RequestsDone([]scheduling.RequestEnd{{ID: res.PickID, CompletionTokens: -1}}, time.Now())
	for _, n := range nodes {
		require.Eventually(t, func() bool { return n.inFlight(ep) == 0 }, lagBound, time.Millisecond, "the end counts everywhere")
	}
	require.Equal(t, 40, nodes[2].matches(ep, h), "an end leaves the prefix guess alone")

	// Shared picks steer the peers: the same prompt on another replica
	// goes where the first one sent it.
	for _, n := range nodes[1:] {
		require.Equal(t, ep, n.pick(t, f, h).Endpoints[0])
	}
}

// A replica that starts after picks were made takes its peers' prefix
// index and in-flight picks before it reports warm.
func TestJoiningReplicaWarmsUpFromPeers(t *testing.T) {
	f := newFleet(3)
	nodes := group(t, f, 2, nil)
	h1, h2 := chain(7, 30), chain(8, 12)
	a := nodes[0].pick(t, f, h1).Endpoints[0]
	b := nodes[1].pick(t, f, h2).Endpoints[0]
	require.Eventually(t, func() bool { return nodes[0].matches(b, h2) == 12 }, lagBound, time.Millisecond)

	late := start(t, f, []string{nodes[1].Addr()}, nil)
	require.Eventually(t, late.Warm, lagBound, time.Millisecond)
	// No wait past Warm: the state came with the join.
	require.Equal(t, 30, late.matches(a, h1))
	require.Equal(t, 12, late.matches(b, h2))
	total := 0
	for _, ep := range f.eps {
		total += late.inFlight(ep)
	}
	require.Equal(t, 2, total, "picks still in flight come along")
	require.Equal(t, late.pick(t, f, h1).Endpoints[0], a, "and steer its first picks")
}

// With no peer to answer, a replica waits at most WarmupTimeout, then
// serves alone.
func TestWarmupTimeoutWithoutPeers(t *testing.T) {
	f := newFleet(1)
	n := start(t, f, []string{"127.0.0.1:1"}, func(c *Config) { c.WarmupTimeout = 200 * time.Millisecond })
	require.Eventually(t, n.Warm, lagBound, 5*time.Millisecond)
	require.Equal(t, 1, n.Members())
	alone := start(t, f, nil, nil)
	require.Eventually(t, alone.Warm, lagBound, time.Millisecond, "no peers configured: warm at once")
}

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// Two replicas that could not see each other at first (a split, or one
// started late) serve alone; once the peer answers, the rejoin loop joins
// it and each takes what the other learnt meanwhile.
func TestRejoinMergesWhatEachSideLearnt(t *testing.T) {
	f := newFleet(3)
	later := freeAddr(t)
	a := start(t, f, []string{later}, func(c *Config) { c.WarmupTimeout, c.RejoinInterval = 100*time.Millisecond, 50*time.Millisecond })
	require.Eventually(t, a.Warm, lagBound, time.Millisecond)
	ha := chain(21, 16)
	epA := a.pick(t, f, ha).Endpoints[0]

	b := start(t, f, nil, func(c *Config) { c.Listen = later })
	require.Eventually(t, b.Warm, lagBound, time.Millisecond)
	hb := chain(22, 9)
	epB := b.pick(t, f, hb).Endpoints[0]

	require.Eventually(t, func() bool { return a.Members() == 2 && b.Members() == 2 }, lagBound, time.Millisecond, "the rejoin loop found the peer")
	require.Eventually(t, func() bool { return a.matches(epB, hb) == 9 && b.matches(epA, ha) == 16 }, lagBound, time.Millisecond,
		"each side has the other's prefixes")
}
