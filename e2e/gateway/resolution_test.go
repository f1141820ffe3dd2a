package gateway

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	wasmpluginv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/filter/resolution"
	"github.com/meshllm/meshllm/pickapi"
)

// Picker states the filter must ride out.
const (
	pickerUp   = iota
	pickerSlow // answers nothing until the filter gives up (picker_timeout_ms)
	pickerDown // drops every connection, as a dead process does
)

// fakePicker picks one endpoint and resolves tweet-summary with its table;
// its state and table change while the gateway runs.
type fakePicker struct {
	state    atomic.Int32
	endpoint atomic.Value // string
	table    atomic.Pointer[pickapi.Resolution]
	fetches  atomic.Int32
}

func (p *fakePicker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Read first: the server notices a closed connection (and cancels
	// the request's context) only once the body is read.
	_, _ = io.Copy(io.Discard, r.Body)
	switch p.state.Load() {
	case pickerSlow:
		if r.URL.Path == pickapi.Path {
			<-r.Context().Done() // the gateway's call timed out
			return
		}
	case pickerDown:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	}
	t := p.table.Load()
	w.Header().Set("content-type", "application/json")
	if r.URL.Path == pickapi.ResolutionPath {
		p.fetches.Add(1)
		_, _ = w.Write(t.AppendJSON(nil))
		return
	}
	target, _ := t.Target("tweet-summary", func(int64) int64 { return 0 })
	pick := pickapi.PickResponse{Endpoint: p.endpoint.Load().(string), TargetModel: target, Strategy: pickapi.StrategyDefault,
		Pool: t.Pool, Resolution: t.Version}
	_, _ = w.Write(pick.AppendJSON(nil))
}

// tweetSummary's table sends every request to one adapter (weight 0 on the
// other: the draw is tested elsewhere).
func tweetSummary(to int) *pickapi.Resolution {
	t := pickapi.Resolution{Pool: "vllm-llama2-7b-pool", Models: map[string][]pickapi.Target{
		"tweet-summary": {{Name: "tweet-summary-1", Weight: 0}, {Name: "tweet-summary-2", Weight: 0}},
	}}
	t.Models["tweet-summary"][to-1].Weight = 1
	t.Seal()
	return &t
}

// postVirtual sends a completion for the virtual model tweet-summary and
// returns the status and the model the picked pod received (the picker
// names one pod and no fallbacks, so the fallback cache holds it alone).
func (r *rig) postVirtual(t *testing.T) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+r.llmAddr+"/v1/completions", strings.NewReader(`{"model":"tweet-summary","prompt":"hello","max_tokens":5}`))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	logged, hits := len(r.log.lines()), r.picked.hits.Load()
	resp, err := r.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	r.log.waitLines(t, logged+1)
	require.Equal(t, hits+1, r.picked.hits.Load(), "served by the picked pod: %s", r.log.last(t))
	r.picked.mu.Lock()
	defer r.picked.mu.Unlock()
	return resp.StatusCode, r.picked.models[len(r.picked.models)-1]
}

// The compiled filter behind the gateway (envoy.yaml: body routing, 50 ms
// picks, fallback cache) learns the pool's resolution table from the
// picker and, with the picker slow, down, and back with new objects, still
// sends the virtual model's requests to the adapter the picker would have
// chosen: no request fails.
func TestNoVirtualModelRequestLostWhileThePickerIsAway(t *testing.T) {
	fp := &fakePicker{}
	fp.table.Store(tweetSummary(2))
	r := newRig(t, rigOptions{policy: wasmpluginv3.FailurePolicy_FAIL_RELOAD, picker: fp})
	fp.endpoint.Store(r.picked.addr())
	learned := func(version string) {
		require.Eventually(t, func() bool {
			b, _, ok := r.g.shared.Get(resolution.Key("vllm-llama2-7b-pool"))
			if !ok {
				return false
			}
			k, err := resolution.Decode(b, "vllm-llama2-7b-pool")
			return err == nil && k.Table.Version == version
		}, 10*time.Second, 5*time.Millisecond, "the filter's tick fetches the table a pick named")
	}

	status, model := r.postVirtual(t)
	require.Equal(t, 200, status)
	require.Equal(t, "tweet-summary-2", model, "picked: the picker's target")
	require.Contains(t, r.log.last(t), "route=picked")
	learned(fp.table.Load().Version)
	require.Equal(t, int32(1), fp.fetches.Load())

	for _, state := range []int32{pickerSlow, pickerDown} {
		fp.state.Store(state)
		for i := 0; i < 3; i++ {
			status, model = r.postVirtual(t)
			require.Equal(t, 200, status, "state %d", state)
			require.Equal(t, "tweet-summary-2", model, "state %d: the kept table's target", state)
			line := r.log.last(t)
			require.Contains(t, line, "target_model=tweet-summary-2 ")
			require.Contains(t, line, "route=fallback")
			require.Contains(t, line, "upstream="+r.picked.addr()+" ", "the fallback cache keeps the endpoint")
		}
	}

	// Back, restarted with other objects: the new table is fetched and
	// used when it goes away again.
	fp.table.Store(tweetSummary(1))
	fp.state.Store(pickerUp)
	status, model = r.postVirtual(t)
	require.Equal(t, 200, status)
	require.Equal(t, "tweet-summary-1", model)
	learned(fp.table.Load().Version)
	fp.state.Store(pickerDown)
	status, model = r.postVirtual(t)
	require.Equal(t, 200, status)
	require.Equal(t, "tweet-summary-1", model)

	prom := r.prometheus(t)
	require.Contains(t, prom, `asm_llm_proxy_local_resolutions_total{outcome="rewritten"} 7`)
	require.Contains(t, prom, `asm_llm_proxy_resolution_fetches_total{outcome="ok"} 2`)
	require.Contains(t, prom, `asm_llm_proxy_picker_errors_total{reason="timeout"} 7`, "a slow picker and a dead one look alike")
}
