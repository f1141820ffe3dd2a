package resolve

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
)

// sameAsResolve checks that the table resolves every model as Resolve does
// for pool, draw for draw (both seeded alike): the filter's weighted draw
// when no pick answers is the picker's.
func sameAsResolve(t *testing.T, v *datastore.View, pool string, models []string) {
	t.Helper()
	table, err := Table(v, pool)
	require.NoError(t, err)
	for _, model := range models {
		r := New(rand.New(rand.NewPCG(11, 12)))
		draw := rand.New(rand.NewPCG(11, 12)).Int64N
		for i := 0; i < 50; i++ {
			res, err := r.Resolve(v, pool, model, "", pickapi.Standard)
			got, ok := table.Target(model, draw)
			switch {
			case err != nil:
				require.False(t, ok, "%q: refused by the picker, left as it is by the table", model)
			case !ok:
				require.Equal(t, model, res.TargetModel, "%q: the table leaves it, the picker passes it through", model)
			default:
				require.Equal(t, res.TargetModel, got, "%q: draw %d", model, i)
			}
		}
	}
}

func TestTableResolvesAsThePicker(t *testing.T) {
	s := newStore(t)
	s.ReplaceObjects(withObjectives(t, "\n---\napiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: fallback}\n"+
		"spec: {poolRef: {name: sim-pool}, rules: [{matches: [{model: {value: batch}}], targets: [{modelRewrite: batch-v2}]}]}\n"))
	v := s.View()
	models := []string{"chat", "batch", "base-model", "summarize", "legacy-chat", "chat-lora-canary", "summarize-lora-v2", "gpt-9"}
	sameAsResolve(t, v, "sim-pool", models)
	sameAsResolve(t, v, "", models)

	table, err := Table(v, "sim-pool")
	require.NoError(t, err)
	require.Equal(t, "sim-pool", table.Pool)
	require.Equal(t, []pickapi.Target{{Name: "batch-v2", Weight: 1}}, table.Models["batch"], "the rewrite wins over the InferenceModel")
	require.Equal(t, []pickapi.Target{{Name: "chat-lora-stable", Weight: 90}, {Name: "chat-lora-canary", Weight: 10}}, table.Models["chat"])
	require.Nil(t, table.Default)
	got, err := pickapi.ParseResolution(table.AppendJSON(nil))
	require.NoError(t, err)
	require.Equal(t, table, got)

	// A generic rule is the default: it takes every model nothing names.
	s.ReplaceObjects(withObjectives(t, "\n---\napiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: fallback}\n"+
		"spec: {poolRef: {name: sim-pool}, rules: [{targets: [{modelRewrite: base-model}]}]}\n"))
	v = s.View()
	sameAsResolve(t, v, "sim-pool", models)
	table, err = Table(v, "sim-pool")
	require.NoError(t, err)
	require.Equal(t, []pickapi.Target{{Name: "base-model", Weight: 1}}, table.Default)
}

func TestTableWithSeveralPools(t *testing.T) {
	s := newStore(t)
	for _, n := range []string{"a", "b"} {
		s.SetPool(inference.Pool{Name: n, TargetPort: 8000, Selector: map[string]string{"app": n}, Strategy: pickapi.StrategyDefault})
	}
	s.SetModel(inference.Model{Name: "x-a", ModelName: "x", PoolName: "a", Targets: []inference.Target{{Name: "x-1", Weight: 1}}})
	s.SetModel(inference.Model{Name: "x-b", ModelName: "x", PoolName: "b", Targets: []inference.Target{{Name: "x-2", Weight: 1}}})
	s.SetModel(inference.Model{Name: "only-a", ModelName: "y", PoolName: "a", Targets: []inference.Target{{Name: "y-1", Weight: 3}, {Name: "y-2", Weight: 1}}})
	s.SetRewrite(inference.Rewrite{Name: "any-b", PoolName: "b", Rules: []inference.RewriteRule{{Targets: []inference.Target{{Name: "b-base", Weight: 1}}}}})
	v := s.View()
	models := []string{"x", "y", "x-1", "z"}
	for _, pool := range []string{"a", "b", ""} {
		sameAsResolve(t, v, pool, models)
	}
	table, err := Table(v, "")
	require.NoError(t, err)
	require.Equal(t, map[string][]pickapi.Target{"y": {{Name: "y-1", Weight: 3}, {Name: "y-2", Weight: 1}}}, table.Models,
		"without a pool: only models one pool serves")
	require.Nil(t, table.Default, "without a pool, a model no pool names is refused")

	_, err = Table(v, "nope")
	require.ErrorIs(t, err, ErrUnknownPool)
}

// A table past a filter's limits is not offered, and the cache says so once.
func TestTablesCacheAndLimits(t *testing.T) {
	s := newStore(t)
	s.ReplaceObjects(examples(t))
	var mu sync.Mutex
	var warned []string
	c := NewTables(func(pool string, err error) {
		mu.Lock()
		defer mu.Unlock()
		warned = append(warned, pool+": "+err.Error())
	})
	v := s.View()
	b := c.Get(v, "sim-pool")
	require.NoError(t, b.Err)
	require.True(t, pickapi.ValidVersion(b.Version))
	require.Same(t, b, c.Get(v, "sim-pool"), "built once per View")
	got, err := pickapi.ParseResolution(b.JSON)
	require.NoError(t, err)
	require.Equal(t, b.Version, got.Version)
	require.True(t, errors.Is(c.Get(v, "nope").Err, ErrUnknownPool))

	// Same objects, new View (an endpoint changed): same version.
	s.SetEndpoints("sim-pool", []string{"10.0.0.1:8000"})
	require.Equal(t, b.Version, c.Get(s.View(), "sim-pool").Version)

	for i := range pickapi.MaxResolutionModels + 1 {
		s.SetModel(inference.Model{Name: fmt.Sprint("m", i), ModelName: fmt.Sprint("model-", i), PoolName: "sim-pool",
			Targets: []inference.Target{{Name: strings.Repeat("t", 20), Weight: 1}}})
	}
	big := c.Get(s.View(), "sim-pool")
	require.ErrorContains(t, big.Err, "exceeds")
	require.Empty(t, big.Version)
	c.Get(s.View(), "sim-pool")
	require.Len(t, warned, 1)
	require.Contains(t, warned[0], "sim-pool: ")
}
