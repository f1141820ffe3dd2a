package datastore

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
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

func parse(t *testing.T, y string) inference.Objects {
	t.Helper()
	o, err := inference.ParseYAML([]byte(y))
	require.NoError(t, err)
	return o
}

func rewriteYAML(name, created, rules string) string {
	return "---\napiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: " + name + ", creationTimestamp: '" + created + "'}\n" +
		"spec: {poolRef: {name: sim-pool}, rules: [" + rules + "]}\n"
}

func TestRewritePrecedenceAndConflicts(t *testing.T) {
	m := scrape.NewManager(scrape.Config{Logger: quiet()})
	t.Cleanup(m.Close)
	var logs bytes.Buffer
	s := New(m, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	objs := examples(t)
	more := parse(t, rewriteYAML("newer", "2026-02-01T00:00:00Z",
		"{matches: [{model: {value: summarize}}], targets: [{modelRewrite: newer-target}]}, {targets: [{modelRewrite: newer-generic}]}")+
		rewriteYAML("older", "2026-01-01T00:00:00Z",
			"{matches: [{model: {value: summarize}}, {model: {value: chat}}], targets: [{modelRewrite: older-target}]},"+
				"{matches: [{model: {value: summarize}}], targets: [{modelRewrite: shadowed-by-own-first-rule}]},"+
				"{targets: [{modelRewrite: older-generic}]}")+
		"---\napiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: premium}\nspec: {priority: 10, poolRefs: [{name: sim-pool}, {name: elsewhere}]}\n")
	objs.Rewrites, objs.Objectives = more.Rewrites, more.Objectives
	s.ReplaceObjects(objs)

	pv := s.View().Pools["sim-pool"]
	require.Equal(t, &RewriteRule{Rewrite: "/older", Rule: 0, Targets: []inference.Target{{Name: "older-target", Weight: 1}}}, pv.Rewrites["summarize"],
		"the oldest object wins, and in it the first rule naming the model")
	require.Equal(t, "/older", pv.Rewrites["chat"].Rewrite, "a rewrite wins over the InferenceModel of the same name")
	require.Equal(t, &RewriteRule{Rewrite: "/older", Rule: 2, Targets: []inference.Target{{Name: "older-generic", Weight: 1}}}, pv.GenericRewrite)
	require.True(t, pv.Targets["newer-target"] && pv.Targets["older-target"], "rewrite targets are served names")
	require.Equal(t, int32(10), pv.Objectives["premium"].Priority)
	require.Equal(t, []*PoolView{pv}, s.View().PoolsServing("summarize"), "an exact match names the pool")
	require.Equal(t, []*PoolView{pv}, s.View().PoolsServing("chat"), "once, though two objects name it")
	require.ElementsMatch(t, []string{
		`pool "sim-pool": InferenceModel "/chat" ignored for model "chat": InferenceModelRewrite "/older" rewrites it`,
		`pool "sim-pool": InferenceModelRewrite "/newer" rule 0 ignored for model "summarize": the older "/older" rewrites it`,
		`pool "sim-pool": InferenceModelRewrite "/newer" rule 1 ignored: the generic rule of the older "/older" applies`,
		`pool "sim-pool": InferenceModel "/batch" criticality Sheddable applies only to requests naming no InferenceObjective of the pool; an objective's priority wins`,
		`pool "sim-pool": InferenceModel "/base" criticality Critical applies only to requests naming no InferenceObjective of the pool; an objective's priority wins`,
	}, pv.Conflicts)

	// Each conflict is logged once, not on every rebuild (endpoint changes
	// rebuild the view too); one that goes away and comes back is logged again.
	require.Equal(t, 5, strings.Count(logs.String(), "conflicting inference objects"))
	s.SetEndpoints("sim-pool", []string{"127.0.0.1:1"})
	require.Equal(t, 5, strings.Count(logs.String(), "conflicting inference objects"))
	s.DeleteObjective("", "premium")
	require.Len(t, s.View().Pools["sim-pool"].Conflicts, 3)
	require.Nil(t, s.View().Pools["sim-pool"].Objectives["premium"])
	s.SetObjective(objs.Objectives[0])
	require.Equal(t, 7, strings.Count(logs.String(), "conflicting inference objects"))

	s.DeleteRewrite("", "older")
	pv = s.View().Pools["sim-pool"]
	require.Equal(t, "/newer", pv.Rewrites["summarize"].Rewrite)
	require.Nil(t, pv.Rewrites["chat"], "the InferenceModel serves chat again")
	require.Equal(t, "newer-generic", pv.GenericRewrite.Targets[0].Name)
	s.SetRewrite(objs.Rewrites[1])
	require.Equal(t, "/older", s.View().Pools["sim-pool"].Rewrites["summarize"].Rewrite)
}

func TestDuplicateModelNameIsAConflict(t *testing.T) {
	m := scrape.NewManager(scrape.Config{Logger: quiet()})
	t.Cleanup(m.Close)
	s := New(m, quiet(), nil)
	s.ReplaceObjects(examples(t))
	s.SetModel(inference.Model{Name: "zz-chat", ModelName: "chat", PoolName: "sim-pool", Targets: []inference.Target{{Name: "x", Weight: 1}}})
	pv := s.View().Pools["sim-pool"]
	require.Equal(t, "chat", pv.Models["chat"].Name, "the alphabetically first object keeps the name")
	require.Equal(t, []string{`pool "sim-pool": InferenceModel "/zz-chat" ignored: modelName "chat" is already served by InferenceModel "/chat"`}, pv.Conflicts)
}

func TestObjectiveNameClashAcrossNamespaces(t *testing.T) {
	m := scrape.NewManager(scrape.Config{Logger: quiet()})
	t.Cleanup(m.Close)
	s := New(m, quiet(), nil)
	s.ReplaceObjects(examples(t))
	s.SetObjective(inference.Objective{Name: "o", Namespace: "b", Priority: 5, Pools: []string{"sim-pool"}})
	s.SetObjective(inference.Objective{Name: "o", Namespace: "a", Priority: -5, Pools: []string{"sim-pool"}})
	pv := s.View().Pools["sim-pool"]
	require.Equal(t, int32(-5), pv.Objectives["o"].Priority)
	require.Contains(t, pv.Conflicts, `pool "sim-pool": InferenceObjective "b/o" ignored: "a/o" has its name`)
}

func TestPoolEngineReachesItsEndpoints(t *testing.T) {
	m := scrape.NewManager(scrape.Config{Logger: quiet(), Engine: scrape.EngineVLLM}) // --engine vllm
	t.Cleanup(m.Close)
	s := New(m, quiet(), nil)
	pool := func(name string, e scrape.Engine) inference.Pool {
		return inference.Pool{Name: name, TargetPort: 8000, Selector: map[string]string{"a": name}, Strategy: pickapi.StrategyDefault, Engine: e}
	}
	engineOf := func(pool, addr string) scrape.Engine {
		for _, ep := range s.View().Pools[pool].Endpoints {
			if ep.Addr == addr {
				return ep.Engine()
			}
		}
		t.Fatalf("%s not in pool %s", addr, pool)
		return ""
	}
	// Endpoints may arrive before their pool object (kubernetes mode).
	s.SetEndpoints("sg", []string{"127.0.0.1:1"})
	s.SetPool(pool("plain", ""))
	s.SetEndpoints("plain", []string{"127.0.0.1:2"})
	require.Equal(t, scrape.EngineVLLM, engineOf("plain", "127.0.0.1:2"), "no annotation: the picker's --engine")

	s.SetPool(pool("sg", scrape.EngineSGLang))
	require.Equal(t, scrape.EngineSGLang, engineOf("sg", "127.0.0.1:1"), "the annotation applies once the pool is known")
	s.SetEndpoints("sg", []string{"127.0.0.1:1", "127.0.0.1:3"})
	require.Equal(t, scrape.EngineSGLang, engineOf("sg", "127.0.0.1:3"), "and to endpoints added later")

	s.SetPool(pool("sg", scrape.EngineAuto))
	require.Equal(t, scrape.EngineAuto, engineOf("sg", "127.0.0.1:1"), "an annotation change applies without an endpoint change")
	s.SetPool(pool("sg", ""))
	require.Equal(t, scrape.EngineVLLM, engineOf("sg", "127.0.0.1:1"), "annotation removed: back to --engine")

	// One address in two pools: an annotated pool beats one without; of
	// two annotated pools the first by name wins.
	s.SetEndpoints("plain", []string{"127.0.0.1:2", "127.0.0.1:1"})
	s.SetPool(pool("sg", scrape.EngineSGLang))
	require.Equal(t, scrape.EngineSGLang, engineOf("plain", "127.0.0.1:1"))
	s.SetPool(pool("plain", scrape.EngineTritonTRTLLM))
	require.Equal(t, scrape.EngineTritonTRTLLM, engineOf("sg", "127.0.0.1:1"), `"plain" sorts before "sg"`)
	require.Contains(t, s.engineConflict["127.0.0.1:1"], `pool "plain" names "triton-trtllm", pool "sg" names "sglang"`)
	s.DeletePool("plain")
	require.Equal(t, scrape.EngineSGLang, engineOf("sg", "127.0.0.1:1"))
	require.Empty(t, s.engineConflict)
}
