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
