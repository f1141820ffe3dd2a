package scenarios

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/loadgen"
	"github.com/meshllm/meshllm/e2e/stack"
)

func TestSmokeBothListeners(t *testing.T) {
	s := start(t, stack.Config{
		Sims:         sims(2, "base", 100, "a1", "a2"),
		Objects:      objects("DEFAULT", [3]string{"chat", "Standard", "a1:50,a2:50"}),
		Pool:         "sim-pool",
		PluginConfig: routed(""),
	})
	ctx := context.Background()
	for _, l := range []string{stack.PlainListener, stack.LLMListener} {
		for _, stream := range []bool{false, true} {
			model := "a1"
			if l == stack.LLMListener {
				model = "chat" // the virtual model only the picker knows
			}
			r := client.Do(ctx, s.URL(l), loadgen.Request{Body: loadgen.Completion(model, "hello world, this is a prompt", 8, stream)})
			require.NoError(t, r.Err)
			require.Equal(t, 200, r.Status, "%s stream=%v: %s", l, stream, r.Body)
			require.Equal(t, int64(8), r.OutputTokens)
			if l == stack.LLMListener {
				require.Contains(t, []string{"a1", "a2"}, r.Model, "the response names the adapter")
			}
		}
	}
	// The admin port serves the same text as Envoy's /stats/prometheus.
	resp, err := http.Get("http://" + s.Gateway.AdminAddr() + "/stats/prometheus")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	prom := string(body)
	require.Contains(t, prom, "# TYPE asm_llm_proxy_time_to_first_byte_ms histogram")
	require.Contains(t, prom, `asm_llm_proxy_time_to_first_byte_ms_bucket{le="+Inf",model="chat"} 2`)
	require.Contains(t, prom, `asm_llm_proxy_completion_tokens{model="chat",target_model="a`)
	require.True(t, strings.Contains(prom, `asm_llm_proxy_picks_total{outcome="picked"} 2`), prom)
}
