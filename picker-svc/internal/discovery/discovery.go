// Package discovery finds a pool's endpoints (and, in kubernetes mode, the
// pools and models themselves) and reports them to a Sink. Modes: static (a
// list), dns (names resolved periodically), kubernetes (list and watch).
package discovery

import (
	"context"
	"fmt"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
)

// Sink receives what discovery finds (datastore.Store implements it).
type Sink interface {
	SetEndpoints(pool string, addrs []string)
	SetPool(p inference.Pool)
	DeletePool(name string)
	SetModel(m inference.Model)
	DeleteModel(namespace, name string)
	SetObjective(o inference.Objective)
	DeleteObjective(namespace, name string)
	SetRewrite(r inference.Rewrite)
	DeleteRewrite(namespace, name string)
}

// Source runs until ctx ends, reporting to sink.
type Source interface {
	Run(ctx context.Context, sink Sink) error
}

// Static reports a fixed list of "ip:port" endpoints for one pool.
type Static struct {
	Pool      string
	Endpoints []string
}

// NewStatic validates the endpoints: they go to Envoy as addresses, so they
// must be literal IPs (use dns mode for names).
func NewStatic(pool string, endpoints []string) (*Static, error) {
	for _, e := range endpoints {
		if err := pickapi.ValidateEndpoint(e); err != nil {
			return nil, fmt.Errorf("static endpoints: %w (use --discovery=dns for host names)", err)
		}
	}
	return &Static{Pool: pool, Endpoints: endpoints}, nil
}

// Run implements Source.
func (s *Static) Run(ctx context.Context, sink Sink) error {
	sink.SetEndpoints(s.Pool, s.Endpoints)
	<-ctx.Done()
	return nil
}
