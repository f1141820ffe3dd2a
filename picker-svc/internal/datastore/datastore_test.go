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

func newStore(t *testing.T) *Store {
	m := scrape.NewManager(scrape.Config{Logger: quiet()})
	t.Cleanup(m.Close)
	return New(m, 64, quiet())
}

func examples(t *testing.T) inference.Objects {
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "pool.yaml"))
	require.NoError(t, err)
	o, err := inference.ParseYAML(b)
	require.NoError(t, err)
	return o
}

func TestResolve(t *testing.T) {
	s := newStore(t)
	s.ReplaceObjects(examples(t))
	v := s.View()

	r, err := v.Resolve("", "chat", pickapi.Critical)
	require.NoError(t, err)
	require.Equal(t, "sim-pool", r.Pool.Pool.Name)
	require.Contains(t, []string{"chat-lora-stable", "chat-lora-canary"}, r.TargetModel)
	require.Equal(t, pickapi.Standard, r.Criticality, "the InferenceModel's criticality wins")

	r, err = v.Resolve("sim-pool", "batch", pickapi.Critical)
	require.NoError(t, err)
	require.Equal(t, pickapi.Sheddable, r.Criticality)

	r, err = v.Resolve("", "chat-lora-canary", pickapi.Critical)
	require.NoError(t, err, "a target model may be asked for directly")
	require.Equal(t, "chat-lora-canary", r.TargetModel)
	require.Equal(t, pickapi.Critical, r.Criticality)

	_, err = v.Resolve("", "gpt-9", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownModel)
	_, err = v.Resolve("nope", "chat", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownPool)

	// A pool-level pick (no model): load only, no target model.
	r, err = v.Resolve("sim-pool", "", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, "sim-pool", r.Pool.Pool.Name)
	require.Empty(t, r.TargetModel)
	r, err = v.Resolve("", "", pickapi.Standard)
	require.NoError(t, err, "the only pool serves a pool-level pick")
	require.Equal(t, "sim-pool", r.Pool.Pool.Name)
}

func TestResolvePassThroughAndAmbiguity(t *testing.T) {
	s := newStore(t)
	p := inference.Pool{Name: "bare", TargetPort: 8000, Selector: map[string]string{"a": "b"}, Strategy: pickapi.StrategyDefault}
	s.SetPool(p)
	r, err := s.View().Resolve("", "anything", pickapi.Sheddable)
	require.NoError(t, err, "a pool without InferenceModels serves any model")
	require.Equal(t, "anything", r.TargetModel)
	require.Equal(t, pickapi.Sheddable, r.Criticality)

	p2 := p
	p2.Name = "other"
	s.SetPool(p2)
	_, err = s.View().Resolve("", "anything", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownModel, "two pools and no InferenceModel: cannot choose")
	s.SetModel(inference.Model{Name: "m1", ModelName: "x", PoolName: "bare", Targets: []inference.Target{{Name: "x", Weight: 1}}})
	s.SetModel(inference.Model{Name: "m2", ModelName: "x", PoolName: "other", Targets: []inference.Target{{Name: "x", Weight: 1}}})
	_, err = s.View().Resolve("", "x", pickapi.Standard)
	require.ErrorContains(t, err, "served by 2 pools")
	r, err = s.View().Resolve("other", "x", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, "other", r.Pool.Pool.Name)

	s.DeleteModel("", "m2")
	r, err = s.View().Resolve("", "x", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, "bare", r.Pool.Pool.Name)
	s.DeletePool("bare")
	_, err = s.View().Resolve("bare", "x", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownPool)
	s.SetModel(inference.Model{Name: "m3", ModelName: "y", PoolName: "other", Targets: []inference.Target{{Name: "y", Weight: 1}}})
	_, err = s.View().Resolve("", "x", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownModel, "m1's pool is gone and the remaining pool lists its models")
}

func TestEndpointsKeepStateAcrossUpdates(t *testing.T) {
	s := newStore(t)
	s.ReplaceObjects(examples(t))
	s.SetEndpoints("sim-pool", []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1"})
	pv := s.View().Pools["sim-pool"]
	require.Len(t, pv.Members, 2)
	first := pv.Members[0]
	first.Prefix.Add([]uint64{1, 2, 3})

	s.SetEndpoints("sim-pool", []string{"127.0.0.1:1", "127.0.0.1:3"})
	pv = s.View().Pools["sim-pool"]
	require.Len(t, pv.Members, 2)
	require.Same(t, first, pv.Members[0], "a staying endpoint keeps its prefix index")
	require.Equal(t, 3, pv.Members[0].Prefix.Match([]uint64{1, 2, 3}))

	old := s.View()
	s.SetEndpoints("sim-pool", nil)
	require.Empty(t, s.View().Pools["sim-pool"].Members)
	require.Len(t, old.Pools["sim-pool"].Members, 2, "an old view is never mutated")
	require.Empty(t, s.mgr.All(), "no scraper left behind")
}
