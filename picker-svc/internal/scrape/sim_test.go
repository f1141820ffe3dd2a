package scrape

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshllm/meshllm/e2e/vllmsim"
	"github.com/stretchr/testify/require"
)

// frozenClock stops simulated time at 0: the engine admits what fits into
// its first step, then waits in SleepUntil until the server closes, so the
// state the picker scrapes holds still.
type frozenClock struct{}

func (frozenClock) Now() float64 { return 0 }

func (frozenClock) SleepUntil(ctx context.Context, t float64) error {
	if t <= 0 {
		return ctx.Err()
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestScrapeSimulatedSGLang scrapes the simulator speaking SGLang's metric
// names: idle, then with one request running and two queued behind it
// (max_num_seqs 1), the picker's snapshot shows what the server holds.
func TestScrapeSimulatedSGLang(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	f, err := vllmsim.StartFleet(ctx, []vllmsim.Config{{Engine: vllmsim.EngineSGLang, Model: "m", MaxNumSeqs: 1,
		Clock: frozenClock{}, Logger: slog.New(slog.DiscardHandler)}})
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); _ = f.Close() })
	sim := f.Servers[0]
	auto := NewEndpoint(sim.Addr(), Config{Logger: slog.New(slog.DiscardHandler)})
	asVLLM := NewEndpoint(sim.Addr(), Config{Engine: EngineVLLM, Logger: slog.New(slog.DiscardHandler)})

	require.Equal(t, OK, auto.ScrapeOnce(ctx))
	idle := auto.Snapshot()
	require.Equal(t, EngineSGLang, idle.Engine, "detected from the sglang: prefix")
	require.Zero(t, idle.Waiting+idle.Running+idle.KVCacheUsage)
	require.Equal(t, "m", idle.BaseModel)
	cfg := sim.Config()
	require.Equal(t, 1, idle.BlockSize)
	require.Equal(t, cfg.NumGPUBlocks*cfg.BlockSize, idle.NumGPUBlocks, "sglang:max_total_num_tokens, in tokens")

	for range 3 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, sim.URL()+"/v1/completions",
				strings.NewReader(`{"model":"m","prompt":"`+strings.Repeat("tell me a story ", 40)+`","max_tokens":50}`))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	// The simulator's own state is the reference; wait until all three
	// requests have reached it (time is frozen, so it then stays put).
	require.Eventually(t, func() bool {
		st := sim.Stats()
		return st.Running == 1 && st.Waiting == 2
	}, 10*time.Second, time.Millisecond)
	st := sim.Stats()

	require.Equal(t, OK, auto.ScrapeOnce(ctx))
	busy := auto.Snapshot()
	require.Equal(t, 1.0, busy.Running)
	require.Equal(t, 2.0, busy.Waiting)
	require.Greater(t, busy.KVCacheUsage, 0.0, "the running request's prompt holds KV blocks")
	require.InDelta(t, st.KVCacheUsage, busy.KVCacheUsage, 1e-9)

	require.Equal(t, ReasonPartial, asVLLM.ScrapeOnce(ctx), "read as vLLM, an SGLang page lacks the core gauges")
	require.Contains(t, asVLLM.LastError(), "vllm page without")
	require.Nil(t, asVLLM.Snapshot())
}
