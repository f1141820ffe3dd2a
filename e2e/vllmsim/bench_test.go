package vllmsim

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	shapeWindow = flag.Duration("shape-window", 0, "BenchmarkSeedShape: real time per speed factor (0: 160 simulated seconds, which covers the first wave of requests finishing and the next starting)")
	shapeSpeeds = flag.String("shape-speeds", "10,20,40", "BenchmarkSeedShape: speed factors to try")
	shapeScrape = flag.Duration("shape-scrape", 50*time.Millisecond, "BenchmarkSeedShape: scrape every server's /metrics this often, as the picker does (0: off)")
)

// loadClient is a cheap SSE client: it counts token chunks without decoding
// JSON, and reads the usage chunk's completion_tokens to cross-check.
type loadClient struct{ hc *http.Client }

func newLoadClient() *loadClient {
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, DisableCompression: true}
	return &loadClient{hc: &http.Client{Transport: tr}}
}

var usageKey = []byte(`"completion_tokens":`)

// stream sends one streaming request and returns the token chunks received
// and the completion_tokens of the usage chunk.
func (c *loadClient) stream(ctx context.Context, url string, body []byte) (chunks, usage int, err error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return 0, 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				return chunks, usage, fmt.Errorf("stream ended without [DONE]")
			}
			return chunks, usage, err
		}
		if !bytes.HasPrefix(line, []byte("data: ")) {
			continue
		}
		if bytes.HasPrefix(line, []byte("data: [DONE]")) {
			return chunks, usage, nil
		}
		if i := bytes.Index(line, usageKey); i >= 0 && bytes.Contains(line, []byte(`"choices":[]`)) {
			rest := line[i+len(usageKey):]
			j := bytes.IndexAny(rest, ",}")
			usage, _ = strconv.Atoi(string(rest[:j]))
			continue
		}
		chunks++
	}
}

func quietFleet(b *testing.B, cfgs []Config) *Fleet {
	b.Helper()
	for i := range cfgs {
		cfgs[i].Logger = slog.New(slog.DiscardHandler)
	}
	f, err := StartFleet(context.Background(), cfgs)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkStreaming measures how many streamed tokens per second one
// process serves and consumes (server, engine and this SSE client, over
// 127.0.0.1). Each op is one 500-token stream; 128 run at once over two
// servers. The speed factor is so high that the engine loops run flat out:
// this measures the plumbing, not the model.
func BenchmarkStreaming(b *testing.B) {
	f := quietFleet(b, []Config{{Speed: 1e4}, {Speed: 1e4}})
	defer f.Close()
	c := newLoadClient()
	body := []byte(`{"prompt":"` + strings.Repeat("word ", 80) + `","max_tokens":500,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`)
	urls := f.URLs()
	var next atomic.Int64
	var tokens atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	for w := 0; w < 128; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				n, u, err := c.stream(context.Background(), urls[w%len(urls)]+"/v1/completions", body)
				if err != nil || n != 500 || u != 500 {
					b.Errorf("stream: %d chunks, usage %d, err %v", n, u, err)
					return
				}
				tokens.Add(int64(n))
			}
		}(w)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(tokens.Load())/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(tokens.Load()), "cpu_us/token")
}

// BenchmarkSeedShape runs the seeds' benchmark shape (5 servers, 200
// concurrent streams in all, prompts of 1550 and outputs of 1800 tokens,
// each +-20%, streamed with include_usage and ignore_eos, round robin) for
// -shape-window of real time at each -shape-speeds factor, and reports
// whether the engine loops kept simulated time (behind_steps = 0).
func BenchmarkSeedShape(b *testing.B) {
	for _, sp := range strings.Split(*shapeSpeeds, ",") {
		speed, err := strconv.ParseFloat(sp, 64)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("speed="+sp, func(b *testing.B) {
			window := *shapeWindow
			if window == 0 {
				window = time.Duration(160 / speed * float64(time.Second))
			}
			for i := 0; i < b.N; i++ {
				runSeedShape(b, speed, window)
			}
		})
	}
}

func runSeedShape(b *testing.B, speed float64, window time.Duration) {
	cfgs := make([]Config, 5)
	for i := range cfgs {
		cfgs[i] = Config{Speed: speed, Seed: uint64(i + 1)}
	}
	f := quietFleet(b, cfgs)
	defer f.Close()
	c := newLoadClient()
	urls := f.URLs()
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	// A shared random "prefix" of 10 tokens, as the seeds' --random-prefix-len.
	prefix := strings.Repeat("pfx.", 10)
	var tokens, requests atomic.Int64
	var wg sync.WaitGroup
	if *shapeScrape > 0 {
		for _, u := range urls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(*shapeScrape)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					req, _ := http.NewRequestWithContext(ctx, "GET", u+"/metrics", nil)
					if resp, err := c.hc.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}()
		}
	}
	for w := 0; w < 200; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for k := 0; ctx.Err() == nil; k++ {
				in := 1240 + rng.IntN(621)  // U[1240, 1860]
				out := 1440 + rng.IntN(721) // U[1440, 2160]
				// Unique from the first block on (the id sits in block 0), like
				// the random-token prompts of the seeds' dataset.
				p := prefix + fmt.Sprintf("%08x%08x", w, k) + strings.Repeat("abcd", in-10-4)
				body := fmt.Appendf(nil, `{"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"%s","max_tokens":%d,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`, p, out)
				n, u, err := c.stream(ctx, urls[(w+k)%len(urls)]+"/v1/completions", body)
				tokens.Add(int64(n))
				if err != nil {
					if ctx.Err() == nil {
						b.Error(err)
					}
					return
				}
				if n != out || u != out {
					b.Errorf("got %d chunks, usage %d, want %d", n, u, out)
				}
				requests.Add(1)
			}
		}(w)
	}
	start, cpu0 := time.Now(), cpuTime()
	wg.Wait()
	cpu := cpuTime() - cpu0
	elapsed := time.Since(start).Seconds()
	var behind, steps, pre uint64
	var maxLag, sim, lost float64
	for i, st := range f.Stats() {
		if st.BehindSteps > 0 {
			b.Logf("server %d: %d behind steps, first at %.1f s, last at %.1f s (sim), max lag %.3f s", i, st.BehindSteps, st.FirstBehindAt, st.LastBehindAt, st.MaxLag)
		}
		behind += st.BehindSteps
		lost += st.BehindSeconds / st.SimTime / float64(len(cfgs))
		steps += st.Steps
		pre += st.Preemptions
		maxLag = max(maxLag, st.MaxLag)
		sim = max(sim, st.SimTime)
	}
	b.ReportMetric(float64(behind), "behind_steps")
	b.ReportMetric(maxLag, "max_lag_sim_s")
	b.ReportMetric(100*lost, "stretch_%")
	b.ReportMetric(float64(tokens.Load())/elapsed, "tokens/s")
	b.ReportMetric(float64(steps), "steps")
	b.ReportMetric(float64(requests.Load()), "completed")
	b.ReportMetric(float64(pre), "preemptions")
	b.ReportMetric(sim, "sim_s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(tokens.Load()), "cpu_us/token")
	b.ReportMetric(cpu.Seconds()/elapsed, "cpu_cores")
}

// BenchmarkMetrics: the cost of one /metrics render (a picker scrapes every
// server every 50 ms).
func BenchmarkMetrics(b *testing.B) {
	cfg, _ := Config{LoRAModules: []LoRAModule{{"a", "/a"}}}.withDefaults()
	e := newEngine(cfg)
	b.ReportAllocs()
	for b.Loop() {
		_ = e.writeMetrics()
	}
}
