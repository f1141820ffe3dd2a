package resolve

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
)

// Table is what Resolve does with models in v for requests naming pool, as
// a resolution table a filter keeps (pickapi.Resolution) to resolve models
// the same way when no pick answers: each model an exact
// InferenceModelRewrite rule or an InferenceModel names, to the winning
// rule's or model's weighted targets, and the generic rewrite rule as the
// default. A model the table does not name stays as it is (Resolve passes
// it through, or refuses it: the engine then refuses it too).
//
// pool "" is the table of a sender that names no pool: the models Resolve
// places in exactly one pool, and the default only if there is one pool.
// The table is sealed (its version digests its content).
func Table(v *datastore.View, pool string) (pickapi.Resolution, error) {
	t := pickapi.Resolution{Pool: pool, Models: map[string][]pickapi.Target{}}
	switch {
	case pool != "":
		pv := v.Pools[pool]
		if pv == nil {
			return t, fmt.Errorf("%w %q", ErrUnknownPool, pool)
		}
		addPool(&t, pv, nil)
	case len(v.Pools) == 1:
		for _, pv := range v.Pools {
			addPool(&t, pv, nil)
		}
	default:
		for _, pv := range v.Pools {
			addPool(&t, pv, func(model string) bool { return len(v.PoolsServing(model)) == 1 })
		}
		t.Default = nil // several pools: a model no pool names is refused
	}
	t.Seal()
	return t, t.CheckLimits()
}

// addPool adds pv's models (those keep accepts, if keep is not nil) and
// its generic rule to t, with Resolve's precedence: a rewrite rule over an
// InferenceModel of the same name.
func addPool(t *pickapi.Resolution, pv *datastore.PoolView, keep func(string) bool) {
	for name, m := range pv.Models {
		if keep == nil || keep(name) {
			t.Models[name] = m.Targets
		}
	}
	for name, rule := range pv.Rewrites {
		if keep == nil || keep(name) {
			t.Models[name] = rule.Targets
		}
	}
	if g := pv.GenericRewrite; g != nil {
		t.Default = g.Targets
	}
}

// Tables caches the resolution tables of the current View: each built at
// its first request, all dropped when the View changes (its objects or
// endpoints did). Safe for concurrent use.
type Tables struct {
	cur atomic.Pointer[tableSet]
	// warn, if not nil, hears of a table that cannot be offered (once per
	// pool and View).
	warn func(pool string, err error)
}

type tableSet struct {
	view   *datastore.View
	byPool sync.Map // pool -> *Built
}

// Built is one resolution table, encoded, or why it cannot be offered (a
// table past the limits a filter accepts).
type Built struct {
	Version string // "" when Err is set
	JSON    []byte
	Err     error
}

// NewTables returns an empty cache; warn may be nil.
func NewTables(warn func(pool string, err error)) *Tables {
	return &Tables{warn: warn}
}

// Get returns pool's table in v.
func (c *Tables) Get(v *datastore.View, pool string) *Built {
	set := c.cur.Load()
	if set == nil || set.view != v {
		fresh := &tableSet{view: v}
		if c.cur.CompareAndSwap(set, fresh) {
			set = fresh
		} else if set = c.cur.Load(); set.view != v {
			set = fresh // another View won the race: build outside the cache
		}
	}
	if b, ok := set.byPool.Load(pool); ok {
		return b.(*Built)
	}
	t, err := Table(v, pool)
	b := &Built{Err: err}
	if errors.Is(err, ErrUnknownPool) {
		return b // not kept: any name can be asked for
	}
	if err == nil {
		b.Version, b.JSON = t.Version, t.AppendJSON(nil)
	}
	if prev, loaded := set.byPool.LoadOrStore(pool, b); loaded {
		return prev.(*Built)
	}
	if err != nil && c.warn != nil {
		c.warn(pool, err)
	}
	return b
}
