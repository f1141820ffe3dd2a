package scenarios

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/stack"
	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// frozenClock stops simulated time at 0: the engine admits what fits into
// its first step, then waits until the server closes, so the state the
// picker scrapes holds still.
type frozenClock struct{}

func (frozenClock) Now() float64 { return 0 }

func (frozenClock) SleepUntil(ctx context.Context, t float64) error {
	if t <= 0 {
		return ctx.Err()
	}
	<-ctx.Done()
	return ctx.Err()
}

// A pod speaking SGLang's metric names (vllmsim in SGLang mode) is read as
// SGLang (detected from the page), and the picker sees what it holds: one
// request running, two queued behind it (max_num_seqs 1).
func TestSGLangPodScraped(t *testing.T) {
	cfgs := sims(1, "m", 1)
	cfgs[0].Engine, cfgs[0].MaxNumSeqs, cfgs[0].Clock = vllmsim.EngineSGLang, 1, frozenClock{}
	s := start(t, stack.Config{Sims: cfgs, Objects: objects("DEFAULT"), Pool: "sim-pool", PluginConfig: routed("")})
	pod := s.Fleet.Addrs[0]
	eventually(t, 10*time.Second, "a first scrape", func() bool { return endpointState(t, s, pod).Get("scraped_as").Str != "" })
	require.Equal(t, "sglang", endpointState(t, s, pod).Get("scraped_as").Str, "detected from the sglang: prefix")

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for range 3 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+pod+"/v1/completions",
				strings.NewReader(`{"model":"m","prompt":"`+strings.Repeat("tell me a story ", 40)+`","max_tokens":50}`))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	sim := s.Fleet.Servers[0]
	eventually(t, 10*time.Second, "the three requests in the simulator", func() bool {
		st := sim.Stats()
		return st.Running == 1 && st.Waiting == 2
	})
	eventually(t, 10*time.Second, "the picker to see them", func() bool {
		e := endpointState(t, s, pod)
		return e.Get("running").Float() == 1 && e.Get("waiting").Float() == 2
	})
	require.InDelta(t, sim.Stats().KVCacheUsage, endpointState(t, s, pod).Get("kv_cache_usage").Float(), 1e-9)
	require.Greater(t, sim.Stats().KVCacheUsage, 0.0, "the running request's prompt holds KV blocks")
}
