package vllmsim

import (
	"net/http"
	"slices"
)

// finishRestart marks a sequence its engine's restart ended; no client sees
// it as a finish reason (its handler drops the connection instead).
const finishRestart = "restart"

// Restart is what a crash and an immediate restart of the pod's vLLM looks
// like to its clients and to a KV-event subscriber: every request in
// flight ends without an answer (its handler drops the connection, as a
// dying process does), the KV cache comes back empty, and with KV events on
// AllBlocksCleared is published. Two things differ from a real restart, so
// that a benchmark run stays one run: the server keeps its address and
// answers again at once (no time out of service), and its counters and
// KV-event sequence numbers carry on instead of starting again at zero.
func (e *Engine) Restart() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range slices.Concat(e.running, e.waiting) {
		s.state = stateFinished
		s.finishReason = finishRestart
		s.outDone.Store(true)
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
	e.running, e.waiting = nil, nil
	e.restarts++
	// A fresh cache: the blocks the ended requests held are free, and no
	// prefix survives. A step in progress skips its ended sequences.
	old := e.kv
	e.kv = newKVCache(old.n, old.bs, old.caching)
	e.kv.recording, e.kv.evicted = old.recording, old.evicted
	if e.kv.recording {
		e.kv.events = append(old.takeEvents(), kvEvent{kind: kvAllBlocksCleared})
	}
	e.publishKVEvents()
	e.changed.Broadcast()
}

// Restart restarts the server's engine (Engine.Restart).
func (s *Server) Restart() { s.eng.Restart() }

// restarted reports whether a restart ended one of the request's sequences.
func (rs *responder) restarted() bool {
	for _, q := range rs.seqs {
		if d, r := q.Done(); d && r == finishRestart {
			return true
		}
	}
	return false
}

// dropIfRestarted ends the handler without an answer, closing the
// connection mid-response as a crashed server would, if a restart ended
// the request.
func (rs *responder) dropIfRestarted() {
	if rs.restarted() {
		panic(http.ErrAbortHandler)
	}
}
