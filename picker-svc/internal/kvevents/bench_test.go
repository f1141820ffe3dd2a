package kvevents

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"
)

// Cost figures of the KV-event source:
//
//	go test ./picker-svc/internal/kvevents -run '^$' -bench . -benchtime 2s -count 6 -cpu 1

// ingestBatches are a steady stream from one engine: each batch stores 32
// new blocks (a 512-token prefill) and evicts the 32 stored 64 batches
// earlier, so the pod holds about 2,048 blocks, as vLLM sends them.
func ingestBatches(enc string, n int) [][]byte {
	const per, lag = 32, 64
	out := make([][]byte, n)
	for i := range out {
		evs := []tev{stored(uint64(i*per), nil, seqTokens(i*per*16, per*16), 16)}
		old := (i - lag + n) % n
		hs := make([]uint64, per)
		for j := range hs {
			hs[j] = uint64(old*per + j)
		}
		evs = append(evs, tev{kind: BlockRemoved, hashes: hs, medium: "GPU"})
		out[i] = payload(enc, evs...)
	}
	return out
}

// BenchmarkIngest: decode and apply, reported as blocks stored per second.
func BenchmarkIngest(b *testing.B) {
	for _, enc := range []string{encMap, encArray} {
		b.Run(enc, func(b *testing.B) {
			batches := ingestBatches(enc, 1024)
			ix := New(Config{})
			if err := ix.Restarted("pod"); err != nil {
				b.Fatal(err)
			}
			dec := NewDecoder()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				bt, err := dec.Decode(batches[i%len(batches)])
				if err != nil {
					b.Fatal(err)
				}
				if err := ix.Apply("pod", bt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*32)/b.Elapsed().Seconds(), "blocks/s")
		})
	}
}

// BenchmarkIndexMemory: heap per block held, 1M blocks over 100 pods,
// unshared (every block on one pod: the most per block) and each block on 4 pods.
func BenchmarkIndexMemory(b *testing.B) {
	for _, share := range []int{1, 4} {
		b.Run(fmt.Sprintf("pods-per-block=%d", share), func(b *testing.B) {
			for b.Loop() {
				perBlock := indexMemory(b, 100, 1_000_000, share)
				b.ReportMetric(perBlock, "bytes/block")
			}
		})
	}
}

func indexMemory(b *testing.B, pods, blocks, share int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix := New(Config{MaxBlocks: 2 * blocks, MaxBlocksPerPod: blocks})
	const per = 64
	distinct := blocks / share
	ev := Event{Kind: BlockStored, BlockSize: 16, Hashes: make([]uint64, per), Tokens: make([]uint32, per*16)}
	batch := &Batch{Events: []Event{ev}}
	for p := range pods {
		_ = ix.Restarted(fmt.Sprint("pod-", p))
	}
	for c := 0; c*per < distinct; c++ {
		for s := range share {
			pod := fmt.Sprint("pod-", (c*share+s)%pods)
			for j := range per {
				batch.Events[0].Hashes[j] = uint64((c*per + j) + s<<40)
			}
			for j := range batch.Events[0].Tokens {
				batch.Events[0].Tokens[j] = uint32(c*per*16 + j)
			}
			_ = ix.Apply(pod, batch)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := ix.Stats().Blocks
	runtime.KeepAlive(ix)
	if want := (distinct + per - 1) / per * per * share; held != want {
		b.Fatalf("held %d blocks", held)
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(held)
}

// BenchmarkScore: a 10,000-token prompt (625 blocks) over 100 pods that
// each hold other blocks too (20,000 per pod). "spread": pod i holds the
// prompt's first 6i blocks; "all": every pod holds all 625 (the longest
// walk). Tokenization is not included.
func BenchmarkScore(b *testing.B) {
	for _, shape := range []string{"spread", "all"} {
		b.Run(shape, func(b *testing.B) {
			const npods, bs = 100, 16
			req := seqTokens(1<<30, 10_000)
			ix := New(Config{})
			pods := make([]string, npods)
			for i := range pods {
				pods[i] = fmt.Sprint("10.0.0.", i, ":8000")
				_ = ix.Restarted(pods[i])
				for c := range 20_000 / 500 {
					_ = ix.Apply(pods[i], &Batch{Events: []Event{{Kind: BlockStored, BlockSize: bs,
						Hashes: seqHashes(uint64(i)<<32|uint64(c*500), 500), Tokens: seqTokens(i*1_000_000+c*8000, 500*bs)}}})
				}
				n := 625
				if shape == "spread" {
					n = min(6*i, 625)
				}
				if n > 0 {
					_ = ix.Apply(pods[i], &Batch{Events: []Event{{Kind: BlockStored, BlockSize: bs,
						Hashes: seqHashes(uint64(i)<<32|1<<31, n), Tokens: req[:n*bs]}}})
				}
			}
			out := ix.Score(req, "", pods, nil)
			if shape == "all" && out[0].Blocks != 625 || shape == "spread" && out[10].Blocks != 60 {
				b.Fatalf("scores %v", out[:11])
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var wall, cpu []time.Duration
			b.ResetTimer()
			for b.Loop() {
				t0, c0 := time.Now(), threadCPU()
				out = ix.Score(req, "", pods, out)
				cpu = append(cpu, threadCPU()-c0)
				wall = append(wall, time.Since(t0))
			}
			pct := func(d []time.Duration, q int) float64 {
				slices.Sort(d)
				return float64(d[(len(d)-1)*q/100].Nanoseconds()) / 1e3
			}
			// Wall time includes waiting for a core on a loaded machine;
			// thread CPU time is the call's own cost.
			b.ReportMetric(pct(wall, 50), "p50-µs")
			b.ReportMetric(pct(wall, 99), "p99-µs")
			b.ReportMetric(pct(cpu, 50), "cpu-p50-µs")
			b.ReportMetric(pct(cpu, 99), "cpu-p99-µs")
		})
	}
}

func seqHashes(start uint64, n int) []uint64 {
	h := make([]uint64, n)
	for i := range h {
		h[i] = start + uint64(i)
	}
	return h
}
