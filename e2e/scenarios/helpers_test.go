package scenarios

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/e2e/loadgen"
	"github.com/meshllm/meshllm/e2e/stack"
)

// eventually polls cond until it holds or limit passes. It waits on state
// that other processes' goroutines change (scrapes, engines), never on time.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// endpointState is the picker's view of one endpoint.
func endpointState(t *testing.T, s *stack.Stack, addr string) gjson.Result {
	resp, err := http.Get("http://" + s.PickerAddr() + "/debug/state")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, p := range gjson.GetBytes(b, "pools").Array() {
		for _, e := range p.Get("endpoints").Array() {
			if e.Get("address").Str == addr {
				return e
			}
		}
	}
	return gjson.Result{}
}

// loadDirect keeps n long requests running against one simulated server,
// behind the gateway's back, until the test ends.
func loadDirect(t *testing.T, addr string, n int, body []byte) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client.Do(ctx, "http://"+addr, loadgen.Request{Body: body})
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func counterValue(prom, series string) float64 {
	var v float64
	for _, line := range splitLines(prom) {
		if len(line) > len(series) && line[:len(series)] == series && line[len(series)] == ' ' {
			fmt.Sscan(line[len(series)+1:], &v)
		}
	}
	return v
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

// sumSeries adds every series of a metric.
func sumSeries(prom, metric string) float64 {
	var sum float64
	for _, line := range splitLines(prom) {
		if len(line) > len(metric) && line[:len(metric)] == metric && (line[len(metric)] == '{' || line[len(metric)] == ' ') {
			var v float64
			for i := len(line) - 1; i >= 0; i-- {
				if line[i] == ' ' {
					fmt.Sscan(line[i+1:], &v)
					break
				}
			}
			sum += v
		}
	}
	return sum
}

// syncWriter serialises writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	b  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// logPicks logs how the filter's and the picker's picks ended, so that a
// routing scenario that fails says whether the picker chose badly, saw old
// numbers, or was never asked (the filter failed open).
func logPicks(t *testing.T, s *stack.Stack) {
	t.Helper()
	var lines []string
	for _, l := range splitLines(s.PrometheusText()) {
		if strings.HasPrefix(l, "asm_llm_proxy_picks_total") {
			lines = append(lines, l)
		}
	}
	if resp, err := http.Get("http://" + s.PickerAddr() + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range splitLines(string(b)) {
			if strings.HasPrefix(l, "meshllm_picker_picks_total") || strings.HasPrefix(l, "meshllm_picker_stale_picks_total") || strings.HasPrefix(l, "meshllm_picker_request_ends_reported_total") ||
				strings.HasPrefix(l, "meshllm_picker_endpoint_eligible") || strings.HasPrefix(l, "meshllm_picker_scrape_errors_total") ||
				strings.HasPrefix(l, "meshllm_picker_pick_duration_seconds_sum") || strings.HasPrefix(l, "meshllm_picker_pick_duration_seconds_count") {
				lines = append(lines, l)
			}
		}
	}
	t.Logf("picks:\n%s", strings.Join(lines, "\n"))
}
