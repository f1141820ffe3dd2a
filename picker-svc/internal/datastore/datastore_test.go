package datastore

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
	"github.com/stretchr/testify/require"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func examples(t *testing.T) inference.Objects {
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "pool.yaml"))
	require.NoError(t, err)
	o, err := inference.ParseYAML(b)
	require.NoError(t, err)
	return o
}

func TestEndpointsKeepIdentityAndRemovalsAreReported(t *testing.T) {
	m := scrape.NewManager(scrape.Config{Logger: quiet()})
	t.Cleanup(m.Close)
	var removed []string
	s := New(m, quiet(), func(eps []*scrape.Endpoint) {
		for _, ep := range eps {
			removed = append(removed, ep.Addr)
		}
	})
	s.ReplaceObjects(examples(t))
	other := inference.Pool{Name: "other", TargetPort: 8000, Selector: map[string]string{"a": "b"}, Strategy: pickapi.StrategyDefault}
	s.SetPool(other)
	s.SetEndpoints("sim-pool", []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1"})
	s.SetEndpoints("other", []string{"127.0.0.1:2"})
	pv := s.View().Pools["sim-pool"]
	require.Len(t, pv.Endpoints, 2)
	first := pv.Endpoints[0]

	s.SetEndpoints("sim-pool", []string{"127.0.0.1:1", "127.0.0.1:3"})
	pv = s.View().Pools["sim-pool"]
	require.Len(t, pv.Endpoints, 2)
	require.Same(t, first, pv.Endpoints[0], "a staying endpoint keeps its scraper (and the plugins' state for it)")
	require.Empty(t, removed, ":2 left sim-pool but is still in other")

	old := s.View()
	s.SetEndpoints("sim-pool", nil)
	require.ElementsMatch(t, []string{"127.0.0.1:1", "127.0.0.1:3"}, removed)
	s.DeletePool("other")
	require.ElementsMatch(t, []string{"127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:2"}, removed)
	require.Empty(t, s.View().Pools["sim-pool"].Endpoints)
	require.Len(t, old.Pools["sim-pool"].Endpoints, 2, "an old view is never mutated")
	require.Empty(t, s.mgr.All(), "no scraper left behind")
}
