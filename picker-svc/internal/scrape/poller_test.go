package scrape

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const okPage = "vllm:num_requests_running 2\nvllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0.5\n"

// fakeVLLM serves /metrics in a mode a test switches at will.
type fakeVLLM struct {
	mode    atomic.Value // string
	release chan struct{}
	hits    atomic.Int64
}

func newFake(t *testing.T) (*fakeVLLM, *httptest.Server) {
	f := &fakeVLLM{release: make(chan struct{})}
	f.mode.Store("ok")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		switch f.mode.Load().(string) {
		case "ok":
			_, _ = w.Write([]byte(okPage))
		case "500":
			http.Error(w, "engine dead", 500)
		case "junk":
			_, _ = w.Write([]byte("vllm:num_requests_running 2\nvllm:num_requests_waiting {{{\n"))
		case "html":
			_, _ = w.Write([]byte("<html>hello</html>\n"))
		case "partial": // promises more than it sends, then closes
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write([]byte(okPage))
		case "hang":
			select {
			case <-r.Context().Done():
			case <-f.release:
			}
		case "huge": // chunked: no Content-Length to refuse early
			chunk := bytes.Repeat([]byte("# padding padding padding padding\n"), 1000)
			for i := 0; i < 100; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		case "huge-cl":
			w.Header().Set("Content-Length", fmt.Sprint(10<<20))
		}
	}))
	t.Cleanup(func() { close(f.release); srv.Close() })
	return f, srv
}

// countingHandler counts log records by level.
type countingHandler struct {
	mu     sync.Mutex
	counts map[slog.Level]int
	msgs   []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = map[slog.Level]int{}
	}
	h.counts[r.Level]++
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[l]
}

func testConfig(now *atomic.Pointer[time.Time], logs *countingHandler) *Config {
	c := Config{Timeout: 200 * time.Millisecond, MaxPageBytes: 64 << 10, MaxFailures: 3, StaleAfter: 2 * time.Second,
		Now: func() time.Time { return *now.Load() }, Logger: slog.New(logs)}
	c = c.withDefaults()
	return &c
}

func TestScrapeFailureModes(t *testing.T) {
	f, srv := newFake(t)
	var now atomic.Pointer[time.Time]
	now.Store(&t0)
	logs := &countingHandler{}
	e := newEndpoint(strings.TrimPrefix(srv.URL, "http://"), testConfig(&now, logs))
	ctx := context.Background()

	require.Equal(t, OK, e.ScrapeOnce(ctx))
	good := e.Snapshot()
	require.Equal(t, 2.0, good.Running)
	_, ok := e.Eligible(t0)
	require.True(t, ok)

	for _, tc := range []struct {
		mode string
		want Reason
	}{
		{"500", ReasonStatus}, {"junk", ReasonParse}, {"html", ReasonPartial}, {"partial", ReasonRead},
		{"hang", ReasonTimeout}, {"huge", ReasonTooBig}, {"huge-cl", ReasonTooBig},
	} {
		f.mode.Store(tc.mode)
		require.Equal(t, tc.want, e.ScrapeOnce(ctx), tc.mode)
		require.Same(t, good, e.Snapshot(), "a failed scrape keeps the last good snapshot (%s)", tc.mode)
		require.NotEmpty(t, e.LastError())
	}
	// 7 failures in a row: ineligible although the snapshot is fresh.
	require.Equal(t, 7, e.Failures())
	_, ok = e.Eligible(t0)
	require.False(t, ok)

	f.mode.Store("ok")
	require.Equal(t, OK, e.ScrapeOnce(ctx))
	require.Equal(t, 0, e.Failures())
	require.Empty(t, e.LastError())
	_, ok = e.Eligible(t0)
	require.True(t, ok)
	// One Info for the first success, one Warn per change of failure reason
	// (7 failures, 6 changes: huge and huge-cl are both too_large), one Info
	// for the recovery.
	require.Equal(t, 6, logs.count(slog.LevelWarn))
	require.Equal(t, 2, logs.count(slog.LevelInfo))
}

func TestStalenessAndFailureThreshold(t *testing.T) {
	f, srv := newFake(t)
	var now atomic.Pointer[time.Time]
	now.Store(&t0)
	e := newEndpoint(strings.TrimPrefix(srv.URL, "http://"), testConfig(&now, &countingHandler{}))
	_, ok := e.Eligible(t0)
	require.False(t, ok, "never scraped")
	require.Equal(t, OK, e.ScrapeOnce(context.Background()))
	_, ok = e.Eligible(t0.Add(2 * time.Second))
	require.True(t, ok, "exactly at the threshold is still fresh")
	_, ok = e.Eligible(t0.Add(2*time.Second + 1))
	require.False(t, ok, "stale")

	f.mode.Store("500")
	for i := 1; i <= 3; i++ {
		e.ScrapeOnce(context.Background())
		_, ok = e.Eligible(t0)
		require.Equal(t, i < 3, ok, "after %d failures", i)
	}
}

func TestNoLogFloodWhileFailing(t *testing.T) {
	f, srv := newFake(t)
	f.mode.Store("500")
	var now atomic.Pointer[time.Time]
	now.Store(&t0)
	logs := &countingHandler{}
	e := newEndpoint(strings.TrimPrefix(srv.URL, "http://"), testConfig(&now, logs))
	for i := 0; i < 100; i++ {
		require.Equal(t, ReasonStatus, e.ScrapeOnce(context.Background()))
	}
	require.Equal(t, 1, logs.count(slog.LevelWarn))
	require.Equal(t, 100, e.Failures())
}

func TestManagerRunsAndStopsPollers(t *testing.T) {
	_, srv := newFake(t)
	hang, hangSrv := newFake(t)
	hang.mode.Store("hang")
	addr := strings.TrimPrefix(srv.URL, "http://")
	hangAddr := strings.TrimPrefix(hangSrv.URL, "http://")

	before := runtime.NumGoroutine()
	m := NewManager(Config{Interval: 5 * time.Millisecond, Timeout: 5 * time.Second, Logger: slog.New(&countingHandler{})})
	a := m.Set("pool-a", []string{addr, hangAddr, addr})
	require.Len(t, a, 2, "duplicates dropped")
	b := m.Set("pool-b", []string{addr})
	require.Same(t, a[0], b[0], "one poller per address across pools")
	require.Len(t, m.All(), 2)

	// The poller loop runs on its own: wait (bounded) for a snapshot and for
	// repeated scrapes.
	require.Eventually(t, func() bool { return a[0].Snapshot() != nil && a[0].scrapes.Load() >= 3 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return hang.hits.Load() >= 1 }, 10*time.Second, time.Millisecond)

	// Dropping pool-a stops the hanging poller at once (its request is
	// cancelled, not left to time out) but keeps addr for pool-b.
	m.Set("pool-a", nil)
	require.Len(t, m.All(), 1)
	m.Set("pool-b", nil)
	require.Empty(t, m.All())
	m.Close()
	require.Nil(t, m.Set("pool-c", []string{addr}), "closed manager starts nothing")

	// Every poller goroutine and its connections are gone.
	waitGoroutines(t, before)
}

func TestManagerNoLeakWithManyEndpoints(t *testing.T) {
	hang, hangSrv := newFake(t)
	hang.mode.Store("hang")
	_ = hang
	before := runtime.NumGoroutine()
	m := NewManager(Config{Interval: time.Millisecond, Timeout: time.Minute, Logger: slog.New(&countingHandler{})})
	// 50 distinct addresses that all hang (same server, different owners'
	// spellings are the same address, so use distinct ports via path-free
	// aliases: 127.0.0.1 and localhost count as different endpoints).
	host := strings.TrimPrefix(hangSrv.URL, "http://127.0.0.1")
	var addrs []string
	for i := 1; i <= 50; i++ {
		addrs = append(addrs, fmt.Sprintf("127.0.0.%d%s", i, host))
	}
	m.Set("p", addrs)
	require.Eventually(t, func() bool { return hang.hits.Load() >= 1 }, 10*time.Second, time.Millisecond)
	m.Set("p", addrs[:10])
	require.Len(t, m.All(), 10)
	m.Close()
	waitGoroutines(t, before)
}

// waitGoroutines waits (bounded) until no more goroutines run than before.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: before %d, now %d\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

type chanObserver chan Reason

func (c chanObserver) ScrapeDone(_ string, _ time.Duration, r Reason) { c <- r }

func TestObserverHearsEveryScrape(t *testing.T) {
	f, srv := newFake(t)
	obs := make(chanObserver, 2)
	cfg := Config{Observer: obs, Logger: slog.New(&countingHandler{})}
	cfg = cfg.withDefaults()
	e := newEndpoint(strings.TrimPrefix(srv.URL, "http://"), &cfg)
	e.ScrapeOnce(context.Background())
	f.mode.Store("junk")
	e.ScrapeOnce(context.Background())
	require.Equal(t, OK, <-obs)
	require.Equal(t, ReasonParse, <-obs)
}

func TestShutdownIsNotAFailure(t *testing.T) {
	f, srv := newFake(t)
	f.mode.Store("hang")
	cfg := Config{Timeout: time.Minute, Logger: slog.New(&countingHandler{})}
	cfg = cfg.withDefaults()
	e := newEndpoint(strings.TrimPrefix(srv.URL, "http://"), &cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Reason)
	go func() { done <- e.ScrapeOnce(ctx) }()
	require.Eventually(t, func() bool { return f.hits.Load() == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	<-done
	require.Equal(t, 0, e.Failures())
}
