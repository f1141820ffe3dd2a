package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/filter/stats"
)

// TestModelLabelBoundWithFourWorkers: through the gateway with four workers
// (four VMs on one stats store, as Envoy runs them), thousands of random
// model names leave model_label_limit label sets plus other on
// /stats/prometheus, not one limit per worker. The upstream echoes the model
// as the served one, so target_model is as hostile as model.
func TestModelLabelBoundWithFourWorkers(t *testing.T) {
	const (
		limit    = 100
		requests = 3000
		clients  = 8
	)
	wasm, err := os.ReadFile("../../wasm/meshllm.wasm")
	require.NoError(t, err, "run `make wasm` first (make test does)")
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("content-type", "application/json")
		fmt.Fprintf(w, `{"model":%q,"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2}}`, gjson.GetBytes(body, "model").Str)
	}))
	defer upstream.Close()
	ep := upstream.Listener.Addr().String()
	g, err := Start(context.Background(), Options{
		EnvoyYAML: "../../envoy/envoy.yaml", Wasm: wasm,
		ListenerAddrs: map[string]string{"plain_8080": "127.0.0.1:0", "llm_8081": "127.0.0.1:0"}, AdminAddr: "127.0.0.1:0",
		Endpoints:    map[string][]string{"vllm": {ep}, "vllm_llm": {ep}, "picker": {ep}},
		PluginConfig: map[string]string{"llm_8081": fmt.Sprintf(`{"model_label_limit": %d}`, limit)},
		Workers:      4, AccessLog: io.Discard, Log: log.New(io.Discard, "", 0),
	})
	require.NoError(t, err)
	defer g.Close()
	require.Len(t, g.VMs("llm_8081"), 4)

	url := "http://" + g.Addr("llm_8081") + "/v1/chat/completions"
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(c)))
			for i := range requests / clients {
				body := fmt.Sprintf(`{"model":"m-%d-%d-%x","messages":[{"role":"user","content":"hi"}]}`, c, i, rng.Uint64())
				resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	resp, err := http.Get("http://" + g.AdminAddr() + "/stats/prometheus")
	require.NoError(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	per := map[string]int{}
	for name, f := range fams {
		per[name] = len(f.GetMetric())
	}
	t.Logf("label sets per family on /stats/prometheus: %v", per)
	for _, m := range []string{stats.PromptTokens, stats.CompletionTokens, stats.TTFBMillis, stats.DurationMillis, stats.Requests} {
		require.Equal(t, limit+1, per[m], "%s: %d label sets plus other for the whole proxy", m, limit)
	}
	var prompt float64
	for _, m := range fams[stats.PromptTokens].GetMetric() {
		prompt += m.GetCounter().GetValue()
	}
	require.Equal(t, float64(requests*10), prompt, "no tokens lost: beyond the limit they count under other")
}
