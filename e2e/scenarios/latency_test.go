package scenarios

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/e2e/loadgen"
	"github.com/meshllm/meshllm/e2e/stack"
	"github.com/meshllm/meshllm/pickapi"
)

// LATENCY end to end, through the Wasm filter and over ext_proc: a pod
// with a queue gets (almost) none of the new requests; the request's
// max_tokens reaches the picker (the filter sends it once the picker has
// said it reads it); a request that asks has its pick explained, in a
// response header where the filter is configured so.
func TestLatencyStrategy(t *testing.T) {
	for _, path := range routePaths {
		t.Run(path.name, func(t *testing.T) {
			cfgs := sims(2, "base", 10)
			cfgs[0].MaxNumSeqs = 2 // pod 0 queues quickly
			s := start(t, stack.Config{Sims: cfgs, Objects: objects("LATENCY"), Pool: "sim-pool", PluginConfig: routed(`,"pick_explain":"header"`)})
			queued, free := s.Fleet.Addrs[0], s.Fleet.Addrs[1]
			loadDirect(t, queued, 10, loadgen.Completion("base", loadgen.Words(rand.New(rand.NewSource(1)), 50), 8000, true))
			eventually(t, 20*time.Second, "the picker to see the queue", func() bool {
				return endpointState(t, s, queued).Get("waiting").Float() >= 5
			})

			before := path.counts(s)
			for i := 0; i < 20; i++ {
				r := client.Do(context.Background(), path.url(s), loadgen.Request{Body: loadgen.Completion("base", "short question", 4, false)})
				require.True(t, r.OK(), "%d %s %v", r.Status, r.Body, r.Err)
			}
			after := path.counts(s)
			logPicks(t, s)
			require.LessOrEqual(t, after[queued]-before[queued], 1, "the queued pod")
			require.GreaterOrEqual(t, after[free]-before[free], 19, "the free pod")

			last := lastPick(t, s)
			require.Equal(t, "LATENCY", last.Get("strategy").Str)
			require.Equal(t, int64(4), last.Get("max_tokens").Int(), "max_tokens reached the picker")
			require.Positive(t, last.Get("candidates.0.predicted_ttft_ms").Float())

			if path.name != "wasm" {
				return // ext_proc's header needs extProc.explainHeader (extproc tests)
			}
			req, err := http.NewRequest(http.MethodPost, path.url(s)+"/v1/completions",
				bytes.NewReader(loadgen.Completion("base", "short question", 4, false)))
			require.NoError(t, err)
			req.Header.Set("content-type", "application/json")
			req.Header.Set(pickapi.HeaderExplain, "1")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			why := resp.Header.Get(pickapi.HeaderPickExplanation)
			require.True(t, strings.HasPrefix(why, "LATENCY unsaturated kv_demand="), why)
			require.Contains(t, why, " "+free+" ttft=", why)
			require.Less(t, strings.Index(why, free), strings.Index(why, queued), "the free pod first: it was picked")
			require.Contains(t, why, "; "+queued+" ttft=")
		})
	}
}

// lastPick is the picker's newest explained pick (/debug/picks).
func lastPick(t *testing.T, s *stack.Stack) gjson.Result {
	t.Helper()
	resp, err := http.Get("http://" + s.PickerAddr() + "/debug/picks?n=1")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return gjson.GetBytes(b, "picks.0")
}
