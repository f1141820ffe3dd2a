// Package resolve turns a pick request's pool, model and objective into the
// pool to schedule in, the target model to serve and the shedding class:
// the InferenceModelRewrite and InferenceModel lookups, their weighted draw
// among target models (canary splits), and the InferenceObjective's
// priority. The draw takes an injected *rand.Rand so that a test, or a
// replay, fixes it.
package resolve

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
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
	// Criticality is the class the scheduler sheds by: the objective's
	// priority mapped (inference.PriorityCriticality) when the request
	// names an objective of the pool, else the InferenceModel's, else the
	// request's.
	Criticality pickapi.Criticality
	// Objective is the InferenceObjective that set Criticality, "" if none.
	Objective string
	Priority  int32
	// Rewrite names the InferenceModelRewrite (namespace/name) that chose
	// TargetModel, "" if none did.
	Rewrite string
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

// Resolve finds the pool, target model and class for a request in v.
//
// The pool: the request's, or else the one pool whose InferenceModels or
// InferenceModelRewrites name the model exactly, or else the only pool
// there is. The model, in this order (what the upstream's precedence and
// ours make of the old and new objects together):
//  1. an InferenceModelRewrite rule matching the model exactly (weighted
//     target; it wins over an InferenceModel of the same name, the newer
//     object over the deprecated one);
//  2. an InferenceModel's modelName (weighted target, the object's
//     criticality);
//  3. a rewrite rule with no matches (it applies to every model no exact
//     rule or InferenceModel names, as upstream);
//  4. a target model name, or any model at all in a pool without
//     InferenceModels (passed through);
//  5. else ErrUnknownModel.
//
// An empty model is a pool-level pick: no target model. The objective, if
// the pool has one of that name, decides the class whatever the model
// said; an unknown name counts as none (the upstream falls back to its
// default priority, 0, likewise without refusing).
func (r *Resolver) Resolve(v *datastore.View, pool, model, objective string, crit pickapi.Criticality) (Resolved, error) {
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
	res := Resolved{Pool: pv, Criticality: crit}
	switch rule, m := pv.Rewrites[model], pv.Models[model]; {
	case model == "":
		// A pool-level pick (the filter routing at header time, before it
		// has read the body): load only, no target model.
	case rule != nil:
		res.TargetModel, res.Rewrite = r.ChooseTarget(rule.Targets), rule.Rewrite
	case m != nil:
		res.TargetModel, res.Criticality = r.ChooseTarget(m.Targets), m.Criticality
	case pv.GenericRewrite != nil:
		res.TargetModel, res.Rewrite = r.ChooseTarget(pv.GenericRewrite.Targets), pv.GenericRewrite.Rewrite
	case len(pv.Models) == 0 || pv.Targets[model]:
		res.TargetModel = model
	default:
		return Resolved{}, fmt.Errorf("%w %q in pool %q", ErrUnknownModel, model, pv.Pool.Name)
	}
	if o := pv.Objectives[objective]; objective != "" && o != nil {
		res.Objective, res.Priority = o.Name, o.Priority
		res.Criticality = inference.PriorityCriticality(o.Priority)
	}
	return res, nil
}

// ChooseTarget picks one of an InferenceModel's target models with
// probability proportional to its weight (pickapi.ChooseTarget: the draw a
// filter makes with its kept resolution table when no pick answers).
// Weights are validated (non-negative, positive sum) when the object is
// read.
func (r *Resolver) ChooseTarget(targets []inference.Target) string {
	return pickapi.ChooseTarget(targets, r.draw)
}

func (r *Resolver) draw(n int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rng.Int64N(n)
}
