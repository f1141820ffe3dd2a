// Package datastore holds what the picker knows: pools, models and each
// pool's endpoints with their scraped snapshots, fed by discovery. It holds
// facts only and imports nothing above scrape and inference. Writers
// rebuild an immutable View and swap it atomically; a pick reads one View
// without locks.
package datastore

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// PoolView is one pool as a pick sees it. Immutable.
type PoolView struct {
	Pool      inference.Pool
	Models    map[string]*inference.Model // by modelName
	Targets   map[string]bool             // every target model name of Models
	Endpoints []*scrape.Endpoint
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

	mu        sync.Mutex
	pools     map[string]inference.Pool
	models    map[string]inference.Model             // by namespace/name
	endpoints map[string][]string                    // pool -> addrs
	members   map[string]map[string]*scrape.Endpoint // pool -> addr -> endpoint
	// engineConflict is, per address in pools naming different engines,
	// the conflict last logged (logged once, not at every rebuild).
	engineConflict map[string]string
	cur            atomic.Pointer[View]
}

// New returns an empty store whose endpoints mgr scrapes. onRemoved, if
// not nil, learns which endpoints left every pool (stateful scheduling
// plugins forget them); it is called with the store's lock held.
func New(mgr *scrape.Manager, log *slog.Logger, onRemoved func([]*scrape.Endpoint)) *Store {
	s := &Store{mgr: mgr, log: log, onRemoved: onRemoved, pools: map[string]inference.Pool{},
		models: map[string]inference.Model{}, endpoints: map[string][]string{}, members: map[string]map[string]*scrape.Endpoint{},
		engineConflict: map[string]string{}}
	s.cur.Store(&View{Pools: map[string]*PoolView{}, byModel: map[string][]*PoolView{}})
	return s
}

// View returns the current state.
func (s *Store) View() *View { return s.cur.Load() }

// ReplaceObjects makes objs the complete set of pools and models (file mode).
func (s *Store) ReplaceObjects(objs inference.Objects) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pools = map[string]inference.Pool{}
	s.models = map[string]inference.Model{}
	for _, p := range objs.Pools {
		s.pools[p.Name] = p
	}
	for _, m := range objs.Models {
		s.models[m.Namespace+"/"+m.Name] = m
	}
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
	s.setEndpointsLocked(name, nil)
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
func (s *Store) SetEndpoints(pool string, addrs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setEndpointsLocked(pool, addrs)
	s.rebuildLocked()
}

func (s *Store) setEndpointsLocked(pool string, addrs []string) {
	addrs = slices.Clone(addrs)
	sort.Strings(addrs)
	addrs = slices.Compact(addrs)
	if slices.Equal(addrs, s.endpoints[pool]) {
		return
	}
	old, oldEPs := s.endpoints[pool], s.members[pool]
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
	if s.onRemoved == nil {
		return
	}
	var gone []*scrape.Endpoint
	for _, ep := range oldEPs {
		if !s.heldLocked(ep) {
			gone = append(gone, ep)
		}
	}
	if len(gone) > 0 {
		s.onRemoved(gone)
	}
}

// heldLocked reports whether any pool still has ep.
func (s *Store) heldLocked(ep *scrape.Endpoint) bool {
	for _, ms := range s.members {
		if ms[ep.Addr] == ep {
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
		pv := &PoolView{Pool: p, Models: map[string]*inference.Model{}, Targets: map[string]bool{}}
		addrs := s.endpoints[name]
		pv.Endpoints = make([]*scrape.Endpoint, 0, len(addrs))
		for _, a := range addrs {
			pv.Endpoints = append(pv.Endpoints, s.members[name][a])
		}
		v.Pools[name] = pv
	}
	// Models in stable order so that a duplicate modelName resolves the same
	// way every time (the oldest name wins alphabetically) and is logged.
	keys := make([]string, 0, len(s.models))
	for k := range s.models {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m := s.models[k]
		pv := v.Pools[m.PoolName]
		if pv == nil {
			continue // its pool is not (yet) known
		}
		if _, dup := pv.Models[m.ModelName]; dup {
			s.log.Warn("two InferenceModels claim one modelName; ignoring the later", "model", m.ModelName, "ignored", k)
			continue
		}
		pv.Models[m.ModelName] = &m
		for _, t := range m.Targets {
			pv.Targets[t.Name] = true
		}
		v.byModel[m.ModelName] = append(v.byModel[m.ModelName], pv)
	}
	s.cur.Store(v)
}

// PoolsServing returns the pools whose InferenceModels name model.
func (v *View) PoolsServing(model string) []*PoolView { return v.byModel[model] }
