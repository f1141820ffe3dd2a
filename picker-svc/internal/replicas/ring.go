package replicas

import (
	"sync"
	"time"

	"github.com/meshllm/meshllm/pickapi"
)

// recentPick is a pick kept for a joining peer (without its hashes: the
// prefix index hands those over).
type recentPick struct {
	id       uint64
	strategy pickapi.Strategy
	addr     string
	at       time.Time
	prompt   int
	blocks   int
	model    string
	maxTok   int
}

// recentPicks remembers the last picks this replica made or applied, by
// id: a pick seen twice (a duplicated packet, a state replayed after a
// network split) is applied once, and a joining peer gets the ones that
// may still be in flight. Fixed size: the oldest fall out.
type recentPicks struct {
	mu   sync.Mutex
	ring []recentPick
	next int
	ids  map[uint64]struct{}
}

func newRecentPicks(n int) *recentPicks {
	return &recentPicks{ring: make([]recentPick, n), ids: make(map[uint64]struct{}, n)}
}

// add records p; false if its id was already there.
func (r *recentPicks) add(p recentPick) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.ids[p.id]; dup {
		return false
	}
	old := &r.ring[r.next]
	if old.id != 0 {
		delete(r.ids, old.id)
	}
	*old = p
	r.ids[p.id] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
	return true
}

// since returns the picks made after t, oldest first.
func (r *recentPicks) since(t time.Time) []recentPick {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recentPick
	for i := range r.ring {
		p := r.ring[(r.next+i)%len(r.ring)]
		if p.id != 0 && p.at.After(t) {
			out = append(out, p)
		}
	}
	return out
}

// endedIDs remembers the last request ends seen (reported here or by a
// peer): a peer's pick that arrives after its own end (the request was
// shorter than the gossip lag) is ended as soon as it is applied.
type endedIDs struct {
	mu   sync.Mutex
	ring []uint64
	next int
	ids  map[uint64]struct{}
}

func newEndedIDs(n int) *endedIDs {
	return &endedIDs{ring: make([]uint64, n), ids: make(map[uint64]struct{}, n)}
}

func (e *endedIDs) add(ids []uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if _, dup := e.ids[id]; dup || id == 0 {
			continue
		}
		if old := e.ring[e.next]; old != 0 {
			delete(e.ids, old)
		}
		e.ring[e.next] = id
		e.ids[id] = struct{}{}
		e.next = (e.next + 1) % len(e.ring)
	}
}

func (e *endedIDs) has(id uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.ids[id]
	return ok
}

// all returns every remembered id.
func (e *endedIDs) all() []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]uint64, 0, len(e.ids))
	for id := range e.ids {
		out = append(out, id)
	}
	return out
}
