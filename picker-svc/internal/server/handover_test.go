package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
)

// gatedVLLM answers /metrics only once opened: an endpoint with no metrics
// yet, for as long as the test likes.
func gatedVLLM(t *testing.T) (addr string, open func()) {
	gate := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("vllm:num_requests_running 0\nvllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 0.1\n"))
	}))
	opened := false
	open = func() {
		if !opened {
			opened = true
			close(gate)
		}
	}
	t.Cleanup(srv.Close)
	t.Cleanup(open) // before Close: Close waits for the handlers
	return strings.TrimPrefix(srv.URL, "http://"), open
}

func TestPicksKeepRoutingWhileEveryEndpointIsNew(t *testing.T) {
	f := newFixture(t)
	a, b := newVLLM(t, 0, 0.1), newVLLM(t, 0, 0.1)
	f.store.SetEndpoints("sim-pool", []string{a.addr(), b.addr()})
	f.waitReady(t, 2)

	// Every address changes at once (a targetPort change): the new
	// endpoints have no metrics yet. Picks keep going to the old ones
	// rather than answering 503.
	c, openC := gatedVLLM(t)
	d, openD := gatedVLLM(t)
	f.store.SetEndpoints("sim-pool", []string{c, d})
	for range 20 {
		status, body := f.post(t, `{"model":"chat"}`)
		require.Equal(t, http.StatusOK, status, string(body))
		resp, err := pickapi.ParsePickResponse(body)
		require.NoError(t, err)
		require.Contains(t, []string{a.addr(), b.addr()}, resp.Endpoint)
	}
	_, metrics := f.get(t, "/metrics")
	require.Contains(t, metrics, `meshllm_picker_handover_picks_total{pool="sim-pool"} 20`)
	code, _ := f.get(t, "/readyz")
	require.Equal(t, http.StatusOK, code, "still ready: picks are answered")

	// The first new endpoint with metrics takes over.
	openC()
	require.Eventually(t, func() bool {
		status, body := f.post(t, `{"model":"chat"}`)
		resp, err := pickapi.ParsePickResponse(body)
		return status == http.StatusOK && err == nil && resp.Endpoint == c
	}, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return len(f.store.View().Pools["sim-pool"].Handover) == 0 }, 10*time.Second, time.Millisecond,
		"the handover ends, and with it the old endpoints' scrapes")
	openD()

	// Old endpoints that stop answering are not handed picks for long:
	// once their scrapes fail they are ineligible, and picks are refused
	// as before.
	e, _ := gatedVLLM(t)
	g, _ := gatedVLLM(t)
	f.waitReady(t, 2)
	f.store.SetEndpoints("sim-pool", []string{e, g})
	require.NotEmpty(t, f.store.View().Pools["sim-pool"].Handover)
	for _, old := range f.store.View().Pools["sim-pool"].Handover {
		require.Contains(t, []string{c, d}, old.Addr)
	}
	f.store.DeletePool("sim-pool") // the pods are gone with their pool
	status, _ := f.post(t, `{"model":"chat"}`)
	require.Equal(t, http.StatusNotFound, status)
}
