package replicas

import (
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
)

// delegate is the replica as memberlist's Delegate.
type delegate struct{ r *Replica }

func (delegate) NodeMeta(int) []byte                 { return nil }
func (d delegate) NotifyMsg(b []byte)                { d.r.receive(b) }
func (delegate) GetBroadcasts(_, _ int) [][]byte     { return nil }
func (d delegate) LocalState(join bool) []byte       { return d.r.localState(join) }
func (d delegate) MergeRemoteState(b []byte, j bool) { d.r.mergeState(b, j) }

// events logs membership changes.
type events struct{ r *Replica }

func (e events) NotifyJoin(n *memberlist.Node) {
	if n.Name != e.r.cfg.NodeName {
		e.r.log.Info("replica joined", "peer", n.Name, "addr", n.Address())
	}
}

func (e events) NotifyLeave(n *memberlist.Node) {
	e.r.log.Info("replica left or failed", "peer", n.Name, "addr", n.Address())
	e.r.peerLeft(n.Name)
}

func (events) NotifyUpdate(*memberlist.Node) {}

// receive applies a peer's batch: its picks as if made here, then its ends.
func (r *Replica) receive(b []byte) {
	var wb wireBatch
	if err := decode(b, kindBatch, &wb); err != nil {
		r.m.dropped.WithLabelValues(dropDecode).Inc()
		return
	}
	r.m.recvMsgs.WithLabelValues("batch").Inc()
	r.m.recvBytes.WithLabelValues("batch").Add(float64(len(b)))
	r.noteSeq(wb.From, wb.Seq)
	now := time.Now()
	transit := max(time.Duration(now.UnixNano()-wb.SentAt), 0)
	for i := range wb.Picks {
		p := &wb.Picks[i]
		age := time.Duration(p.AgeUS) * time.Microsecond
		if r.applyPick(p, now.Add(-age), now) {
			r.m.lag.Observe((age + transit).Seconds())
		}
	}
	r.applyEnds(wb.Ends, now)
}

// applyPick replays one peer pick made at at; false if it was not applied
// (a duplicate, or an endpoint this replica does not know).
func (r *Replica) applyPick(p *wirePick, at, now time.Time) bool {
	ep := r.lookup(p.Endpoint)
	if ep == nil {
		r.m.dropped.WithLabelValues(dropUnknownEndpoint).Inc()
		return false
	}
	strategy := strategyOf(p.Strategy)
	if !r.recent.add(recentPick{id: p.ID, strategy: strategy, addr: p.Endpoint, at: at, prompt: int(p.Prompt), blocks: int(p.Blocks),
		model: p.Model, maxTok: int(p.MaxTokens)}) {
		return false
	}
	rec := scheduling.PickRecord{ID: p.ID, Strategy: strategy, Endpoint: ep, At: at, TargetModel: p.Model,
		MaxTokens: int(p.MaxTokens), PromptTokens: int(p.Prompt), PrefixBlocks: int(p.Blocks), PrefixHashes: p.Hashes}
	r.sched.ApplyPeerPick(&rec)
	r.m.recvPicks.Inc()
	if r.ended.has(p.ID) { // its end came first
		r.sched.ApplyPeerEnds([]uint64{p.ID}, now)
	}
	return true
}

func (r *Replica) applyEnds(ids []uint64, now time.Time) {
	if len(ids) == 0 {
		return
	}
	r.ended.add(ids)
	r.sched.ApplyPeerEnds(ids, now)
	r.m.recvEnds.Add(float64(len(ids)))
}

// localState is this replica's state for a peer that joins (or rejoins
// after a split): the prefix index, the picks that may still be in flight,
// the recent ends. Periodic push-pulls carry membership only.
func (r *Replica) localState(join bool) []byte {
	if !join {
		return nil
	}
	st := wireState{From: r.cfg.NodeName}
	if r.prefix != nil {
		ps := r.prefix.ExportState(r.cfg.StateBlocks, r.cfg.StateBlocks/16)
		st.Blocks = ps.Blocks
		st.Holders = make([]wireHolders, len(ps.Holders))
		for i, h := range ps.Holders {
			st.Holders[i] = wireHolders{Hash: h.Hash, Addrs: h.Addrs}
		}
	}
	now := time.Now()
	for _, p := range r.recent.since(now.Add(-recentWindow)) {
		st.Picks = append(st.Picks, wirePick{ID: p.id, Strategy: strategyCode(p.strategy), Endpoint: p.addr,
			AgeUS: uint32(now.Sub(p.at).Microseconds()), Prompt: uint32(p.prompt), Blocks: uint16(p.blocks),
			MaxTokens: uint32(min(max(p.maxTok, 0), 1<<32-1)), Model: wireModel(p.model)})
	}
	st.Ends = r.ended.all()
	b, err := encode(nil, kindState, &st)
	if err != nil {
		r.log.Error("encoding the state for a joining peer", "err", err)
		return nil
	}
	r.m.sentMsgs.WithLabelValues("state").Inc()
	r.m.sentBytes.WithLabelValues("state").Add(float64(len(b)))
	return b
}

// mergeState takes a peer's state at join.
func (r *Replica) mergeState(b []byte, join bool) {
	if !join || len(b) == 0 {
		return
	}
	var st wireState
	if err := decode(b, kindState, &st); err != nil {
		r.m.dropped.WithLabelValues(dropDecode).Inc()
		r.log.Warn("unreadable state from a peer", "err", err)
		return
	}
	r.m.recvMsgs.WithLabelValues("state").Inc()
	r.m.recvBytes.WithLabelValues("state").Add(float64(len(b)))
	if r.prefix != nil {
		ps := scheduling.PrefixState{Blocks: st.Blocks, Holders: make([]scheduling.PrefixHolders, len(st.Holders))}
		for i, h := range st.Holders {
			ps.Holders[i] = scheduling.PrefixHolders{Hash: h.Hash, Addrs: h.Addrs}
		}
		r.prefix.ImportState(ps, r.lookup)
	}
	now := time.Now()
	r.ended.add(st.Ends)
	applied := 0
	for i := range st.Picks {
		p := &st.Picks[i]
		if r.applyPick(p, now.Add(-time.Duration(p.AgeUS)*time.Microsecond), now) {
			applied++
		}
	}
	r.sched.ApplyPeerEnds(st.Ends, now)
	r.log.Info("took a peer's state", "peer", st.From, "bytes", len(b), "endpoints", len(st.Blocks), "picks", applied)
	r.setWarm("replica warmed up from a peer's state", "peer", st.From)
}
