package scheduling

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// Saturation thresholds: a pod is saturated when its waiting queue (with
// the picks it has not shown yet) exceeds Queue or its KV cache usage (with
// their prompts) exceeds KV.
type Saturation struct {
	Queue float64 `json:"queue"`
	KV    float64 `json:"kv"`
}

// Saturated reports whether candidate c is saturated.
func (t Saturation) Saturated(c *Candidate) bool {
	return c.S.Waiting+float64(c.InFlight.Requests) > t.Queue || ProjectedKV(c) > t.KV
}

// ProjectedKV is c's KV cache usage once the prompts of its in-flight picks
// are admitted: what it will be, not what it was at the last scrape. It is
// the scraped usage when the pod does not export its cache size.
func ProjectedKV(c *Candidate) float64 {
	kv := c.S.KVCacheUsage
	if total := c.S.NumGPUBlocks * c.S.BlockSize; total > 0 && c.InFlight.PromptTokens > 0 {
		kv += float64(c.InFlight.PromptTokens) / float64(total)
	}
	return kv
}

// Config holds the scheduler's tunables.
type Config struct {
	// Profiles per strategy.
	Profiles map[pickapi.Strategy]ProfileSpec `json:"profiles"`
	// Plugins holds parameters by plugin name (absent: the defaults).
	Plugins map[string]json.RawMessage `json:"plugins,omitempty"`
	// Sheddable requests are refused when every eligible pod is past
	// ShedSheddable; Standard ones when every pod is past ShedStandard.
	// Critical requests are never refused.
	ShedSheddable Saturation `json:"shedSheddable"`
	ShedStandard  Saturation `json:"shedStandard"`
	// Fallbacks is how many ranked fallbacks an answer carries.
	Fallbacks int `json:"fallbacks"`
	// DebugPicks is how many recent picks' explanations the scheduler
	// keeps for the picker's /debug/picks; 0 keeps none (a pick that asks
	// for its explanation still gets it). DebugPicksEvery: one pick in
	// that many is kept, and every pick that asked (an explanation costs
	// about 2 us at 100 endpoints, and its memory).
	DebugPicks      int `json:"debugPicks"`
	DebugPicksEvery int `json:"debugPicksEvery"`
}

// MaxDebugPicks bounds Config.DebugPicks.
const MaxDebugPicks = 4096

// DefaultConfig. DEFAULT: queue 2 as in the Gateway API Inference
// Extension's default profile, outstanding 1, KV 3, LoRA 6; PREFIX_CACHE:
// the same plus prefix 5. The in_flight plugin adds
// this picker's own picks the pods cannot show yet to every load signal, so
// the picks between two scrapes do not all land on the pod that looked best
// at the last one. The weights are what the e2e scenarios (queue and
// full-KV avoidance, prefix affinity, adapter loads) and the seeds' shape
// were measured with (docs/scheduling.md, docs/benchmarks/README.md).
//
// Sheddable requests are shed when every pod is past queue 5 or KV 0.8 (the
// upstream's saturation). Standard ones only at a real overload: every pod
// holding more than 256 waiting requests. A full KV cache alone never sheds
// Standard traffic: vLLM queues it and serves it, and a KV-bound fleet is
// always near full.
func DefaultConfig() Config {
	prepare := []string{"in_flight"}
	filters := []string{CapacityFilter{}.Name()}
	return Config{
		Profiles: map[pickapi.Strategy]ProfileSpec{
			pickapi.StrategyDefault: {Prepare: prepare, Filters: filters, Scorers: []WeightedScorer{
				{"queue", 2}, {"outstanding", 1}, {"kv_cache", 3}, {"lora", 6}}},
			// PREFIX_CACHE is DEFAULT plus prefix affinity: where no pod
			// holds the prompt's prefix it ranks as DEFAULT does, so it
			// cannot lose to DEFAULT on traffic without shared prefixes.
			pickapi.StrategyPrefixCache: {Prepare: []string{"in_flight", "prefix"}, Filters: filters, Scorers: []WeightedScorer{
				{"prefix", 5}, {"queue", 2}, {"outstanding", 1}, {"kv_cache", 3}, {"lora", 6}}},
			pickapi.StrategyPrecisePrefixCache: precisePrefixProfile(filters),
			// LATENCY places each request where it is predicted to get its
			// first token soonest; the prefix index only tells the
			// predictor what the request's prefill would cost there. No
			// capacity filter: the prediction already weighs a full KV
			// cache against a long queue.
			pickapi.StrategyLatency: {Prepare: []string{"in_flight", "prefix", "predicted_ttft"}, Scorers: []WeightedScorer{
				{"predicted_ttft", 10}, {"lora", 2}}},
		},
		ShedSheddable: Saturation{Queue: 5, KV: 0.8},
		ShedStandard:  Saturation{Queue: 256, KV: math.Inf(1)},
		Fallbacks:     3,
		DebugPicks:    64,
		// A burst of 1,000 picks a second keeps about 60 a second.
		DebugPicksEvery: 16,
	}
}

// Validate checks profiles name known plugins of the right kind, weights
// are finite and >= 0, and parameters parse.
func (c *Config) Validate() error {
	_, err := build1(c)
	return err
}

// Scheduler runs profiles. It is safe for concurrent use; per-request state
// lives only in its stateful plugins.
type Scheduler struct {
	cfg       Config
	profiles  map[pickapi.Strategy]*profile
	instances map[string]Plugin
	removers  []EndpointRemover
	enders    []RequestEnder
	scratch   sync.Pool
	picks     *pickLog
	picked    atomic.Uint64 // picks made, for DebugPicksEvery
	// lastID numbers picks (Result.PickID). It starts at random so that
	// picker replicas, whose ids a filter may report to any of them, do
	// not share ids.
	lastID atomic.Uint64
	// observer learns of picks and ends for peer replicas (shared.go).
	observer PickObserver
	// decide makes each pick's reading of the plugins' state and its
	// recording of the choice one step: concurrent picks that read the
	// same state would all choose the same pod (a burst herds). It is held
	// for microseconds: I/O (Fetch) happens before it.
	decide sync.Mutex
}

// Outcome of a pick, in the words of the picker's metrics.
type Outcome string

// Outcomes.
const (
	Picked      Outcome = "picked"
	Stale       Outcome = "stale" // no endpoint was eligible: picked among those with old metrics
	Shed        Outcome = "shed"  // refused: every pod saturated for this criticality
	NoEndpoints Outcome = "no_endpoints"
)

// Result of one pick. Endpoints[0] is the pick, the rest ranked fallbacks.
type Result struct {
	Endpoints []*scrape.Endpoint
	Outcome   Outcome
	// PickID names the pick for RequestsDone (never 0).
	PickID uint64
	// Explanation says why, when the request asked (Request.Explain).
	Explanation *Explanation
}

// ErrNoEndpoints means the pool has no endpoint with a snapshot.
var ErrNoEndpoints = errors.New("pool has no endpoints")

type scratch struct {
	cands  []Candidate
	scores []float64
	totals []float64
	idx    []int
	// perScorer holds every scorer's scores, scorer by scorer, when the
	// pick is explained.
	perScorer []float64
}

func build1(c *Config) (*Scheduler, error) {
	if c.Fallbacks < 0 || c.Fallbacks > pickapi.MaxFallbacks {
		return nil, fmt.Errorf("fallbacks: %d outside 0..%d", c.Fallbacks, pickapi.MaxFallbacks)
	}
	if c.DebugPicks < 0 || c.DebugPicks > MaxDebugPicks {
		return nil, fmt.Errorf("debugPicks: %d outside 0..%d", c.DebugPicks, MaxDebugPicks)
	}
	if c.DebugPicks > 0 && (c.DebugPicksEvery < 1 || c.DebugPicksEvery > 1<<20) {
		return nil, fmt.Errorf("debugPicksEvery: %d outside 1..%d", c.DebugPicksEvery, 1<<20)
	}
	for name, t := range map[string]Saturation{"shedSheddable": c.ShedSheddable, "shedStandard": c.ShedStandard} {
		if math.IsNaN(t.Queue) || math.IsNaN(t.KV) || t.Queue < 0 || t.KV < 0 {
			return nil, fmt.Errorf("%s: %+v must be >= 0", name, t)
		}
	}
	s := &Scheduler{cfg: *c, profiles: map[pickapi.Strategy]*profile{}}
	instances := map[string]Plugin{}
	strategies := make([]string, 0, len(c.Profiles))
	for st := range c.Profiles {
		strategies = append(strategies, string(st))
	}
	sort.Strings(strategies)
	for _, st := range strategies {
		spec := c.Profiles[pickapi.Strategy(st)]
		if _, err := pickapi.ParseStrategy(st); err != nil {
			return nil, fmt.Errorf("profiles: %w", err)
		}
		names := spec.names()
		if spec.Picker == "" {
			names = append(names, MaxScorePicker{}.Name())
		}
		for _, n := range names {
			if instances[n] != nil {
				continue
			}
			p, err := build(n, c.Plugins[n])
			if err != nil {
				return nil, fmt.Errorf("profiles.%s: %w", st, err)
			}
			instances[n] = p
		}
		prof, err := spec.resolve(instances)
		if err != nil {
			return nil, fmt.Errorf("profiles.%s: %w", st, err)
		}
		s.profiles[pickapi.Strategy(st)] = prof
	}
	for n := range c.Plugins {
		if instances[n] == nil {
			if _, err := build(n, c.Plugins[n]); err != nil {
				return nil, fmt.Errorf("plugins: %w", err)
			}
			return nil, fmt.Errorf("plugins: %q has parameters but no profile uses it", n)
		}
	}
	s.instances = instances
	names := make([]string, 0, len(instances))
	for n := range instances {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if r, ok := instances[n].(EndpointRemover); ok {
			s.removers = append(s.removers, r)
		}
		if e, ok := instances[n].(RequestEnder); ok {
			s.enders = append(s.enders, e)
		}
	}
	s.picks = newPickLog(c.DebugPicks)
	s.lastID.Store(rand.Uint64N(pickapi.MaxPickID / 2))
	s.scratch.New = func() any { return &scratch{idx: make([]int, 1+pickapi.MaxFallbacks)} }
	return s, nil
}

// New returns a scheduler for cfg.
func New(cfg Config) (*Scheduler, error) { return build1(&cfg) }

// Plugin returns the instance of the plugin called name (nil if no
// profile uses it): one instance per name, shared by every profile.
func (s *Scheduler) Plugin(name string) Plugin { return s.instances[name] }

// nextID returns a pick id in 1..pickapi.MaxPickID.
func (s *Scheduler) nextID() uint64 {
	for {
		if id := s.lastID.Add(1) & pickapi.MaxPickID; id != 0 {
			return id
		}
	}
}

// RequestsDone tells stateful plugins that the requests of these picks
// have ended (ids this scheduler never gave are ignored).
func (s *Scheduler) RequestsDone(ends []RequestEnd, now time.Time) {
	if len(ends) == 0 {
		return
	}
	for _, e := range s.enders {
		e.RequestsDone(ends, now)
	}
	if s.observer != nil {
		// Peers learn the ends, not the completion tokens (their output
		// estimates learn from the ends reported to them).
		ids := make([]uint64, len(ends))
		for i, e := range ends {
			ids[i] = e.ID
		}
		s.observer.RequestsEnded(ids)
	}
}

// EndpointsRemoved tells stateful plugins that eps left every pool.
func (s *Scheduler) EndpointsRemoved(eps []*scrape.Endpoint) {
	for _, r := range s.removers {
		r.EndpointsRemoved(eps)
	}
}

// Pick chooses among eps for req at now, with strategy's profile.
// Endpoints with no snapshot at all are never picked, not even when none is
// eligible: there is nothing known about them, not even that they answer.
func (s *Scheduler) Pick(eps []*scrape.Endpoint, strategy pickapi.Strategy, req *Request, now time.Time) (Result, error) {
	prof := s.profiles[strategy]
	if prof == nil {
		prof = s.profiles[pickapi.DefaultStrategy]
	}
	if len(eps) == 0 || prof == nil {
		return Result{Outcome: NoEndpoints}, ErrNoEndpoints
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	cands := sc.cands[:0]
	for _, ep := range eps {
		if snap, ok := ep.Eligible(now); ok {
			cands = append(cands, Candidate{EP: ep, S: snap})
		}
	}
	outcome := Picked
	if len(cands) == 0 {
		// Better a pod with old numbers than refusing every request. This
		// second pass is rare, so the common one appends each endpoint once.
		for _, ep := range eps {
			if snap, _ := ep.Eligible(now); snap != nil {
				cands = append(cands, Candidate{EP: ep, S: snap})
			}
		}
		outcome = Stale
	}
	sc.cands = cands
	if len(cands) == 0 {
		return Result{Outcome: NoEndpoints}, ErrNoEndpoints
	}
	for _, f := range prof.fetchers {
		f.Fetch(req, cands)
	}
	s.decide.Lock()
	defer s.decide.Unlock()
	for _, p := range prof.prepare {
		p.Prepare(req, cands, now)
	}
	if outcome == Picked && s.shed(req.Criticality, cands) {
		return Result{Outcome: Shed}, nil
	}
	eligible := len(cands)
	for _, f := range prof.filters {
		if kept := f.Filter(req, cands); len(kept) > 0 {
			cands = kept
		}
	}
	n := len(cands)
	if cap(sc.scores) < n {
		sc.scores, sc.totals = make([]float64, n), make([]float64, n)
	}
	scores, totals := sc.scores[:n], sc.totals[:n]
	clear(totals)
	logged := s.picks != nil && s.picked.Add(1)%uint64(s.cfg.DebugPicksEvery) == 0
	explained := req.Explain || logged
	if explained && cap(sc.perScorer) < n*len(prof.scorers) {
		sc.perScorer = make([]float64, n*len(prof.scorers))
	}
	for j, ws := range prof.scorers {
		ws.s.Score(req, cands, scores)
		for i, v := range scores {
			totals[i] += ws.w * v
		}
		if explained {
			copy(sc.perScorer[j*n:(j+1)*n], scores)
		}
	}
	k := prof.picker.Pick(cands, totals, sc.idx[:min(1+s.cfg.Fallbacks, len(sc.idx))])
	req.PickID = s.nextID()
	res := Result{Endpoints: make([]*scrape.Endpoint, k), Outcome: outcome, PickID: req.PickID}
	for i := 0; i < k; i++ {
		res.Endpoints[i] = cands[sc.idx[i]].EP
	}
	if explained {
		res.Explanation = explain(strategy, req, prof, eligible, cands, totals, sc.perScorer[:n*len(prof.scorers)], sc.idx[:k], now)
		if s.picks != nil {
			s.picks.add(res.Explanation) // asked for, or sampled
		}
		if !req.Explain {
			res.Explanation = nil
		}
	}
	for _, p := range prof.postPickers {
		p.PostPick(req, &cands[sc.idx[0]], now)
	}
	if s.observer != nil {
		s.observer.PickMade(prof.record(strategy, req, &cands[sc.idx[0]], now))
	}
	return res, nil
}

// RecentPicks returns the explanations of the last picks (Config.DebugPicks
// of them at most), newest first.
func (s *Scheduler) RecentPicks() []*Explanation { return s.picks.recent() }

// shed decides whether to refuse req because every eligible pod is
// saturated for its criticality.
func (s *Scheduler) shed(c pickapi.Criticality, cands []Candidate) bool {
	var t Saturation
	switch c {
	case pickapi.Sheddable:
		t = s.cfg.ShedSheddable
	case pickapi.Standard, "":
		t = s.cfg.ShedStandard
	default:
		return false
	}
	for i := range cands {
		if !t.Saturated(&cands[i]) {
			return false
		}
	}
	return true
}
