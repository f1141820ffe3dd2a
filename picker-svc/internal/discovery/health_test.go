package discovery

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// metric reads one of h's series for resource (false: not exported).
func metric(t *testing.T, h *Health, name, resource string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(h))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() != resource {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func failures(t *testing.T, h *Health, resource string) float64 {
	v, _ := metric(t, h, "meshllm_picker_discovery_failures_total", resource)
	return v
}

func TestHealthTransitionsAgesAndLogs(t *testing.T) {
	var logs bytes.Buffer
	h := NewHealth(slog.New(slog.NewTextHandler(&logs, nil)))
	now := h.start
	h.now = func() time.Time { return now }
	h.Track("pods")
	h.Track("inferencepools")

	ok, why := h.Synced()
	require.False(t, ok)
	require.Equal(t, "discovery has not synced inferencepools, pods yet", why)
	now = now.Add(3 * time.Second)
	age, _ := metric(t, h, "meshllm_picker_discovery_last_sync_age_seconds", "pods")
	require.Equal(t, 3.0, age, "since start-up before the first sync")

	// The API server is away at start: logged once, counted each time.
	h.Failed("pods", errors.New("connection refused"))
	h.Failed("pods", errors.New("connection refused"))
	require.Equal(t, 1, strings.Count(logs.String(), "discovery cannot sync yet"))
	require.Equal(t, 2.0, failures(t, h, "pods"))

	now = now.Add(time.Second)
	h.Listed("pods", 10)
	h.Listed("inferencepools", 1)
	ok, _ = h.Synced()
	require.True(t, ok)
	require.Contains(t, logs.String(), "discovery recovered")
	require.Equal(t, time.Duration(0), h.Age("pods"), "current while the watch is open")
	synced, _ := metric(t, h, "meshllm_picker_discovery_synced", "pods")
	require.Equal(t, 1.0, synced)

	// A routine watch end: not current, nothing logged; reopened: current.
	logs.Reset()
	h.Interrupted("pods")
	now = now.Add(time.Second)
	require.Equal(t, time.Second, h.Age("pods"))
	h.Current("pods")
	require.Equal(t, time.Duration(0), h.Age("pods"))
	require.Empty(t, logs.String())

	// An outage after the first sync: logged once, the age grows from the
	// last moment the data was current, the recovery is logged.
	h.Failed("pods", errors.New("connection refused"))
	now = now.Add(30 * time.Second)
	h.Failed("pods", errors.New("connection refused"))
	require.Equal(t, 30*time.Second, h.Age("pods"))
	age, _ = metric(t, h, "meshllm_picker_discovery_last_sync_age_seconds", "pods")
	require.Equal(t, 30.0, age)
	require.Equal(t, 1, strings.Count(logs.String(), "discovery failing; routing on the last known state"))
	ok, _ = h.Synced()
	require.True(t, ok, "synced stays: the last known state is served")
	h.Current("pods")
	require.Contains(t, logs.String(), "discovery recovered")
	require.Contains(t, logs.String(), "stale_for=30s")

	h.Untrack("inferencepools")
	_, exported := metric(t, h, "meshllm_picker_discovery_synced", "inferencepools")
	require.False(t, exported)
}
