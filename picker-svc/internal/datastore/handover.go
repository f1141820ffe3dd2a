package datastore

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// Handover: when a pool's endpoints change so that none of the new ones has
// fresh metrics yet (every address changed at once: a targetPort change, a
// relist after every pod moved), picks would be refused (503 "no endpoint
// with metrics yet") until the first scrapes land, a few milliseconds up to
// a scrape timeout. Instead the old endpoints that had fresh metrics stay
// routable, and scraped, until one of the new ones has metrics, or for
// DefaultHandoverFor at most. An old endpoint that stops answering its
// scrapes turns ineligible like any other, so a pod that is really gone is
// not picked after MaxFailures failed scrapes.
//
// Why not refuse so that the gateway falls back: its fallback routes
// without the picker's model resolution (an InferenceModel's virtual name
// would reach vLLM unrewritten) and without load awareness, while the old
// endpoints are known to answer.

// DefaultHandoverFor bounds a handover.
const DefaultHandoverFor = 10 * time.Second

// handoverCheck is how often a handover looks whether the new endpoints
// have metrics (then it ends early, and its scrapes stop).
const handoverCheck = 50 * time.Millisecond

type handover struct {
	eps    []*scrape.Endpoint // by address
	byAddr map[string]*scrape.Endpoint
	until  time.Time
	timer  *time.Timer
}

func handoverOwner(pool string) string { return "handover/" + pool }

// SetHandoverFor changes how long a handover lasts at most.
func (s *Store) SetHandoverFor(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handoverFor = d
}

// handoverKeepLocked returns the endpoints to hand over as pool's become
// addrs (sorted, unique): none if addrs is empty (no pods: nothing to wait
// for) or one of addrs is a current endpoint with fresh metrics, else those
// leaving (or handed over before) that have them.
func (s *Store) handoverKeepLocked(pool string, addrs []string) []*scrape.Endpoint {
	if len(addrs) == 0 {
		return nil
	}
	now := s.now()
	known := slices.Collect(maps.Values(s.members[pool]))
	if h := s.handovers[pool]; h != nil {
		known = append(known, h.eps...)
	}
	var keep []*scrape.Endpoint
	seen := make(map[*scrape.Endpoint]bool, len(known))
	for _, ep := range known {
		if _, ok := ep.Eligible(now); !ok || seen[ep] {
			continue
		}
		if _, staying := slices.BinarySearch(addrs, ep.Addr); staying {
			return nil // staying, or coming back, with metrics
		}
		seen[ep] = true
		keep = append(keep, ep)
	}
	slices.SortFunc(keep, func(a, b *scrape.Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
	return keep
}

// holdHandoverLocked, before the pool's own endpoints change, makes the
// Manager keep scraping both keep and what pool hands over now, so that an
// endpoint moving between the two keeps its scraper (and snapshot).
func (s *Store) holdHandoverLocked(pool string, keep []*scrape.Endpoint) {
	h := s.handovers[pool]
	if h == nil && len(keep) == 0 {
		return
	}
	var hold []string
	for _, ep := range keep {
		hold = append(hold, ep.Addr)
	}
	if h != nil {
		for _, ep := range h.eps {
			hold = append(hold, ep.Addr)
		}
	}
	s.mgr.Set(handoverOwner(pool), hold)
}

// setHandoverLocked makes keep pool's handover (none: ends it) and returns
// the endpoints it no longer hands over (for onRemoved, once the pool's
// own endpoints are set). The caller rebuilds the view.
func (s *Store) setHandoverLocked(pool string, keep []*scrape.Endpoint) []*scrape.Endpoint {
	prev := s.handovers[pool]
	if prev == nil && len(keep) == 0 {
		return nil
	}
	var released []*scrape.Endpoint
	if prev != nil {
		prev.timer.Stop()
		kept := make(map[*scrape.Endpoint]bool, len(keep))
		for _, ep := range keep {
			kept[ep] = true
		}
		for _, ep := range prev.eps {
			if !kept[ep] {
				released = append(released, ep)
			}
		}
	}
	if len(keep) == 0 {
		delete(s.handovers, pool)
		s.mgr.Set(handoverOwner(pool), nil)
		s.log.Info("pool handover ended", "pool", pool)
		return released
	}
	addrs := make([]string, len(keep))
	for i, ep := range keep {
		addrs[i] = ep.Addr
	}
	// Held since holdHandoverLocked: the Manager hands back the same
	// endpoints.
	h := &handover{eps: s.mgr.Set(handoverOwner(pool), addrs), byAddr: make(map[string]*scrape.Endpoint, len(addrs)), until: s.now().Add(s.handoverFor)}
	for _, ep := range h.eps {
		h.byAddr[ep.Addr] = ep
	}
	h.timer = time.AfterFunc(min(handoverCheck, s.handoverFor), func() { s.checkHandover(pool, h) })
	s.handovers[pool] = h
	if prev == nil {
		s.log.Info("pool endpoints all new and without metrics yet: routing to the previous ones meanwhile", "pool", pool,
			"previous", len(keep), "for_at_most", s.handoverFor.String())
	}
	return released
}

// checkHandover ends h once a current endpoint of pool has fresh metrics or
// its time is up, else looks again later.
func (s *Store) checkHandover(pool string, h *handover) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handovers[pool] != h {
		return // ended or replaced meanwhile
	}
	now := s.now()
	done := !now.Before(h.until)
	for _, ep := range s.members[pool] {
		if done {
			break
		}
		_, done = ep.Eligible(now)
	}
	if !done {
		h.timer.Reset(min(handoverCheck, h.until.Sub(now)))
		return
	}
	s.removedLocked(s.setHandoverLocked(pool, nil))
	s.rebuildLocked()
}
