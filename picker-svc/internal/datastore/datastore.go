// Package datastore holds what the picker knows: pools, models and each
// pool's endpoints with their scraped snapshots, fed by discovery. It holds
// facts only and imports nothing above scrape and inference. Writers
// rebuild an immutable View and swap it atomically; a pick reads one View
// without locks.
package datastore

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// PoolView is one pool as a pick sees it. Immutable.
type PoolView struct {
	Pool    inference.Pool
	Models  map[string]*inference.Model // by modelName
	Targets map[string]bool             // every target model name of Models and Rewrites
	// Rewrites holds, by exact model name, the InferenceModelRewrite rule
	// that wins for it: the oldest object's (creationTimestamp, then
	// namespace/name), and in it the first rule naming the model.
	Rewrites map[string]*RewriteRule
	// GenericRewrite is the winning rule with no matches (it applies to
	// every model nothing matches exactly); nil if there is none.
	GenericRewrite *RewriteRule
	// Objectives by object name: what a request's objective names.
	Objectives map[string]*inference.Objective
	// Conflicts describe objects that another object overrides, in words
	// for /debug/state and the log.
	Conflicts []string
	Endpoints []*scrape.Endpoint
	// Handover holds the endpoints the pool had before its last change,
	// while none of its new ones has fresh metrics, until HandoverUntil
	// (see Handover).
	Handover      []*scrape.Endpoint
	HandoverUntil time.Time
}

// RewriteRule is one InferenceModelRewrite rule as a pick applies it.
type RewriteRule struct {
	Rewrite string // object name (namespace/name)
	Rule    int    // index in spec.rules
	Targets []inference.Target
}

// View is the whole state at one moment. Immutable.
type View struct {
	Pools   map[string]*PoolView
	byModel map[string][]*PoolView
}

// Store is safe for concurrent use.
type Store struct {
	mgr       *scrape.Manager
	log       *slog.Logger
	onRemoved func([]*scrape.Endpoint)

	mu         sync.Mutex
	pools      map[string]inference.Pool
	models     map[string]inference.Model             // by namespace/name
	objectives map[string]inference.Objective         // by namespace/name
	rewrites   map[string]inference.Rewrite           // by namespace/name
	warned     map[string]bool                        // conflicts logged (forgotten once gone)
	endpoints  map[string][]string                    // pool -> addrs
	members    map[string]map[string]*scrape.Endpoint // pool -> addr -> endpoint
	// engineConflict is, per address in pools naming different engines,
	// the conflict last logged (logged once, not at every rebuild).
	engineConflict map[string]string
	handovers      map[string]*handover // by pool
	handoverFor    time.Duration
	now            func() time.Time
	cur            atomic.Pointer[View]
}

// New returns an empty store whose endpoints mgr scrapes. onRemoved, if
// not nil, learns which endpoints left every pool (stateful scheduling
// plugins forget them); it is called with the store's lock held.
func New(mgr *scrape.Manager, log *slog.Logger, onRemoved func([]*scrape.Endpoint)) *Store {
	s := &Store{mgr: mgr, log: log, onRemoved: onRemoved, pools: map[string]inference.Pool{},
		models: map[string]inference.Model{}, objectives: map[string]inference.Objective{}, rewrites: map[string]inference.Rewrite{},
		warned: map[string]bool{}, endpoints: map[string][]string{}, members: map[string]map[string]*scrape.Endpoint{},
		engineConflict: map[string]string{}, handovers: map[string]*handover{}, handoverFor: DefaultHandoverFor, now: time.Now}
	s.cur.Store(&View{Pools: map[string]*PoolView{}, byModel: map[string][]*PoolView{}})
	return s
}

// View returns the current state.
func (s *Store) View() *View { return s.cur.Load() }

// ReplaceObjects makes objs the complete set of pools, models, objectives
// and rewrites (file mode).
func (s *Store) ReplaceObjects(objs inference.Objects) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pools = map[string]inference.Pool{}
	s.models = map[string]inference.Model{}
	s.objectives = map[string]inference.Objective{}
	s.rewrites = map[string]inference.Rewrite{}
	for _, p := range objs.Pools {
		s.pools[p.Name] = p
	}
	for _, m := range objs.Models {
		s.models[m.Namespace+"/"+m.Name] = m
	}
	for _, o := range objs.Objectives {
		s.objectives[o.Namespace+"/"+o.Name] = o
	}
	for _, r := range objs.Rewrites {
		s.rewrites[r.Namespace+"/"+r.Name] = r
	}
	s.rebuildLocked()
}

// SetObjective adds or replaces an InferenceObjective.
func (s *Store) SetObjective(o inference.Objective) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objectives[o.Namespace+"/"+o.Name] = o
	s.rebuildLocked()
}

// DeleteObjective removes an InferenceObjective by object name.
func (s *Store) DeleteObjective(namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objectives, namespace+"/"+name)
	s.rebuildLocked()
}

// SetRewrite adds or replaces an InferenceModelRewrite.
func (s *Store) SetRewrite(r inference.Rewrite) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rewrites[r.Namespace+"/"+r.Name] = r
	s.rebuildLocked()
}

// DeleteRewrite removes an InferenceModelRewrite by object name.
func (s *Store) DeleteRewrite(namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rewrites, namespace+"/"+name)
	s.rebuildLocked()
}

// SetPool adds or replaces a pool.
func (s *Store) SetPool(p inference.Pool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pools[p.Name] = p
	s.rebuildLocked()
}

// DeletePool removes a pool and stops scraping its endpoints.
func (s *Store) DeletePool(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pools, name)
	released := s.setHandoverLocked(name, nil)
	s.setEndpointsLocked(name, nil, false)
	s.removedLocked(released)
	s.rebuildLocked()
}

// SetModel adds or replaces an InferenceModel.
func (s *Store) SetModel(m inference.Model) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models[m.Namespace+"/"+m.Name] = m
	s.rebuildLocked()
}

// DeleteModel removes an InferenceModel by object name.
func (s *Store) DeleteModel(namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.models, namespace+"/"+name)
	s.rebuildLocked()
}

// SetEndpoints makes addrs ("ip:port") the endpoints of pool. Endpoints that
// stay keep their scraper and prefix index; gone ones are stopped.
// If none of the new endpoints has fresh metrics yet, the old ones that do
// stay routable for a while (Handover). An unchanged list costs a sort.
func (s *Store) SetEndpoints(pool string, addrs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.setEndpointsLocked(pool, addrs, true) {
		s.rebuildLocked()
	}
}

// setEndpointsLocked reports whether the endpoints changed.
func (s *Store) setEndpointsLocked(pool string, addrs []string, handover bool) bool {
	addrs = slices.Clone(addrs)
	sort.Strings(addrs)
	addrs = slices.Compact(addrs)
	if slices.Equal(addrs, s.endpoints[pool]) {
		return false
	}
	old, oldEPs := s.endpoints[pool], s.members[pool]
	var keep []*scrape.Endpoint
	if handover {
		keep = s.handoverKeepLocked(pool, addrs)
	}
	s.holdHandoverLocked(pool, keep)
	eps := s.mgr.Set("pool/"+pool, addrs)
	ms := make(map[string]*scrape.Endpoint, len(eps))
	for _, ep := range eps {
		ms[ep.Addr] = ep
	}
	if len(addrs) == 0 {
		delete(s.endpoints, pool)
		delete(s.members, pool)
	} else {
		s.endpoints[pool] = addrs
		s.members[pool] = ms
	}
	s.log.Info("pool endpoints changed", "pool", pool, "endpoints", len(addrs), "was", len(old))
	released := s.setHandoverLocked(pool, keep)
	s.removedLocked(append(slices.Collect(maps.Values(oldEPs)), released...))
	return true
}

// removedLocked tells onRemoved which of eps no pool (nor handover) holds.
func (s *Store) removedLocked(eps []*scrape.Endpoint) {
	if s.onRemoved == nil {
		return
	}
	var gone []*scrape.Endpoint
	for _, ep := range eps {
		if !s.heldLocked(ep) {
			gone = append(gone, ep)
		}
	}
	if len(gone) > 0 {
		s.onRemoved(gone)
	}
}

// heldLocked reports whether any pool, or any pool's handover, still has ep.
func (s *Store) heldLocked(ep *scrape.Endpoint) bool {
	for _, ms := range s.members {
		if ms[ep.Addr] == ep {
			return true
		}
	}
	for _, h := range s.handovers {
		if h.byAddr[ep.Addr] == ep {
			return true
		}
	}
	return false
}

// applyEnginesLocked gives every endpoint the metrics dialect its pool's
// meshllm.io/engine annotation names, or "" (the scrape Manager's default,
// --engine) when its pools name none. An address in several pools that
// name different engines reads the first such pool's, by pool name, and
// the conflict is logged once.
func (s *Store) applyEnginesLocked() {
	pools := make([]string, 0, len(s.members))
	for p := range s.members {
		pools = append(pools, p)
	}
	sort.Strings(pools)
	engine := map[*scrape.Endpoint]scrape.Engine{}
	from := map[*scrape.Endpoint]string{}
	conflicts := map[string]string{}
	for _, pool := range pools {
		e := s.pools[pool].Engine // "" for a pool not (yet) known
		for _, ep := range s.members[pool] {
			switch cur, seen := engine[ep]; {
			case !seen || (cur == "" && e != ""):
				engine[ep], from[ep] = e, pool
			case e != "" && e != cur:
				conflicts[ep.Addr] = fmt.Sprintf("pool %q names %q, pool %q names %q", from[ep], cur, pool, e)
			}
		}
	}
	for ep, e := range engine {
		ep.SetEngine(e)
	}
	for addr, c := range conflicts {
		if s.engineConflict[addr] != c {
			s.log.Warn("endpoint in pools naming different engines; the first pool's applies", "endpoint", addr, "conflict", c)
		}
	}
	s.engineConflict = conflicts
}

func (s *Store) rebuildLocked() {
	s.applyEnginesLocked()
	v := &View{Pools: map[string]*PoolView{}, byModel: map[string][]*PoolView{}}
	for name, p := range s.pools {
		pv := &PoolView{Pool: p, Models: map[string]*inference.Model{}, Targets: map[string]bool{},
			Rewrites: map[string]*RewriteRule{}, Objectives: map[string]*inference.Objective{}}
		addrs := s.endpoints[name]
		pv.Endpoints = make([]*scrape.Endpoint, 0, len(addrs))
		for _, a := range addrs {
			pv.Endpoints = append(pv.Endpoints, s.members[name][a])
		}
		if h := s.handovers[name]; h != nil {
			pv.Handover, pv.HandoverUntil = h.eps, h.until
		}
		v.Pools[name] = pv
	}
	conflict := func(pv *PoolView, format string, a ...any) {
		pv.Conflicts = append(pv.Conflicts, fmt.Sprintf("pool %q: ", pv.Pool.Name)+fmt.Sprintf(format, a...))
	}
	// Models in stable order so that a duplicate modelName resolves the same
	// way every time (the alphabetically first object wins).
	for _, k := range slices.Sorted(maps.Keys(s.models)) {
		m := s.models[k]
		pv := v.Pools[m.PoolName]
		if pv == nil {
			continue // its pool is not (yet) known
		}
		if other, dup := pv.Models[m.ModelName]; dup {
			conflict(pv, "InferenceModel %q ignored: modelName %q is already served by InferenceModel %q", k, m.ModelName, other.Namespace+"/"+other.Name)
			continue
		}
		pv.Models[m.ModelName] = &m
		for _, t := range m.Targets {
			pv.Targets[t.Name] = true
		}
		v.byModel[m.ModelName] = append(v.byModel[m.ModelName], pv)
	}
	// Rewrites oldest first (the type's precedence rule), then by name
	// (objects from files usually carry no creationTimestamp).
	rws := slices.Sorted(maps.Keys(s.rewrites))
	sort.SliceStable(rws, func(i, j int) bool { return s.rewrites[rws[i]].Created.Before(s.rewrites[rws[j]].Created) })
	for _, k := range rws {
		rw := s.rewrites[k]
		pv := v.Pools[rw.PoolName]
		if pv == nil {
			continue
		}
		for i, r := range rw.Rules {
			rule := &RewriteRule{Rewrite: k, Rule: i, Targets: r.Targets}
			for _, t := range r.Targets {
				pv.Targets[t.Name] = true
			}
			if r.Generic() {
				if pv.GenericRewrite == nil {
					pv.GenericRewrite = rule
				} else if pv.GenericRewrite.Rewrite != k {
					conflict(pv, "InferenceModelRewrite %q rule %d ignored: the generic rule of the older %q applies", k, i, pv.GenericRewrite.Rewrite)
				}
				continue
			}
			for _, model := range r.Models {
				if won := pv.Rewrites[model]; won != nil {
					if won.Rewrite != k {
						conflict(pv, "InferenceModelRewrite %q rule %d ignored for model %q: the older %q rewrites it", k, i, model, won.Rewrite)
					}
					continue
				}
				pv.Rewrites[model] = rule
				if m := pv.Models[model]; m != nil {
					// The newer object wins: InferenceModel is deprecated
					// upstream in favour of InferenceModelRewrite.
					conflict(pv, "InferenceModel %q ignored for model %q: InferenceModelRewrite %q rewrites it", m.Namespace+"/"+m.Name, model, k)
				} else {
					v.byModel[model] = append(v.byModel[model], pv)
				}
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.objectives)) {
		o := s.objectives[k]
		for _, pool := range o.Pools {
			pv := v.Pools[pool]
			if pv == nil {
				continue
			}
			if other := pv.Objectives[o.Name]; other != nil {
				conflict(pv, "InferenceObjective %q ignored: %q has its name", k, other.Namespace+"/"+other.Name)
				continue
			}
			pv.Objectives[o.Name] = &o
		}
	}
	seen := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(v.Pools)) {
		pv := v.Pools[name]
		if len(pv.Objectives) > 0 {
			for _, mn := range slices.Sorted(maps.Keys(pv.Models)) {
				if m := pv.Models[mn]; m.CriticalitySet && pv.Rewrites[mn] == nil {
					conflict(pv, "InferenceModel %q criticality %s applies only to requests naming no InferenceObjective of the pool; an objective's priority wins", m.Namespace+"/"+m.Name, m.Criticality)
				}
			}
		}
		for _, c := range pv.Conflicts {
			seen[c] = true
			if !s.warned[c] {
				s.log.Warn("conflicting inference objects", "conflict", c)
			}
		}
	}
	s.warned = seen
	s.cur.Store(v)
}

// PoolsServing returns the pools whose InferenceModels or
// InferenceModelRewrites name model exactly.
func (v *View) PoolsServing(model string) []*PoolView { return v.byModel[model] }
