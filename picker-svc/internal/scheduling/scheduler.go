package scheduling

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
)

// Saturation thresholds: a pod is saturated when its waiting queue exceeds
// Queue or its KV cache usage exceeds KV.
type Saturation struct {
	Queue float64
	KV    float64
}

// Saturated reports whether a pod in state s is saturated.
func (t Saturation) Saturated(s *scrape.Snapshot) bool {
	return s.Waiting > t.Queue || s.KVCacheUsage > t.KV
}

// Weights maps scorer names to weights for one strategy; absent or zero
// weights disable a scorer.
type Weights map[string]float64

// Config holds the scheduler's tunables.
type Config struct {
	// Weights per strategy.
	Weights map[pickapi.Strategy]Weights
	// Sheddable requests are refused when every eligible pod is past
	// ShedSheddable; Standard ones when every pod is past ShedStandard.
	// Critical requests are never refused.
	ShedSheddable Saturation
	ShedStandard  Saturation
	// Fallbacks is how many ranked fallbacks an answer carries.
	Fallbacks int
}

// DefaultConfig: the Gateway API Inference Extension's defaults where it has
// them (queue 2, KV 2, prefix 3; saturation at queue > 5 or KV > 0.8). LoRA
// affinity weighs 3: at 1 it barely moved picks under the e2e LoRA scenario
// (adapter loads -24% against round robin), at 3 they fall by half, and the
// capacity filter still keeps a saturated pod from winning on affinity.
func DefaultConfig() Config {
	return Config{
		Weights: map[pickapi.Strategy]Weights{
			pickapi.StrategyDefault:     {"queue": 2, "kv_cache": 2, "running": 1, "lora": 3},
			pickapi.StrategyPrefixCache: {"prefix": 3, "queue": 2, "kv_cache": 2, "running": 1, "lora": 3},
		},
		ShedSheddable: Saturation{Queue: 5, KV: 0.8},
		ShedStandard:  Saturation{Queue: 50, KV: 0.98},
		Fallbacks:     3,
	}
}

// Scorers lists every scorer by name.
var Scorers = map[string]Scorer{
	QueueScorer{}.Name(): QueueScorer{}, KVCacheScorer{}.Name(): KVCacheScorer{}, RunningScorer{}.Name(): RunningScorer{},
	LoRAScorer{}.Name(): LoRAScorer{}, PrefixScorer{}.Name(): PrefixScorer{},
}

// Validate checks weights name known scorers and are finite and >= 0.
func (c *Config) Validate() error {
	for st, ws := range c.Weights {
		if st != pickapi.StrategyDefault && st != pickapi.StrategyPrefixCache {
			return fmt.Errorf("weights: unknown strategy %q", st)
		}
		for name, w := range ws {
			if _, ok := Scorers[name]; !ok {
				return fmt.Errorf("weights.%s: unknown scorer %q", st, name)
			}
			if !(w >= 0 && w < 1e6) {
				return fmt.Errorf("weights.%s.%s: %v must be in [0, 1e6)", st, name, w)
			}
		}
	}
	if c.Fallbacks < 0 || c.Fallbacks > pickapi.MaxFallbacks {
		return fmt.Errorf("fallbacks: %d outside 0..%d", c.Fallbacks, pickapi.MaxFallbacks)
	}
	return nil
}

type weighted struct {
	s Scorer
	w float64
}

// Scheduler runs filters, scorers and the picker. It is safe for concurrent
// use and keeps no per-request state between picks.
type Scheduler struct {
	cfg     Config
	filters []Filter
	scorers map[pickapi.Strategy][]weighted
	picker  Picker
	scratch sync.Pool
}

// Outcome of a pick, beyond the chosen endpoints.
type Outcome int

// Outcomes.
const (
	Picked   Outcome = iota
	FellBack         // no endpoint was eligible: picked among all of them
	Shed             // refused: every pod saturated for this criticality
	NoEndpoints
)

// Result of one pick. Endpoints[0] is the pick, the rest ranked fallbacks.
type Result struct {
	Endpoints []*Member
	Outcome   Outcome
}

// ErrNoEndpoints means the pool has no endpoint at all.
var ErrNoEndpoints = errors.New("pool has no endpoints")

type scratch struct {
	cands  []Candidate
	all    []Candidate
	scores []float64
	totals []float64
	idx    []int
}

// New returns a scheduler for cfg (validate it first).
func New(cfg Config) *Scheduler {
	s := &Scheduler{cfg: cfg, picker: MaxScorePicker{}, scorers: map[pickapi.Strategy][]weighted{},
		filters: []Filter{CapacityFilter{Saturation: cfg.ShedSheddable}}}
	for st, ws := range cfg.Weights {
		for _, name := range []string{"prefix", "queue", "kv_cache", "running", "lora"} { // stable order
			if w := ws[name]; w > 0 {
				s.scorers[st] = append(s.scorers[st], weighted{Scorers[name], w})
			}
		}
	}
	s.scratch.New = func() any { return &scratch{idx: make([]int, 1+pickapi.MaxFallbacks)} }
	return s
}

// Pick chooses among members for req at now, using strategy's weights.
// Members with no snapshot at all are never picked, not even in the
// fallback to all: there is nothing known about them, not even that they
// answer.
func (s *Scheduler) Pick(members []*Member, strategy pickapi.Strategy, req *Request, now time.Time) (Result, error) {
	if len(members) == 0 {
		return Result{Outcome: NoEndpoints}, ErrNoEndpoints
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	cands, all := sc.cands[:0], sc.all[:0]
	for _, m := range members {
		snap, ok := m.EP.Eligible(now)
		if snap == nil {
			continue
		}
		if ok {
			cands = append(cands, Candidate{M: m, S: snap})
		}
		all = append(all, Candidate{M: m, S: snap})
	}
	sc.cands, sc.all = cands, all
	outcome := Picked
	if len(cands) == 0 {
		if len(all) == 0 {
			return Result{Outcome: NoEndpoints}, ErrNoEndpoints
		}
		// Better a pod with old numbers than refusing every request.
		cands, outcome = all, FellBack
	}

	if outcome == Picked && s.shed(req.Criticality, cands) {
		return Result{Outcome: Shed}, nil
	}
	for _, f := range s.filters {
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
	for _, ws := range s.scorers[strategy] {
		ws.s.Score(req, cands, scores)
		for i, v := range scores {
			totals[i] += ws.w * v
		}
	}
	k := s.picker.Pick(cands, totals, sc.idx[:min(1+s.cfg.Fallbacks, len(sc.idx))])
	res := Result{Endpoints: make([]*Member, k), Outcome: outcome}
	for i := 0; i < k; i++ {
		res.Endpoints[i] = cands[sc.idx[i]].M
	}
	// Whatever was picked will hold this prefix in its cache.
	if strategy == pickapi.StrategyPrefixCache && len(req.PrefixHashes) > 0 {
		res.Endpoints[0].Prefix.Add(req.PrefixHashes)
	}
	return res, nil
}

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
		if !t.Saturated(cands[i].S) {
			return false
		}
	}
	return true
}
