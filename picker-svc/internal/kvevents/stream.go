package kvevents

import (
	"encoding/binary"
	"fmt"
	"log/slog"
)

// stream follows one publisher's sequence numbers and feeds its batches to
// the index in order. A break in the sequence is filled from the
// publisher's replay socket when it has one; otherwise (or when replay
// cannot fill it) the pod's blocks are dropped and it falls back until
// caught up. A sequence that starts again at 0 is a restarted engine.
type stream struct {
	pod     string
	ix      *Index
	m       *Metrics
	log     *slog.Logger
	dec     *Decoder
	replay  replayer // nil: the publisher has no replay socket
	hasLast bool
	last    uint64
	// dupUntil: after a catch-up replay, live messages up to this sequence
	// number were already applied from the replay (when hasDup).
	dupUntil uint64
	hasDup   bool
	trace    func(pod string, seq uint64, outcome string)
}

// Outcomes a stream reports to its trace hook, per message.
const (
	TraceApplied  = "applied"
	TraceReplayed = "replayed" // a gap before this message was filled by replay
	TraceLost     = "lost"     // a gap before it could not be filled: the pod was cleared
	TraceRestart  = "restart"  // the sequence began again at 0
	TraceBad      = "bad"      // the message could not be decoded: the pod was cleared
	TraceRefused  = "refused"  // the index tracks too many pods
	// TraceConnected: the subscriber connected (and caught up from replay,
	// when it could); seq is the last applied sequence number.
	TraceConnected = "connected"
)

// replayer asks a publisher for its buffered batches from a sequence number.
type replayer interface {
	// fetch returns the batches with seq >= from, in order, up to limit,
	// or false when the publisher could not be asked or did not answer.
	fetch(from uint64) ([]replayed, bool)
}

type replayed struct {
	seq     uint64
	payload []byte
}

func newStream(pod string, ix *Index, m *Metrics, log *slog.Logger, rp replayer, trace func(string, uint64, string)) *stream {
	return &stream{pod: pod, ix: ix, m: m, log: log, dec: NewDecoder(), replay: rp, trace: trace}
}

// handle takes one message's frames: topic, sequence number, payload.
func (s *stream) handle(frames [][]byte) {
	if len(frames) != 3 || len(frames[1]) != 8 {
		s.m.decodeError()
		s.lost("message of %d frames", len(frames))
		s.report(0, TraceBad)
		return
	}
	seq := binary.BigEndian.Uint64(frames[1])
	if s.hasDup {
		if seq != 0 && seq <= s.dupUntil {
			return // already applied from the catch-up replay
		}
		s.hasDup = false
	}
	outcome := TraceApplied
	switch {
	case s.hasLast && seq == s.last+1:
	case seq == 0:
		// The publisher's first message: a fresh engine (the first contact
		// or a restart), whose events from here on are complete.
		if s.hasLast {
			s.m.gap(gapRestart)
			outcome = TraceRestart
		}
		if err := s.ix.Restarted(s.pod); err != nil {
			s.m.refusedMessage()
			s.report(seq, TraceRefused)
			return
		}
	default:
		from := uint64(0)
		if s.hasLast && seq > s.last {
			from = s.last + 1
		}
		if s.fill(from, seq) {
			s.m.gap(gapReplayed)
			outcome = TraceReplayed
		} else {
			if s.hasLast {
				s.m.gap(gapLost) // joining mid-stream is not a gap, only not caught up
			}
			s.lost("sequence %d after %d", seq, s.last)
			outcome = TraceLost
		}
	}
	s.apply(seq, frames[2], outcome)
}

// catchUp, on connecting, asks the replay socket for what was published
// since the last applied batch (or since the engine's start), so a pod is
// complete at once instead of at its next event. It does nothing without
// replay or when the publisher's buffer no longer reaches back that far.
func (s *stream) catchUp() {
	defer func() { s.report(s.last, TraceConnected) }()
	if s.replay == nil {
		return
	}
	from := uint64(0)
	if s.hasLast {
		from = s.last + 1
	}
	batches, ok := s.replay.fetch(from)
	if !ok || len(batches) == 0 || batches[0].seq != from {
		return
	}
	if from == 0 && s.ix.Restarted(s.pod) != nil {
		return
	}
	for _, b := range batches {
		if b.seq != from {
			s.lost("replay skipped from %d to %d", from, b.seq)
			return
		}
		s.apply(b.seq, b.payload, TraceReplayed)
		from++
	}
	s.dupUntil, s.hasDup = s.last, true
}

// fill applies the batches [from, upto) from replay and reports whether
// they were all there; from 0 means from the engine's start.
func (s *stream) fill(from, upto uint64) bool {
	if s.replay == nil {
		return false
	}
	batches, ok := s.replay.fetch(from)
	if !ok || len(batches) == 0 || batches[0].seq != from {
		return false
	}
	if from == 0 {
		if s.ix.Restarted(s.pod) != nil {
			return false
		}
	}
	next := from
	for _, b := range batches {
		if b.seq >= upto {
			break
		}
		if b.seq != next {
			return false
		}
		bt, err := s.dec.Decode(b.payload)
		if err != nil {
			s.m.decodeError()
			return false
		}
		if s.ix.Apply(s.pod, bt) != nil {
			return false
		}
		next++
	}
	return next == upto
}

func (s *stream) apply(seq uint64, payload []byte, outcome string) {
	s.hasLast, s.last = true, seq
	b, err := s.dec.Decode(payload)
	if err != nil {
		s.m.decodeError()
		s.lost("seq %d: %v", seq, err)
		s.report(seq, TraceBad)
		return
	}
	if err := s.ix.Apply(s.pod, b); err != nil {
		s.m.refusedMessage()
		s.report(seq, TraceRefused)
		return
	}
	s.report(seq, outcome)
}

func (s *stream) lost(format string, a ...any) {
	if s.ix.Lost(s.pod) == nil && s.log != nil {
		s.log.Debug("kv events incomplete: pod falls back until caught up", "pod", s.pod, "why", fmt.Sprintf(format, a...))
	}
}

func (s *stream) report(seq uint64, outcome string) {
	if s.trace != nil {
		s.trace(s.pod, seq, outcome)
	}
}
