package server

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/decision"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/resolve"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// BenchmarkPickHTTP: picks over HTTP on loopback from a Go load client with
// 4, 8 or 32 concurrent keep-alive connections (closed loop), 100 endpoints, PREFIX_CACHE with 16
// prefix hashes per request. Reports picks/s and client-side p99.
func BenchmarkPickHTTP(b *testing.B) {
	for _, clients := range []int{4, 8, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchPickHTTP(b, clients) })
	}
}

func benchPickHTTP(b *testing.B, clients int) {
	log := slog.New(slog.DiscardHandler)
	mgr := scrape.NewManager(scrape.Config{Interval: time.Hour, Timeout: 10 * time.Millisecond, Logger: log})
	defer mgr.Close()
	store := datastore.New(mgr, log, nil)
	store.ReplaceObjects(inference.Objects{Pools: []inference.Pool{{Name: "p", TargetPort: 1, Strategy: pickapi.StrategyPrefixCache}}})
	var addrs []string
	for i := 1; i <= 100; i++ {
		addrs = append(addrs, fmt.Sprintf("127.0.0.%d:1", i))
	}
	store.SetEndpoints("p", addrs)
	for i, m := range store.View().Pools["p"].Endpoints {
		m.Store(&scrape.Snapshot{Waiting: float64(i % 5), Running: float64(i % 17), KVCacheUsage: float64(i%10) / 20, ScrapedAt: time.Now().Add(time.Hour)})
	}
	m := NewMetrics()
	srv := New(store, decision.New(store, resolve.New(nil), mustScheduler(), decision.NewMetrics(m.Registry), log), m)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var bodies [][]byte
	for i := 0; i < 64; i++ {
		req := pickapi.PickRequest{Model: "m", PrefixHashes: make([]uint64, 16)}
		for j := range req.PrefixHashes {
			req.PrefixHashes[j] = uint64(i%8*1000 + j)
		}
		bodies = append(bodies, req.AppendJSON(nil))
	}
	url := hs.URL + pickapi.Path
	var mu sync.Mutex
	var all []time.Duration
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := (b.N + clients - 1) / clients
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			lat := make([]time.Duration, 0, per)
			for i := 0; i < per; i++ {
				t := time.Now()
				resp, err := hc.Post(url, "application/json", bytes.NewReader(bodies[(c+i)%len(bodies)]))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/el.Seconds(), "picks/s")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-us")
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-us")
	}
}

// BenchmarkMemory1000Endpoints: the picker's heap and stacks with 1,000 live
// endpoints (real pollers scraping the realistic 33 KiB page over loopback,
// one keep-alive connection each) and every prefix index full. The scrape
// interval is 1 s here to keep the shared CI machine usable; memory does not
// depend on it. Reports MiB after a GC.
func BenchmarkMemory1000Endpoints(b *testing.B) {
	page, err := os.ReadFile("../scrape/testdata/vllm-v1.txt")
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "0.0.0.0:0") // answers on every 127.x address
	if err != nil {
		b.Fatal(err)
	}
	fake := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(page) })}}
	fake.Start()
	defer fake.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)

		log := slog.New(slog.DiscardHandler)
		mgr := scrape.NewManager(scrape.Config{Interval: time.Second, Logger: log})
		store := datastore.New(mgr, log, nil)
		store.ReplaceObjects(inference.Objects{Pools: []inference.Pool{{Name: "p", TargetPort: int32(port), Strategy: pickapi.StrategyPrefixCache}}})
		var addrs []string
		for j := 0; j < 1000; j++ {
			addrs = append(addrs, fmt.Sprintf("127.0.%d.%d:%d", j/250, j%250+1, port))
		}
		store.SetEndpoints("p", addrs)
		ms := store.View().Pools["p"].Endpoints
		sched := mustScheduler()
		prefix := sched.Plugin("prefix").(*scheduling.PrefixScorer)
		fill := make([]uint64, scheduling.DefaultPrefixCapacity)
		for j, ep := range ms {
			for k := range fill {
				fill[k] = uint64(j)<<32 | uint64(k)
			}
			prefix.PostPick(&scheduling.Request{PrefixHashes: fill}, &scheduling.Candidate{EP: ep}, time.Now())
		}
		deadline := time.Now().Add(time.Minute)
		for {
			n := 0
			for _, m := range ms {
				if m.Snapshot() != nil {
					n++
				}
			}
			if n == len(ms) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d endpoints scraped", n, len(ms))
			}
			time.Sleep(10 * time.Millisecond) // waiting on 1,000 background pollers, bounded by the deadline
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		used := (after.HeapInuse + after.StackInuse) - (before.HeapInuse + before.StackInuse)
		b.ReportMetric(float64(used)/(1<<20), "MiB")
		b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
		runtime.KeepAlive(store) // measured while alive: the GC must not free it before ReadMemStats
		runtime.KeepAlive(ms)
		runtime.KeepAlive(sched)
		mgr.Close()
	}
}
