package scheduling

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// benchPool builds n endpoints with varied load; with warm, every
// endpoint's prefix index in s is filled to capacity and a quarter of them
// hold a prefix of the benchmark request.
func benchPool(s *Scheduler, n int, warm bool, req []uint64) []*scrape.Endpoint {
	r := rand.New(rand.NewPCG(1, 2))
	eps := make([]*scrape.Endpoint, n)
	now := time.Now().Add(time.Hour)
	for i := range eps {
		ep := scrape.NewEndpoint(fmt.Sprintf("10.%d.%d.%d:8000", i/65536, i/256%256, i%256), scrape.Config{})
		ep.Store(&scrape.Snapshot{Waiting: float64(r.IntN(5)), Running: float64(r.IntN(64)), KVCacheUsage: r.Float64() * 0.8,
			BaseModel: "base", MaxLoRA: 4, RunningAdapters: []string{"a", "b"}, ScrapedAt: now, RequestedAt: now,
			NumGPUBlocks: 8000, BlockSize: 16})
		eps[i] = ep
		if warm {
			fill := make([]uint64, DefaultPrefixCapacity)
			for j := range fill {
				fill[j] = r.Uint64()
			}
			prefixOf(s).PostPick(&Request{PrefixHashes: fill}, &Candidate{EP: ep}, now)
			if i%4 == 0 {
				prefixOf(s).PostPick(&Request{PrefixHashes: req[:1+r.IntN(len(req))]}, &Candidate{EP: ep}, now)
			}
		}
	}
	return eps
}

// BenchmarkPick measures one in-process pick decision and reports its p99.
func BenchmarkPick(b *testing.B) {
	req := make([]uint64, 64) // a 4 KiB prompt's blocks
	for i := range req {
		req[i] = uint64(i)*0x9e3779b97f4a7c15 + 1
	}
	for _, v := range []struct {
		st        pickapi.Strategy
		explained bool // every pick explained (and kept for /debug/picks)
		staggered bool // LATENCY saturated and staggering: its costliest placement
	}{{pickapi.StrategyDefault, false, false}, {pickapi.StrategyDefault, true, false}, {pickapi.StrategyPrefixCache, false, false},
		{pickapi.StrategyLatency, false, false}, {pickapi.StrategyLatency, false, true}} {
		st := v.st
		for _, n := range []int{100, 1000} {
			name := fmt.Sprintf("%s/%d", st, n)
			switch {
			case v.explained:
				name = fmt.Sprintf("%s-explained/%d", st, n)
			case v.staggered:
				name = fmt.Sprintf("%s-staggered/%d", st, n)
			}
			b.Run(name, func(b *testing.B) {
				cfg := DefaultConfig()
				if v.explained {
					cfg.DebugPicksEvery = 1
				}
				if v.staggered {
					cfg.Plugins = map[string]json.RawMessage{"predicted_ttft": json.RawMessage(`{"saturatedDemand":0.1,"staggerBelowUse":1}`)}
				}
				s := mustNew(cfg)
				ms := benchPool(s, n, st != pickapi.StrategyDefault, req)
				r := &Request{TargetModel: "a", Criticality: pickapi.Standard, PromptTokens: 1000, MaxTokens: 1800}
				if st != pickapi.StrategyDefault {
					r.PrefixHashes = req
				}
				now := time.Now()
				if st == pickapi.StrategyLatency {
					// Every pod follows as many open requests as it runs
					// (40 picks a pod, the excess let go by its scrape).
					for i := 0; i < 40*n; i++ {
						if _, err := s.Pick(ms, st, r, now); err != nil {
							b.Fatal(err)
						}
					}
				}
				lat := make([]time.Duration, 0, 1<<16)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					if _, err := s.Pick(ms, st, r, now); err != nil {
						b.Fatal(err)
					}
					if len(lat) < cap(lat) {
						lat = append(lat, time.Since(start))
					}
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			})
		}
	}
}
