package scenarios

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/loadgen"
	"github.com/meshllm/meshllm/e2e/stack"
)

// The gateway path (an InferencePool whose endpoint picker is picker-svc,
// over ext_proc): the scenarios whose checks differ from the Wasm path's.
// Queue and KV avoidance, InferenceModel weights and criticality shedding
// run over both paths in routing_test.go.

func pickerMetrics(t *testing.T, s *stack.Stack) string {
	t.Helper()
	resp, err := http.Get("http://" + s.PickerAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func sumUpstream(c map[string]int) int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// A client's x-gateway-destination-endpoint naming a pod of the pool (the
// busy one) or an address outside it routes nothing: the picker overwrites
// the header, and the gateway routes by the picker's metadata.
func TestExtProcSpoofedDestination(t *testing.T) {
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	trap := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) })}
	go func() { _ = trap.Serve(ln) }()
	t.Cleanup(func() { _ = trap.Close() })

	cfgs := sims(2, "base", 10)
	cfgs[0].MaxNumSeqs = 1
	s := start(t, stack.Config{Sims: cfgs, Objects: objects("DEFAULT"), Pool: "sim-pool", PluginConfig: routed("")})
	busy, free := s.Fleet.Addrs[0], s.Fleet.Addrs[1]
	loadDirect(t, busy, 8, loadgen.Completion("base", "keep busy", 8000, true))
	eventually(t, 20*time.Second, "the picker to see the busy pod's queue", func() bool {
		return endpointState(t, s, busy).Get("waiting").Float() >= 5
	})
	for _, spoof := range []string{busy, ln.Addr().String(), ln.Addr().String() + "," + busy} {
		for i := 0; i < 5; i++ {
			r := client.Do(context.Background(), s.ExtProcGateway.URL(), loadgen.Request{
				Headers: map[string]string{"x-gateway-destination-endpoint": spoof}, Body: loadgen.Completion("base", "q", 2, false)})
			require.True(t, r.OK(), "%d %s %v", r.Status, r.Body, r.Err)
		}
	}
	require.Zero(t, hits.Load(), "the spoofed address received traffic")
	require.Equal(t, map[string]int{free: 15}, s.ExtProcGateway.UpstreamCounts())
}

// The picker dies: with failureMode FailOpen the gateway goes on with the
// pool's own balancing and no request fails; picks resume when it is back.
// With FailClose (the InferencePool default) requests fail while it is
// down.
func TestExtProcPickerKilled(t *testing.T) {
	send := func(s *stack.Stack, n int, wantOK bool) {
		for i := 0; i < n; i++ {
			r := client.Do(context.Background(), s.ExtProcGateway.URL(), loadgen.Request{Body: loadgen.Completion("base", "q", 2, i%2 == 0)})
			if wantOK {
				require.True(t, r.OK(), "request %d: %d %s %v", i, r.Status, r.Body, r.Err)
			} else {
				require.NoError(t, r.Err)
				require.Equal(t, http.StatusInternalServerError, r.Status, string(r.Body))
			}
		}
	}
	picked := func(s *stack.Stack) float64 {
		return counterValue(pickerMetrics(t, s), `meshllm_picker_picks_total{outcome="picked",strategy="DEFAULT"}`)
	}
	t.Run("fail open", func(t *testing.T) {
		s := start(t, stack.Config{Sims: sims(3, "base", 100), Objects: objects("DEFAULT"), Pool: "sim-pool",
			PluginConfig: routed(""), ExtProcFailOpen: true})
		send(s, 10, true)
		require.Equal(t, float64(10), picked(s))
		require.NoError(t, s.StopPicker())
		send(s, 15, true)
		require.Equal(t, 25, sumUpstream(s.ExtProcGateway.UpstreamCounts()))
		require.NoError(t, s.RestartPicker())
		eventually(t, 20*time.Second, "picks over ext_proc again", func() bool {
			r := client.Do(context.Background(), s.ExtProcGateway.URL(), loadgen.Request{Body: loadgen.Completion("base", "q", 2, false)})
			require.True(t, r.OK())
			return picked(s) > 0
		})
	})
	t.Run("fail close", func(t *testing.T) {
		s := start(t, stack.Config{Sims: sims(2, "base", 100), Objects: objects("DEFAULT"), Pool: "sim-pool", PluginConfig: routed("")})
		send(s, 3, true)
		require.NoError(t, s.StopPicker())
		send(s, 3, false)
		require.Equal(t, 3, sumUpstream(s.ExtProcGateway.UpstreamCounts()), "nothing was sent while the picker was down")
	})
}

const objectivesYAML = `---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch}
spec: {priority: -1, poolRef: {name: sim-pool}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: premium}
spec: {priority: 10, poolRef: {name: sim-pool}}
`

// InferenceObjective priorities over both paths: with every pod
// saturated, a request naming a negative-priority objective (by the
// upstream's header) is shed, one naming a positive one is routed.
func TestObjectivePriorityShedding(t *testing.T) {
	for _, path := range routePaths {
		t.Run(path.name, func(t *testing.T) {
			cfgs := sims(2, "base", 10)
			for i := range cfgs {
				cfgs[i].MaxNumSeqs = 1
			}
			s := start(t, stack.Config{Sims: cfgs, Pool: "sim-pool", PluginConfig: routed(""), Objects: objects("DEFAULT") + objectivesYAML})
			// One pick first: the filter forwards objectives once the picker
			// has shown it reads them (a pick_id).
			r := client.Do(context.Background(), path.url(s), loadgen.Request{Body: loadgen.Completion("base", "warm up", 1, false)})
			require.True(t, r.OK(), "%d %s %v", r.Status, r.Body, r.Err)
			for _, a := range s.Fleet.Addrs {
				loadDirect(t, a, 9, loadgen.Completion("base", "keep busy", 8000, true))
			}
			eventually(t, 20*time.Second, "every pod saturated in the picker's view", func() bool {
				return endpointState(t, s, s.Fleet.Addrs[0]).Get("waiting").Float() > 5 && endpointState(t, s, s.Fleet.Addrs[1]).Get("waiting").Float() > 5
			})
			r = client.Do(context.Background(), path.url(s), loadgen.Request{Headers: map[string]string{"x-gateway-inference-objective": "batch"},
				Body: loadgen.Completion("base", "later", 2, false)})
			require.NoError(t, r.Err)
			require.Equal(t, 429, r.Status, string(r.Body))
			require.Contains(t, string(r.Body), "batch", "the refusal names the objective")

			before := sumUpstream(path.counts(s))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go client.Do(ctx, path.url(s), loadgen.Request{Headers: map[string]string{"x-llm-d-router-inference-objective": "premium"},
				Body: loadgen.Completion("base", "now", 1, false)})
			eventually(t, 10*time.Second, "the premium request to be routed", func() bool {
				return sumUpstream(path.counts(s)) == before+1
			})
		})
	}
}

// Over TLS (a self-signed certificate), as gateways that dial their
// endpoint picker over TLS expect: requests are picked and routed.
func TestExtProcOverTLS(t *testing.T) {
	s := start(t, stack.Config{Sims: sims(2, "base", 100), Objects: objects("DEFAULT"), Pool: "sim-pool",
		PluginConfig: routed(""), ExtProcTLS: true})
	for i := 0; i < 10; i++ {
		r := client.Do(context.Background(), s.ExtProcGateway.URL(), loadgen.Request{Body: loadgen.Completion("base", "q", 2, i%2 == 0)})
		require.True(t, r.OK(), "%d %s %v", r.Status, r.Body, r.Err)
	}
	require.Equal(t, float64(10), counterValue(pickerMetrics(t, s), `meshllm_picker_picks_total{outcome="picked",strategy="DEFAULT"}`))
}
