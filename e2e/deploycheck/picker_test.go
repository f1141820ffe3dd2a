package deploycheck

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/extprocgw"
	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/e2e/vllmsim"
	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/app"
)

// pickerFamilies runs picker-svc in process beside two simulated pods,
// uses both of its doors (a pick over the HTTP pick API, as the filter
// asks; a request placed over ext_proc and one it refuses, as a gateway
// sends them) and returns what its /metrics then serves.
func pickerFamilies(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const modelName, pool = "m", "p"
	quiet := slog.New(slog.DiscardHandler)
	pods, err := vllmsim.StartFleet(ctx, []vllmsim.Config{{Model: modelName, Speed: 50, Logger: quiet}, {Model: modelName, Speed: 50, Logger: quiet}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pods.Close() })

	ready := make(chan net.Addr, 1)
	extProc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{Log: io.Discard, Listen: "127.0.0.1:0", Endpoints: pods.Addrs, Pool: pool,
			Objects: []byte(fleet.PoolObjects(pool, string(pickapi.StrategyDefault))), ExtProcListen: "127.0.0.1:0",
			Ready: func(a net.Addr) { ready <- a }, ExtProcReady: func(a net.Addr) { extProc <- a }})
	}()
	var base string
	select {
	case a := <-ready:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("picker-svc: %v", err)
	}
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	// Readiness needs a first scrape of the pods, in the picker's own time.
	require.Eventually(t, func() bool { return get(base+"/readyz") == http.StatusOK }, 20*time.Second, 10*time.Millisecond)

	resp, err := http.Post(base+pickapi.Path, "application/json", strings.NewReader(`{"pool":"p","model":"m"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	gw, err := extprocgw.Start(extprocgw.Options{ExtProc: (<-extProc).String(), Endpoints: pods.Addrs})
	require.NoError(t, err)
	t.Cleanup(gw.Close)
	for body, status := range map[string]int{
		`{"model":"m","prompt":"hello","max_tokens":3}`:       http.StatusOK,
		`{"model":"unknown","prompt":"hello","max_tokens":3}`: http.StatusNotFound,
	} {
		resp, err := http.Post(gw.URL()+"/v1/completions", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, status, resp.StatusCode, body)
	}

	resp, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

func get(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// vllmSeries are the series the simulator exposes, v1 and v0 names.
func vllmSeries(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, v0 := range []bool{false, true} {
		srv, err := vllmsim.NewServer(vllmsim.Config{MetricsV0: v0})
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		tp := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := tp.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
		require.NoError(t, err)
		for n := range seriesOf(fams) {
			known[n] = true
		}
	}
	return known
}
