package server

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

type fakeDiscovery struct{ synced atomic.Bool }

func (d *fakeDiscovery) Synced() (bool, string) {
	if d.synced.Load() {
		return true, ""
	}
	return false, "discovery has not synced pods yet"
}

func TestReadinessWaitsForDiscoveryThenForMetrics(t *testing.T) {
	f := newFixture(t)
	d := &fakeDiscovery{}
	f.srv.WaitFor(d)
	code, body := f.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "discovery has not synced pods yet\n", body)

	v := newVLLM(t, 0, 0.1)
	f.store.SetEndpoints("sim-pool", []string{v.addr()})
	f.waitReady(t, 1)
	code, _ = f.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "an endpoint with metrics is not enough before the first sync")
	_, state := f.get(t, "/debug/state")
	require.Contains(t, state, `"not_ready_because": "discovery has not synced pods yet"`)

	d.synced.Store(true)
	code, _ = f.get(t, "/readyz")
	require.Equal(t, http.StatusOK, code)
	_, state = f.get(t, "/debug/state")
	require.NotContains(t, state, "not_ready_because")

	f.store.SetEndpoints("sim-pool", nil)
	code, body = f.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "no endpoint has fresh metrics yet\n", body)
}
