package compare

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/e2e/stack"
)

func TestBypassRoutesSpreadsTheShare(t *testing.T) {
	urls, perPod := bypassRoutes(10, 0.3, "gw", []string{"a", "b"})
	assert.Equal(t, []string{"gw", "gw", "gw", "a", "gw", "gw", "b", "gw", "gw", "a"}, urls)
	assert.Equal(t, []int{2, 1}, perPod)

	urls, perPod = bypassRoutes(4, 0, "gw", []string{"a"})
	assert.Equal(t, []string{"gw", "gw", "gw", "gw"}, urls)
	assert.Equal(t, []int{0}, perPod)
}

func TestRestartAfterFollowsTheSchedule(t *testing.T) {
	// Half of 960 requests at 4 a simulated second: 120 simulated s, 30
	// wall s at speed 4.
	assert.Equal(t, 30*time.Second, restartAfter(0.5, 960, 4, 4))
}

// TestVariantsOnTheStack runs both variants on a small fleet with an
// LLM-aware policy: the picker is asked only for the requests that did not
// bypass it, the pods got the bypassed ones, and the first pod restarted
// during the run (it counts one restart).
func TestVariantsOnTheStack(t *testing.T) {
	wasm, err := stack.LoadWasm()
	require.NoError(t, err)
	o, err := bench.ParseOptions(append(append([]string{}, benchDefaults...),
		"--dataset-name", "shared_prefix", "--shared-prefix-num-groups", "4", "--shared-prefix-prompts-per-group", "5",
		"--shared-prefix-system-prompt-len", "256", "--shared-prefix-question-len", "32", "--shared-prefix-output-len", "8",
		"--num-prompts", "20", "--request-rate", "40", "--seed", "5"), os.Stderr)
	require.NoError(t, err)
	preset := fleet.Presets["qwen2.5-7b-a10"]
	preset.Pods = 2
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runs, err := RunAll(ctx, Config{
		Workload: "variants", Bench: o, Policies: []Policy{Policies["prefix_cache"]}, Repetitions: 1,
		Preset: preset, Speed: 20, SampleInterval: 20 * time.Millisecond, Wasm: wasm, Log: testLog{t},
		Bypass: 0.5, RestartPodAt: 0.5,
	})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	r := runs[0]
	assert.Equal(t, []int{5, 5}, r.BypassPerPod)
	asked := r.Gateway[`asm_llm_proxy_picks_total{outcome="picked"}`] + r.Gateway[`asm_llm_proxy_picks_total{outcome="fallback"}`]
	assert.Equal(t, 10.0, asked, "only the requests through the gateway asked the picker: %v", r.Gateway)
	sum := 0
	for _, n := range r.RequestsPerPod {
		sum += n
	}
	assert.Equal(t, 20, sum, "gateway and direct requests together reached the pods")
	assert.Equal(t, uint64(1), r.Sims[RestartedPod].Restarts)
	assert.Zero(t, r.Sims[1].Restarts)
	assert.Greater(t, r.RestartedAt, 0.0)
	bypassed, ok := r.Result.Get("bypassed_requests")
	require.True(t, ok)
	assert.EqualValues(t, 10, bypassed)
}
