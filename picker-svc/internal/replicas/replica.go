package replicas

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// Replica is this picker's member of the replica group. It observes the
// scheduler's picks and ends (scheduling.PickObserver), sends them to its
// peers, and applies theirs.
type Replica struct {
	cfg    Config
	sched  *scheduling.Scheduler
	prefix *scheduling.PrefixScorer // nil: no profile keeps a prefix index
	lookup func(addr string) *scrape.Endpoint
	peers  PeerSource
	log    *slog.Logger
	m      *metrics
	ml     *memberlist.Memberlist

	out    *outbox
	recent *recentPicks
	ended  *endedIDs
	seq    atomic.Uint64
	warm   atomic.Bool

	mu      sync.Mutex
	lastSeq map[string]*seqWindow // per peer, the UDP batch numbers seen
	senders map[string]*sender    // per peer, its TCP queue

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// PeerSource lists the addresses (ip:port) where peers may be; this
// replica's own address may be among them.
type PeerSource func(ctx context.Context) ([]string, error)

// recentWindow is how far back picks are handed to a joining peer: a pick
// older than this is in every pod's scrape by now.
const recentWindow = 2 * time.Second

// Sizes of the id memories (a few seconds of picks at 1,000 a second).
const (
	recentPickCap = 8192
	endedCap      = 8192
	senderQueue   = 64 // TCP messages waiting per peer
)

// New joins nothing yet: it binds the gossip listener and starts sending
// this scheduler's picks to whichever peers join. lookup finds a local
// endpoint by address (nil: not discovered here). Run joins the peers.
func New(cfg Config, sched *scheduling.Scheduler, lookup func(string) *scrape.Endpoint, peers PeerSource,
	reg prometheus.Registerer, logger *slog.Logger) (*Replica, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.NodeName == "" {
		cfg.NodeName = defaultNodeName()
	}
	r := &Replica{cfg: cfg, sched: sched, lookup: lookup, peers: peers, log: logger.With("component", "replicas"),
		out: newOutbox(cfg.MaxQueueBytes), recent: newRecentPicks(recentPickCap), ended: newEndedIDs(endedCap),
		lastSeq: map[string]*seqWindow{}, senders: map[string]*sender{}, stop: make(chan struct{})}
	r.prefix, _ = sched.Plugin("prefix").(*scheduling.PrefixScorer)
	mc, err := r.memberlistConfig()
	if err != nil {
		return nil, err
	}
	r.m = newMetrics(reg, func() float64 {
		if r.ml == nil {
			return 0
		}
		return float64(r.ml.NumMembers())
	})
	if r.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("replica gossip on %s: %w", cfg.Listen, err)
	}
	sched.SetObserver(r)
	r.wg.Add(1)
	go r.flusher()
	return r, nil
}

func (r *Replica) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = r.cfg.NodeName
	host, port, _ := net.SplitHostPort(r.cfg.Listen)
	if host == "" {
		host = "0.0.0.0"
	}
	mc.BindAddr = host
	mc.BindPort, _ = strconv.Atoi(port)
	mc.AdvertisePort = mc.BindPort
	if a := r.cfg.Advertise; a != "" {
		h, p, _ := net.SplitHostPort(a)
		mc.AdvertiseAddr = h
		mc.AdvertisePort, _ = strconv.Atoi(p)
	}
	mc.Delegate = delegate{r}
	mc.Events = events{r}
	mc.SecretKey = r.cfg.SecretKey
	// Prefix hashes are random bits: compressing them costs CPU for nothing.
	mc.EnableCompression = false
	// The receive buffer must hold our largest packet with memberlist's
	// framing (checksum, encryption, label).
	mc.UDPBufferSize = r.cfg.MaxPacketBytes + 128
	mc.Logger = log.New(&logWriter{log: r.log}, "", 0)
	return mc, nil
}

func defaultNodeName() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "picker"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return h + "-" + hex.EncodeToString(b[:])
}

// Name is this replica's member name.
func (r *Replica) Name() string { return r.cfg.NodeName }

// Addr is the gossip address peers reach this replica at.
func (r *Replica) Addr() string { return r.ml.LocalNode().Address() }

// Members is the number of live members, this one included.
func (r *Replica) Members() int { return r.ml.NumMembers() }

// Warm reports whether this replica has its peers' state, or waited
// WarmupTimeout for one: until then it should not report ready.
func (r *Replica) Warm() bool { return r.warm.Load() }

func (r *Replica) setWarm(why string, args ...any) {
	if !r.warm.Swap(true) {
		r.m.warm.Set(1)
		r.log.Info(why, append(args, "members", r.ml.NumMembers())...)
	}
}

// Close leaves the group (peers stop counting on this replica at once
// instead of after failure detection) and stops gossip.
func (r *Replica) Close() error {
	r.closeOnce.Do(func() {
		r.flush() // what is queued still counts at the peers
		r.closeErr = r.ml.Leave(time.Second)
		close(r.stop)
		r.wg.Wait()
		if err := r.ml.Shutdown(); r.closeErr == nil {
			r.closeErr = err
		}
	})
	return r.closeErr
}

// PickMade implements scheduling.PickObserver: queue the pick for peers.
func (r *Replica) PickMade(p scheduling.PickRecord) {
	r.recent.add(recentPick{id: p.ID, strategy: p.Strategy, addr: p.Endpoint.Addr, at: p.At, prompt: p.PromptTokens, blocks: p.PrefixBlocks,
		model: p.TargetModel, maxTok: p.MaxTokens})
	w := wirePick{ID: p.ID, Strategy: strategyCode(p.Strategy), Endpoint: p.Endpoint.Addr,
		Prompt: uint32(min(max(p.PromptTokens, 0), 1<<32-1)), Blocks: uint16(min(max(p.PrefixBlocks, 0), 1<<16-1)),
		MaxTokens: uint32(min(max(p.MaxTokens, 0), 1<<32-1)), Model: wireModel(p.TargetModel)}
	if len(p.PrefixHashes) > 0 {
		w.Hashes = append([]uint64(nil), p.PrefixHashes...)
	}
	r.out.addPick(w, p.At)
}

// RequestsEnded implements scheduling.PickObserver: every peer holds the
// pick too, whichever replica made it, so the end goes to all of them.
func (r *Replica) RequestsEnded(ids []uint64) {
	r.ended.add(ids)
	r.out.addEnds(ids)
}

// flusher sends what is queued at once when the last send is more than
// FlushInterval old, else FlushInterval after the last send: a pick waits
// at most FlushInterval (none at low rates), and a peer gets at most one
// batch of packets per FlushInterval (bounded packet rates under load).
func (r *Replica) flusher() {
	defer r.wg.Done()
	t := time.NewTimer(0)
	<-t.C
	var last time.Time
	for {
		select {
		case <-r.stop:
			return
		case <-r.out.wake:
		}
		if d := r.cfg.FlushInterval - time.Since(last); d > 0 {
			t.Reset(d)
			select {
			case <-r.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.flush()
		last = time.Now()
	}
}

// flush sends the queue to every live peer.
func (r *Replica) flush() {
	picks, ends, dropped := r.out.take()
	if dropped > 0 {
		r.m.dropped.WithLabelValues(dropQueueFull).Add(float64(dropped))
	}
	if len(picks) == 0 && len(ends) == 0 {
		return
	}
	var peers []*memberlist.Node
	for _, n := range r.ml.Members() {
		if n.Name != r.cfg.NodeName {
			peers = append(peers, n)
		}
	}
	if len(peers) == 0 {
		return // alone: nobody to tell
	}
	msgs, err := pack(r.cfg.NodeName, picks, ends, time.Now(), r.cfg.MaxPacketBytes, r.cfg.MaxMessageBytes, func() uint64 { return r.seq.Add(1) })
	if err != nil {
		r.log.Error("encoding a batch for peers", "err", err)
		r.m.dropped.WithLabelValues(dropDecode).Add(float64(len(picks) + len(ends)))
		return
	}
	r.m.sentPicks.Add(float64(len(picks)))
	r.m.sentEnds.Add(float64(len(ends)))
	for _, msg := range msgs {
		for _, n := range peers {
			if msg.tcp {
				r.sendTCP(n, msg)
				continue
			}
			if err := r.ml.SendBestEffort(n, msg.data); err != nil {
				r.m.dropped.WithLabelValues(dropSendError).Add(float64(msg.picks + msg.ends))
				continue
			}
			r.m.sentMsgs.WithLabelValues("udp").Inc()
			r.m.sentBytes.WithLabelValues("udp").Add(float64(len(msg.data)))
		}
	}
}

// sender sends one peer's TCP messages in order, off the flusher (a dead
// peer's connect timeout must not hold the others' picks back).
type sender struct {
	ch chan message
}

func (r *Replica) sendTCP(n *memberlist.Node, msg message) {
	r.mu.Lock()
	s := r.senders[n.Name]
	if s == nil {
		s = &sender{ch: make(chan message, senderQueue)}
		r.senders[n.Name] = s
		node := *n
		r.wg.Add(1)
		go r.runSender(&node, s)
	}
	select { // under r.mu: peerLeft may close the queue
	case s.ch <- msg:
	default:
		r.m.dropped.WithLabelValues(dropQueueFull).Add(float64(msg.picks + msg.ends))
	}
	r.mu.Unlock()
}

func (r *Replica) runSender(n *memberlist.Node, s *sender) {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case msg, ok := <-s.ch:
			if !ok {
				return
			}
			if err := r.ml.SendReliable(n, msg.data); err != nil {
				r.m.dropped.WithLabelValues(dropSendError).Add(float64(msg.picks + msg.ends))
				continue
			}
			r.m.sentMsgs.WithLabelValues("tcp").Inc()
			r.m.sentBytes.WithLabelValues("tcp").Add(float64(len(msg.data)))
		}
	}
}

// peerLeft forgets a peer's sequence and TCP queue.
func (r *Replica) peerLeft(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.lastSeq, name)
	if s := r.senders[name]; s != nil {
		close(s.ch)
		delete(r.senders, name)
	}
}

// noteSeq counts the UDP batches of from that never arrived. memberlist
// hands packets over newest first under load, so a batch counts as lost
// only once seqWindow later ones have come.
func (r *Replica) noteSeq(from string, seq uint64) {
	if seq == 0 {
		return // TCP: reliable, not numbered
	}
	r.mu.Lock()
	w := r.lastSeq[from]
	if w == nil {
		w = &seqWindow{base: seq}
		r.lastSeq[from] = w
	}
	lost := w.see(seq)
	r.mu.Unlock()
	if lost > 0 {
		r.m.lost.Add(float64(lost))
	}
}

// seqWindowSize is how far out of order a batch may arrive and still count.
const seqWindowSize = 1024

// seqWindow tracks which of a sender's last seqWindowSize batch numbers
// arrived, from base on.
type seqWindow struct {
	base uint64
	seen [seqWindowSize]bool
}

// see marks seq and returns how many batches slid out of the window unseen.
func (w *seqWindow) see(seq uint64) int {
	if seq < w.base {
		return 0 // late, or a duplicate
	}
	lost := 0
	for seq >= w.base+seqWindowSize {
		i := w.base % seqWindowSize
		if !w.seen[i] {
			lost++
		}
		w.seen[i] = false
		w.base++
	}
	w.seen[seq%seqWindowSize] = true
	return lost
}
