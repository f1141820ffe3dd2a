// Package kvrouting runs PRECISE_PREFIX_CACHE end to end: simulated vLLM
// servers publishing their KV-cache events, picker-svc in process
// following them, and an ext_proc gateway in front.
package kvrouting

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/extprocgw"
	"github.com/meshllm/meshllm/e2e/vllmsim"
	"github.com/meshllm/meshllm/picker-svc/app"
)

// freePort finds a port free on every host.
func freePort(t *testing.T, hosts ...string) int {
	t.Helper()
	for try := 0; try < 20; try++ {
		ln, err := net.Listen("tcp", hosts[0]+":0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{ln}
		ok := true
		for _, h := range hosts[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, l)
		}
		for _, l := range lns {
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every host")
	return 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not a wait for time to pass
	}
}

// kvEvents reads a picker's meshllm_picker_kv_events_total by kind.
func kvEvents(t *testing.T, picker, kind string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + picker + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	f := fams["meshllm_picker_kv_events_total"]
	if f == nil {
		return 0
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetValue() == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func post(t *testing.T, url, body string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, b)
}

// Picks follow the blocks the engines really hold, where the picker's own
// guess (from its past picks) is wrong: a prompt served by one pod without
// the picker, then evicted there and served by the other.
func TestPrecisePicksFollowEngineBlocks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hosts := []string{"127.0.0.2", "127.0.0.3"}
	httpPort := freePort(t, hosts...)
	eventsAddr := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t, "127.0.0.1"))
	var addrs []string
	for _, h := range hosts {
		addrs = append(addrs, net.JoinHostPort(h, strconv.Itoa(httpPort)))
	}

	// The picker binds the KV-event socket; each engine dials in with
	// llm-d's topic naming its address.
	pickerReady, extReady := make(chan net.Addr, 1), make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{Args: []string{"--strategy", "PRECISE_PREFIX_CACHE", "--kv-events-listen", eventsAddr,
			"--scrape-interval", "50ms", "--log-level", "warn"}, Log: io.Discard,
			Listen: "127.0.0.1:0", ExtProcListen: "127.0.0.1:0", Endpoints: addrs, Pool: "pool",
			Ready: func(a net.Addr) { pickerReady <- a }, ExtProcReady: func(a net.Addr) { extReady <- a }})
	}()
	var picker, ext string
	select {
	case a := <-extReady:
		ext, picker = a.String(), (<-pickerReady).String()
	case err := <-done:
		t.Fatalf("picker-svc: %v", err)
	}
	t.Cleanup(func() { cancel(); <-done })

	var cfgs []vllmsim.Config
	for i, a := range addrs {
		c := vllmsim.Defaults()
		c.Addr, c.Model, c.Speed = a, "base", 100
		c.KVEvents = vllmsim.KVEventsConfig{EnableKVCacheEvents: true, Publisher: "zmq", Endpoint: eventsAddr,
			Topic: "kv@" + hosts[i] + "@base"}
		cfgs = append(cfgs, c)
	}
	fleet, err := vllmsim.StartFleet(ctx, cfgs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = fleet.Close() })
	a, b := fleet.Addrs[0], fleet.Addrs[1]
	eventually(t, "the engines to reach the picker's KV-event socket", func() bool {
		return fleet.Servers[0].KVEventsSubscribed() && fleet.Servers[1].KVEventsSubscribed()
	})
	eventually(t, "the picker to scrape both engines", func() bool {
		resp, err := http.Get("http://" + picker + "/debug/state")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return bytes.Count(bytes.ReplaceAll(body, []byte(" "), nil), []byte(`"eligible":true`)) >= 2
	})
	gw, err := extprocgw.Start(extprocgw.Options{ExtProc: ext, Endpoints: fleet.Addrs})
	require.NoError(t, err)
	t.Cleanup(gw.Close)

	var sb strings.Builder
	for i := 0; sb.Len() < 3000; i++ {
		fmt.Fprintf(&sb, "clause %d of the shared contract says something particular. ", i)
	}
	prompt := sb.String()
	req := func(question string) string {
		return fmt.Sprintf(`{"model":"base","prompt":%q,"max_tokens":1}`, prompt+question)
	}
	// settle waits until the engines' events up to now have reached the
	// picker: kind has grown past before.
	settle := func(kind string, before float64) {
		eventually(t, kind+" events to reach the picker", func() bool { return kvEvents(t, picker, kind) > before })
	}

	// 1. B serves the prompt without the picker (another gateway's traffic):
	// only B's events can tell.
	stored := kvEvents(t, picker, "block_stored")
	post(t, "http://"+b+"/v1/completions", req(" First question?"))
	settle("block_stored", stored)
	post(t, gw.URL()+"/v1/completions", req(" Second question?"))
	require.Equal(t, map[string]int{b: 1}, gw.UpstreamCounts(), "the pick follows the blocks B holds")

	// 2. B's cache is emptied and A serves the prompt without the picker:
	// the guess (B served it last through the picker) is now wrong.
	cleared := kvEvents(t, picker, "all_blocks_cleared")
	post(t, "http://"+b+"/reset_prefix_cache", "")
	settle("all_blocks_cleared", cleared)
	stored = kvEvents(t, picker, "block_stored")
	post(t, "http://"+a+"/v1/completions", req(" Third question?"))
	settle("block_stored", stored)
	post(t, gw.URL()+"/v1/completions", req(" Fourth question?"))
	require.Equal(t, map[string]int{b: 1, a: 1}, gw.UpstreamCounts(), "the pick follows the blocks to A")
}
