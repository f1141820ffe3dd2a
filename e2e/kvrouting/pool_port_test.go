package kvrouting

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/vllmsim"
	"github.com/meshllm/meshllm/picker-svc/app"
)

// The picker dials each engine's publisher at its pool's port
// (kvEvents.pools.<pool>.port), not the picker-wide one, and the events
// it receives there feed the index.
func TestPreciseDialsThePoolsPort(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const host = "127.0.0.2"
	addr := net.JoinHostPort(host, strconv.Itoa(freePort(t, host)))
	pubPort, elsewhere := freePort(t, "0.0.0.0"), freePort(t, host)
	cfg := filepath.Join(t.TempDir(), "picker.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, "kvEvents: {pools: {pool: {port: %d}}}\n", pubPort), 0o600))

	pickerReady := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{Args: []string{"--config", cfg, "--strategy", "PRECISE_PREFIX_CACHE",
			"--kv-events-port", strconv.Itoa(elsewhere), "--log-level", "warn"}, Log: io.Discard,
			Listen: "127.0.0.1:0", Endpoints: []string{addr}, Pool: "pool", Ready: func(a net.Addr) { pickerReady <- a }})
	}()
	var picker string
	select {
	case a := <-pickerReady:
		picker = a.String()
	case err := <-done:
		t.Fatalf("picker-svc: %v", err)
	}
	t.Cleanup(func() { cancel(); <-done })

	c := vllmsim.Defaults()
	c.Addr, c.Model, c.Speed = addr, "base", 100
	c.KVEvents = vllmsim.KVEventsConfig{EnableKVCacheEvents: true, Publisher: "zmq", Endpoint: fmt.Sprintf("tcp://*:%d", pubPort)}
	fleet, err := vllmsim.StartFleet(ctx, []vllmsim.Config{c})
	require.NoError(t, err)
	t.Cleanup(func() { _ = fleet.Close() })
	eventually(t, "the picker to subscribe at the pool's port", fleet.Servers[0].KVEventsSubscribed)

	post(t, "http://"+addr+"/v1/completions", `{"model":"base","prompt":"a prompt long enough to fill a few sixteen-token blocks of the cache, and then some more words","max_tokens":1}`)
	eventually(t, "the engine's events to reach the picker", func() bool { return kvEvents(t, picker, "block_stored") > 0 })
}
