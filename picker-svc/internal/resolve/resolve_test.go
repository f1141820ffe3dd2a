package resolve

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newStore(t *testing.T) *datastore.Store {
	m := scrape.NewManager(scrape.Config{Logger: quiet()})
	t.Cleanup(m.Close)
	return datastore.New(m, quiet(), nil)
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
	r0 := New(nil)

	r, err := r0.Resolve(v, "", "chat", "", pickapi.Critical)
	require.NoError(t, err)
	require.Equal(t, "sim-pool", r.Pool.Pool.Name)
	require.Contains(t, []string{"chat-lora-stable", "chat-lora-canary"}, r.TargetModel)
	require.Equal(t, pickapi.Standard, r.Criticality, "the InferenceModel's criticality wins")

	r, err = r0.Resolve(v, "sim-pool", "batch", "", pickapi.Critical)
	require.NoError(t, err)
	require.Equal(t, pickapi.Sheddable, r.Criticality)

	r, err = r0.Resolve(v, "", "chat-lora-canary", "", pickapi.Critical)
	require.NoError(t, err, "a target model may be asked for directly")
	require.Equal(t, "chat-lora-canary", r.TargetModel)
	require.Equal(t, pickapi.Critical, r.Criticality)

	_, err = r0.Resolve(v, "", "gpt-9", "", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownModel)
	_, err = r0.Resolve(v, "nope", "chat", "", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownPool)

	// A pool-level pick (no model): load only, no target model.
	r, err = r0.Resolve(v, "sim-pool", "", "", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, "sim-pool", r.Pool.Pool.Name)
	require.Empty(t, r.TargetModel)
	r, err = r0.Resolve(v, "", "", "", pickapi.Standard)
	require.NoError(t, err, "the only pool serves a pool-level pick")
	require.Equal(t, "sim-pool", r.Pool.Pool.Name)
}

func TestResolvePassThroughAndAmbiguity(t *testing.T) {
	s := newStore(t)
	r0 := New(nil)
	p := inference.Pool{Name: "bare", TargetPort: 8000, Selector: map[string]string{"a": "b"}, Strategy: pickapi.StrategyDefault}
	s.SetPool(p)
	r, err := r0.Resolve(s.View(), "", "anything", "", pickapi.Sheddable)
	require.NoError(t, err, "a pool without InferenceModels serves any model")
	require.Equal(t, "anything", r.TargetModel)
	require.Equal(t, pickapi.Sheddable, r.Criticality)

	p2 := p
	p2.Name = "other"
	s.SetPool(p2)
	_, err = r0.Resolve(s.View(), "", "anything", "", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownModel, "two pools and no InferenceModel: cannot choose")
	s.SetModel(inference.Model{Name: "m1", ModelName: "x", PoolName: "bare", Targets: []inference.Target{{Name: "x", Weight: 1}}})
	s.SetModel(inference.Model{Name: "m2", ModelName: "x", PoolName: "other", Targets: []inference.Target{{Name: "x", Weight: 1}}})
	_, err = r0.Resolve(s.View(), "", "x", "", pickapi.Standard)
	require.ErrorContains(t, err, "served by 2 pools")
	r, err = r0.Resolve(s.View(), "other", "x", "", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, "other", r.Pool.Pool.Name)

	s.DeleteModel("", "m2")
	r, err = r0.Resolve(s.View(), "", "x", "", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, "bare", r.Pool.Pool.Name)
	s.DeletePool("bare")
	_, err = r0.Resolve(s.View(), "bare", "x", "", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownPool)
	s.SetModel(inference.Model{Name: "m3", ModelName: "y", PoolName: "other", Targets: []inference.Target{{Name: "y", Weight: 1}}})
	_, err = r0.Resolve(s.View(), "", "x", "", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownModel, "m1's pool is gone and the remaining pool lists its models")
}

func TestChooseTargetHonoursWeights(t *testing.T) {
	r := New(rand.New(rand.NewPCG(1, 2)))
	targets := []inference.Target{{Name: "stable", Weight: 90}, {Name: "canary", Weight: 10}}
	const n = 10000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		counts[r.ChooseTarget(targets)]++
	}
	// +-2 percentage points of the configured split (binomial sd is 0.3 points).
	require.InDelta(t, 0.90, float64(counts["stable"])/n, 0.02)
	require.InDelta(t, 0.10, float64(counts["canary"])/n, 0.02)

	ten := make([]inference.Target, 10)
	for i := range ten {
		ten[i] = inference.Target{Name: string(rune('a' + i)), Weight: 10}
	}
	counts = map[string]int{}
	for i := 0; i < n; i++ {
		counts[r.ChooseTarget(ten)]++
	}
	for _, tg := range ten {
		require.InDelta(t, 0.10, float64(counts[tg.Name])/n, 0.02, tg.Name)
	}
	require.Equal(t, "x", r.ChooseTarget([]inference.Target{{Name: "x", Weight: 0}, {Name: "y", Weight: 0}}), "degenerate weights: first")
	for i := 0; i < 100; i++ {
		require.Equal(t, "y", r.ChooseTarget([]inference.Target{{Name: "x", Weight: 0}, {Name: "y", Weight: 5}}), "zero weight never chosen")
	}
	require.Equal(t, "", r.ChooseTarget(nil))
}

func TestChooseTargetIsReproducibleWithASeed(t *testing.T) {
	targets := []inference.Target{{Name: "a", Weight: 1}, {Name: "b", Weight: 1}, {Name: "c", Weight: 1}}
	draw := func() []string {
		r := New(rand.New(rand.NewPCG(7, 7)))
		var out []string
		for i := 0; i < 50; i++ {
			out = append(out, r.ChooseTarget(targets))
		}
		return out
	}
	require.Equal(t, draw(), draw(), "the injected source decides every draw")
}

func withObjectives(t *testing.T, extra string) inference.Objects {
	t.Helper()
	o := examples(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "objectives.yaml"))
	require.NoError(t, err)
	more, err := inference.ParseYAML(append(b, []byte(extra)...))
	require.NoError(t, err)
	o.Objectives, o.Rewrites = more.Objectives, more.Rewrites
	return o
}

func TestResolveRewritesAndObjectives(t *testing.T) {
	s := newStore(t)
	s.ReplaceObjects(withObjectives(t, ""))
	v := s.View()
	r0 := New(rand.New(rand.NewPCG(3, 4)))

	// An alias no InferenceModel names: the pool is found by the rewrite,
	// the target drawn by weight, the request's class kept.
	seen := map[string]int{}
	for i := 0; i < 1000; i++ {
		r, err := r0.Resolve(v, "", "summarize", "", pickapi.Standard)
		require.NoError(t, err)
		require.Equal(t, "sim-pool", r.Pool.Pool.Name)
		require.Equal(t, "/summarize-canary", r.Rewrite)
		require.Equal(t, pickapi.Standard, r.Criticality)
		seen[r.TargetModel]++
	}
	require.InDelta(t, 900, seen["summarize-lora-v1"], 50)
	require.Equal(t, 1000, seen["summarize-lora-v1"]+seen["summarize-lora-v2"])

	r, err := r0.Resolve(v, "", "legacy-chat", "", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, "chat-lora-stable", r.TargetModel)
	r, err = r0.Resolve(v, "", "summarize-lora-v2", "", pickapi.Standard)
	require.NoError(t, err, "a rewrite's target may be asked for directly, like an InferenceModel's")
	require.Equal(t, "summarize-lora-v2", r.TargetModel)
	require.Empty(t, r.Rewrite)

	// Objectives decide the class, over the InferenceModel's criticality.
	for _, tc := range []struct {
		model, objective string
		want             pickapi.Criticality
		wantObjective    string
	}{
		{"base-model", "", pickapi.Critical, ""},
		{"base-model", "batch-sheddable", pickapi.Sheddable, "batch-sheddable"},
		{"batch", "premium", pickapi.Critical, "premium"},
		{"batch", "no-such-objective", pickapi.Sheddable, ""},
		{"", "batch-sheddable", pickapi.Sheddable, "batch-sheddable"},
		{"summarize", "premium", pickapi.Critical, "premium"},
	} {
		r, err := r0.Resolve(v, "", tc.model, tc.objective, pickapi.Standard)
		require.NoError(t, err)
		require.Equal(t, tc.want, r.Criticality, "%s with %q", tc.model, tc.objective)
		require.Equal(t, tc.wantObjective, r.Objective)
	}
	r, err = r0.Resolve(v, "", "chat", "batch-sheddable", pickapi.Critical)
	require.NoError(t, err)
	require.Equal(t, int32(-1), r.Priority)

	_, err = r0.Resolve(v, "", "gpt-9", "premium", pickapi.Standard)
	require.ErrorIs(t, err, ErrUnknownModel, "an objective opens no closed pool")
}

func TestResolveRewriteOverridesInferenceModelAndGenericFallback(t *testing.T) {
	s := newStore(t)
	s.ReplaceObjects(withObjectives(t, "\n---\napiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: fallback}\n"+
		"spec: {poolRef: {name: sim-pool}, rules: [{matches: [{model: {value: batch}}], targets: [{modelRewrite: batch-v2}]}, {targets: [{modelRewrite: base-model}]}]}\n"))
	v := s.View()
	r0 := New(nil)

	r, err := r0.Resolve(v, "", "batch", "", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, "batch-v2", r.TargetModel, "the rewrite wins over the InferenceModel of the same name")
	require.Equal(t, pickapi.Standard, r.Criticality, "and the ignored InferenceModel's Sheddable goes with it")
	require.Equal(t, "/fallback", r.Rewrite)

	r, err = r0.Resolve(v, "", "gpt-9", "", pickapi.Standard)
	require.NoError(t, err, "a generic rule takes what the closed pool would refuse")
	require.Equal(t, "base-model", r.TargetModel)
	r, err = r0.Resolve(v, "", "chat", "", pickapi.Standard)
	require.NoError(t, err)
	require.Contains(t, []string{"chat-lora-stable", "chat-lora-canary"}, r.TargetModel, "an InferenceModel's exact name beats a generic rule")
	r, err = r0.Resolve(v, "", "chat-lora-canary", "", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, "base-model", r.TargetModel, "as upstream, a generic rule applies to every model no exact rule names")
	r, err = r0.Resolve(v, "sim-pool", "", "", pickapi.Standard)
	require.NoError(t, err)
	require.Empty(t, r.TargetModel, "no rewrite of a pool-level pick")
}

func TestResolveObjectiveIsPerPool(t *testing.T) {
	s := newStore(t)
	for _, n := range []string{"a", "b"} {
		s.SetPool(inference.Pool{Name: n, TargetPort: 8000, Selector: map[string]string{"app": n}, Strategy: pickapi.StrategyDefault})
	}
	s.SetObjective(inference.Objective{Name: "low", Priority: -3, Pools: []string{"a"}})
	r0 := New(nil)
	r, err := r0.Resolve(s.View(), "a", "m", "low", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, pickapi.Sheddable, r.Criticality)
	r, err = r0.Resolve(s.View(), "b", "m", "low", pickapi.Standard)
	require.NoError(t, err)
	require.Equal(t, pickapi.Standard, r.Criticality, "an objective of another pool is none here")
	require.Empty(t, r.Objective)
}
