// Package datastore holds what the picker knows: pools, models and each
// pool's endpoints, fed by discovery. Writers rebuild an immutable View and
// swap it atomically; a pick reads one View without locks.
package datastore

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
)

// PoolView is one pool as a pick sees it. Immutable.
type PoolView struct {
	Pool    inference.Pool
	Models  map[string]*inference.Model // by modelName
	Targets map[string]bool             // every target model name of Models
	Members []*scheduling.Member
}

// View is the whole state at one moment. Immutable.
type View struct {
	Pools   map[string]*PoolView
	byModel map[string][]*PoolView
}

// Store is safe for concurrent use.
type Store struct {
	mgr       *scrape.Manager
	prefixCap int
	log       *slog.Logger

	mu        sync.Mutex
	pools     map[string]inference.Pool
	models    map[string]inference.Model // by namespace/name
	endpoints map[string][]string        // pool -> addrs
	members   map[string]map[string]*scheduling.Member
	cur       atomic.Pointer[View]
}

// New returns an empty store whose endpoints mgr scrapes.
func New(mgr *scrape.Manager, prefixCapacity int, log *slog.Logger) *Store {
	s := &Store{mgr: mgr, prefixCap: prefixCapacity, log: log, pools: map[string]inference.Pool{},
		models: map[string]inference.Model{}, endpoints: map[string][]string{}, members: map[string]map[string]*scheduling.Member{}}
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
	old := s.endpoints[pool]
	eps := s.mgr.Set("pool/"+pool, addrs)
	ms := make(map[string]*scheduling.Member, len(eps))
	for _, ep := range eps {
		if m := s.members[pool][ep.Addr]; m != nil && m.EP == ep {
			ms[ep.Addr] = m
		} else {
			ms[ep.Addr] = scheduling.NewMember(ep, s.prefixCap)
		}
	}
	if len(addrs) == 0 {
		delete(s.endpoints, pool)
		delete(s.members, pool)
	} else {
		s.endpoints[pool] = addrs
		s.members[pool] = ms
	}
	s.log.Info("pool endpoints changed", "pool", pool, "endpoints", len(addrs), "was", len(old))
}

func (s *Store) rebuildLocked() {
	v := &View{Pools: map[string]*PoolView{}, byModel: map[string][]*PoolView{}}
	for name, p := range s.pools {
		pv := &PoolView{Pool: p, Models: map[string]*inference.Model{}, Targets: map[string]bool{}}
		addrs := s.endpoints[name]
		pv.Members = make([]*scheduling.Member, 0, len(addrs))
		for _, a := range addrs {
			pv.Members = append(pv.Members, s.members[name][a])
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

// Resolution errors: each maps to an HTTP status in the server.
var (
	ErrUnknownPool  = errors.New("unknown pool")
	ErrUnknownModel = errors.New("unknown model")
)

// Resolved is what a pick request resolves to before scheduling.
type Resolved struct {
	Pool        *PoolView
	TargetModel string
	Criticality pickapi.Criticality
}

// Resolve finds the pool and target model for a request.
//
// The pool: the request's, or else the one pool whose InferenceModels name
// the model, or else the only pool there is. The model: an InferenceModel's
// modelName (weighted target choice, the object's criticality wins); else a
// target model name or any model at all in a pool without InferenceModels
// (passed through with the request's criticality); else ErrUnknownModel.
// An empty model is a pool-level pick: no target model.
func (v *View) Resolve(pool, model string, crit pickapi.Criticality) (Resolved, error) {
	var pv *PoolView
	switch {
	case pool != "":
		pv = v.Pools[pool]
		if pv == nil {
			return Resolved{}, fmt.Errorf("%w %q", ErrUnknownPool, pool)
		}
	case len(v.byModel[model]) == 1:
		pv = v.byModel[model][0]
	case len(v.byModel[model]) > 1:
		return Resolved{}, fmt.Errorf("%w: %q is served by %d pools; name the pool", ErrUnknownModel, model, len(v.byModel[model]))
	case len(v.Pools) == 1:
		for _, p := range v.Pools {
			pv = p
		}
	default:
		return Resolved{}, fmt.Errorf("%w %q: no pool serves it", ErrUnknownModel, model)
	}
	if model == "" {
		// A pool-level pick (the filter routing at header time, before it
		// has read the body): load only, no target model.
		return Resolved{Pool: pv, Criticality: crit}, nil
	}
	if m := pv.Models[model]; m != nil {
		return Resolved{Pool: pv, TargetModel: scheduling.ChooseTarget(m.Targets), Criticality: m.Criticality}, nil
	}
	if len(pv.Models) == 0 || pv.Targets[model] {
		return Resolved{Pool: pv, TargetModel: model, Criticality: crit}, nil
	}
	return Resolved{}, fmt.Errorf("%w %q in pool %q", ErrUnknownModel, model, pv.Pool.Name)
}
