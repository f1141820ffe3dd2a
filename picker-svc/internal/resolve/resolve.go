// Package resolve turns a pick request's pool and model into the pool to
// schedule in and the target model to serve: the InferenceModel lookup and
// its weighted draw among target models (canary splits). The draw takes an
// injected *rand.Rand so that a test, or a replay, fixes it.
package resolve

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
)

// Resolution errors: each maps to an HTTP status in the server.
var (
	ErrUnknownPool  = errors.New("unknown pool")
	ErrUnknownModel = errors.New("unknown model")
)

// Resolved is what a pick request resolves to before scheduling.
type Resolved struct {
	Pool        *datastore.PoolView
	TargetModel string
	Criticality pickapi.Criticality
}

// Resolver resolves requests; safe for concurrent use.
type Resolver struct {
	mu  sync.Mutex
	rng *rand.Rand
}

// New returns a resolver drawing target models from rng (nil: a randomly
// seeded one).
func New(rng *rand.Rand) *Resolver {
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Resolver{rng: rng}
}

// Resolve finds the pool and target model for a request in v.
//
// The pool: the request's, or else the one pool whose InferenceModels name
// the model, or else the only pool there is. The model: an InferenceModel's
// modelName (weighted target choice, the object's criticality wins); else a
// target model name or any model at all in a pool without InferenceModels
// (passed through with the request's criticality); else ErrUnknownModel.
// An empty model is a pool-level pick: no target model.
func (r *Resolver) Resolve(v *datastore.View, pool, model string, crit pickapi.Criticality) (Resolved, error) {
	var pv *datastore.PoolView
	serving := v.PoolsServing(model)
	switch {
	case pool != "":
		pv = v.Pools[pool]
		if pv == nil {
			return Resolved{}, fmt.Errorf("%w %q", ErrUnknownPool, pool)
		}
	case len(serving) == 1:
		pv = serving[0]
	case len(serving) > 1:
		return Resolved{}, fmt.Errorf("%w: %q is served by %d pools; name the pool", ErrUnknownModel, model, len(serving))
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
		return Resolved{Pool: pv, TargetModel: r.ChooseTarget(m.Targets), Criticality: m.Criticality}, nil
	}
	if len(pv.Models) == 0 || pv.Targets[model] {
		return Resolved{Pool: pv, TargetModel: model, Criticality: crit}, nil
	}
	return Resolved{}, fmt.Errorf("%w %q in pool %q", ErrUnknownModel, model, pv.Pool.Name)
}

// ChooseTarget picks one of an InferenceModel's target models with
// probability proportional to its weight. Weights are validated
// (non-negative, positive sum) when the object is read.
func (r *Resolver) ChooseTarget(targets []inference.Target) string {
	switch len(targets) {
	case 0:
		return ""
	case 1:
		return targets[0].Name
	}
	var total int64
	for _, t := range targets {
		total += int64(t.Weight)
	}
	if total <= 0 {
		return targets[0].Name
	}
	r.mu.Lock()
	x := r.rng.Int64N(total)
	r.mu.Unlock()
	for _, t := range targets {
		x -= int64(t.Weight)
		if x < 0 {
			return t.Name
		}
	}
	return targets[len(targets)-1].Name
}
