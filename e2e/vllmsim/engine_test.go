package vllmsim

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests drive the engine in virtual time (schedule/complete by hand),
// so they are deterministic and take milliseconds of CPU, not simulated
// seconds of wall time.

type vreq struct {
	at        float64
	adapter   int
	prompt    []byte
	maxTokens int
	ignoreEOS bool
}

type vresult struct {
	ttft, e2e float64
	generated int
	reason    string
}

type vrun struct {
	results      []vresult
	makespan     float64
	maxWaiting   int
	maxRunning   int
	maxKV        float64
	maxAdapters  int // most distinct adapters in one running batch
	stats        Stats
	freeAtEnd    int
	sumGenerated int
	sumPrompt    int
}

func testEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	cfg, err := cfg.withDefaults()
	require.NoError(t, err)
	return newEngine(cfg)
}

// runVirtual feeds reqs (sorted by arrival) to e and steps it until every
// request finished, checking scheduler invariants after every step.
func runVirtual(t *testing.T, e *Engine, reqs []vreq) vrun {
	t.Helper()
	seqs := make([]*Seq, len(reqs))
	for i, r := range reqs {
		seqs[i] = e.newSeq(r.adapter, r.prompt, r.maxTokens, 0, r.ignoreEOS)
	}
	var out vrun
	now, next := 0.0, 0
	for steps := 0; ; steps++ {
		require.Less(t, steps, 2_000_000, "engine made no progress")
		for next < len(reqs) && reqs[next].at <= now {
			e.add(seqs[next], reqs[next].at)
			next++
		}
		if !e.hasWork() {
			if next == len(reqs) {
				break
			}
			now = reqs[next].at
			continue
		}
		p := e.schedule(now)
		require.Greater(t, p.dur, 0.0)
		out.maxWaiting = max(out.maxWaiting, len(e.waiting))
		out.maxRunning = max(out.maxRunning, len(e.running))
		out.maxKV = max(out.maxKV, e.kv.usage())
		var ads []int
		for _, s := range e.running {
			if s.adapter >= 0 && !slices.Contains(ads, s.adapter) {
				ads = append(ads, s.adapter)
			}
		}
		out.maxAdapters = max(out.maxAdapters, len(ads))
		require.LessOrEqual(t, len(e.running), e.cfg.MaxNumSeqs)
		tokens := 0
		for _, en := range p.entries {
			tokens += en.n
		}
		require.LessOrEqual(t, tokens, e.cfg.MaxNumBatchedTokens)
		now += p.dur
		e.complete(p, now)
	}
	out.makespan = now
	for _, s := range seqs {
		done, reason := s.Done()
		require.True(t, done)
		out.results = append(out.results, vresult{ttft: s.firstToken - s.arrival, e2e: s.lastToken - s.arrival, generated: s.Generated(), reason: reason})
		out.sumGenerated += s.Generated()
		out.sumPrompt += s.promptTokens
	}
	out.stats = e.Stats()
	out.freeAtEnd = e.kv.free
	return out
}

func meanTTFT(r vrun) float64 {
	sum := 0.0
	for _, x := range r.results {
		sum += x.ttft
	}
	return sum / float64(len(r.results))
}

// text returns n tokens (4n bytes) of prompt unique to tag.
func text(tag string, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n*bytesPerToken {
		fmt.Fprintf(&b, "%s-%06d ", tag, b.Len())
	}
	return b.Bytes()[:n*bytesPerToken]
}

func burst(c, promptTokens, outTokens int) []vreq {
	reqs := make([]vreq, c)
	for i := range reqs {
		reqs[i] = vreq{adapter: -1, prompt: text(fmt.Sprint("r", i), promptTokens), maxTokens: outTokens, ignoreEOS: true}
	}
	return reqs
}

func TestRisingConcurrencyShapes(t *testing.T) {
	levels := []int{1, 4, 16, 64, 128, 256}
	var runs []vrun
	for _, c := range levels {
		e := testEngine(t, Config{MaxNumSeqs: 64})
		r := runVirtual(t, e, burst(c, 512, 256))
		runs = append(runs, r)
		// Usage is exact: every request produced what it asked for and the
		// counters agree with the sum of usages.
		assert.Equal(t, uint64(r.sumGenerated), r.stats.GenerationTokens)
		assert.Equal(t, uint64(r.sumPrompt), r.stats.PromptTokens)
		assert.Equal(t, c*256, r.sumGenerated)
		assert.Equal(t, e.cfg.NumGPUBlocks, r.freeAtEnd, "all blocks free at the end")
	}
	tput := func(r vrun) float64 { return float64(r.sumGenerated) / r.makespan }
	for i := 1; i < len(runs); i++ {
		prev, cur := runs[i-1], runs[i]
		assert.Greater(t, meanTTFT(cur), meanTTFT(prev), "TTFT grows with concurrency (c=%d)", levels[i])
		assert.GreaterOrEqual(t, cur.maxKV, prev.maxKV, "KV usage grows with concurrency (c=%d)", levels[i])
		assert.GreaterOrEqual(t, tput(cur), tput(prev)*0.95, "throughput does not fall (c=%d)", levels[i])
	}
	// Batching pays while the batch grows...
	assert.Greater(t, tput(runs[3]), 8*tput(runs[0]))
	// ...and plateaus once max_num_seqs caps it: requests queue instead.
	assert.Less(t, tput(runs[5]), 1.15*tput(runs[3]))
	assert.Greater(t, runs[5].maxWaiting, 100, "requests beyond max_num_seqs wait")
	assert.Equal(t, 64, runs[5].maxRunning)
	for _, r := range runs {
		assert.Zero(t, r.stats.Preemptions, "ample KV: no preemption")
	}
}

func TestPreemptionWhenBlocksAreShort(t *testing.T) {
	// 64 requests that each grow to 768 tokens need 3072 blocks; give 1024.
	e := testEngine(t, Config{NumGPUBlocks: 1024, MaxModelLen: 4096})
	r := runVirtual(t, e, burst(64, 512, 256))
	assert.Greater(t, r.stats.Preemptions, uint64(0))
	assert.InDelta(t, 1.0, r.maxKV, 0.02, "KV fills up before preemption")
	// Recompute never double counts and every request completes exactly.
	assert.Equal(t, 64*256, r.sumGenerated)
	assert.Equal(t, uint64(r.sumGenerated), r.stats.GenerationTokens)
	assert.Equal(t, uint64(r.sumPrompt), r.stats.PromptTokens)
	assert.Equal(t, 1024, r.freeAtEnd)

	ample := runVirtual(t, testEngine(t, Config{}), burst(64, 512, 256))
	assert.Zero(t, ample.stats.Preemptions)
	assert.Greater(t, r.makespan, ample.makespan, "preemption costs time (recompute)")
}

// prefixWorkload: requests sharing a long system prompt, arriving every
// 0.3 s, each with its own question.
func prefixWorkload(n int) []vreq {
	system := text("system", 2000)
	reqs := make([]vreq, n)
	for i := range reqs {
		p := append(slices.Clone(system), text(fmt.Sprint("q", i), 100)...)
		reqs[i] = vreq{at: 0.3 * float64(i), adapter: -1, prompt: p, maxTokens: 64, ignoreEOS: true}
	}
	return reqs
}

func TestPrefixCachingHitsAndLowersTTFT(t *testing.T) {
	on := runVirtual(t, testEngine(t, Config{}), prefixWorkload(40))
	off := runVirtual(t, testEngine(t, Config{DisablePrefixCaching: true}), prefixWorkload(40))

	assert.Greater(t, on.stats.PrefixHits, uint64(0))
	assert.Zero(t, off.stats.PrefixHits)
	// 39 of 40 requests reuse the 2000-token prefix (125 blocks).
	assert.GreaterOrEqual(t, on.stats.PrefixHits, uint64(39*2000))
	assert.LessOrEqual(t, on.stats.PrefixHits, on.stats.PrefixQueries)
	assert.Less(t, meanTTFT(on), meanTTFT(off)/2, "hits skip prefill")
	// Prompt tokens count whole prompts either way (what usage reports).
	assert.Equal(t, off.stats.PromptTokens, on.stats.PromptTokens)
	assert.Equal(t, uint64(on.sumPrompt), on.stats.PromptTokens)
}

func TestPrefixCacheIsPerAdapter(t *testing.T) {
	e := testEngine(t, Config{LoRAModules: []LoRAModule{{"a", "/a"}, {"b", "/b"}}, MaxLoRAs: 2})
	p := text("shared", 640)
	r := runVirtual(t, e, []vreq{
		{at: 0, adapter: 0, prompt: p, maxTokens: 4, ignoreEOS: true},
		{at: 10, adapter: 1, prompt: p, maxTokens: 4, ignoreEOS: true},
		{at: 20, adapter: 0, prompt: p, maxTokens: 4, ignoreEOS: true},
	})
	// Only the third request (same adapter as the first) hits: 39 full
	// blocks (the last token is always recomputed).
	assert.Equal(t, uint64(39*16), r.stats.PrefixHits)
}

func TestLoRASlotsAndLoadTime(t *testing.T) {
	cfg := Config{LoRAModules: []LoRAModule{{"a", "/a"}, {"b", "/b"}, {"c", "/c"}}, MaxLoRAs: 1, LoRALoadTime: 0.5}
	var reqs []vreq
	for i := 0; i < 30; i++ {
		reqs = append(reqs, vreq{at: 0.01 * float64(i), adapter: i % 3, prompt: text(fmt.Sprint("l", i), 200), maxTokens: 50, ignoreEOS: true})
	}
	narrow := testEngine(t, cfg)
	r := runVirtual(t, narrow, reqs)
	assert.Equal(t, 1, r.maxAdapters, "never more adapters in a batch than max_loras")
	// lora_requests_info saw one adapter running while others waited.
	sawWaiting := false
	for k := range narrow.loraInfo {
		running, waiting, _ := strings.Cut(k, "\x00")
		assert.NotContains(t, running, ",", "one running adapter at a time")
		sawWaiting = sawWaiting || (running != "" && waiting != "" && !strings.Contains(waiting, running))
	}
	assert.True(t, sawWaiting, "%q", narrow.loraInfo)
	assert.GreaterOrEqual(t, r.stats.LoRALoads, uint64(3))
	assert.Greater(t, r.maxWaiting, 0, "requests for another adapter wait for the slot")

	// With enough slots everything batches together and finishes sooner.
	cfg.MaxLoRAs = 3
	wide := runVirtual(t, testEngine(t, cfg), reqs)
	assert.Equal(t, 3, wide.maxAdapters)
	assert.Equal(t, uint64(3), wide.stats.LoRALoads)
	assert.Less(t, wide.makespan, r.makespan)

	// A resident adapter costs no load time: the same workload on one
	// adapter loads once.
	for i := range reqs {
		reqs[i].adapter = 0
	}
	one := runVirtual(t, testEngine(t, cfg), reqs)
	assert.Equal(t, uint64(1), one.stats.LoRALoads)
}

func TestOutputLengths(t *testing.T) {
	e := testEngine(t, Config{OutputLen: OutputLen{Kind: "fixed", A: 10}})
	r := runVirtual(t, e, []vreq{
		{adapter: -1, prompt: []byte("hi"), maxTokens: 100},
		{adapter: -1, prompt: []byte("hi"), maxTokens: 5},
		{adapter: -1, prompt: []byte("hi"), maxTokens: 100, ignoreEOS: true},
	})
	assert.Equal(t, vresult{ttft: r.results[0].ttft, e2e: r.results[0].e2e, generated: 10, reason: FinishStop}, r.results[0])
	assert.Equal(t, 5, r.results[1].generated)
	assert.Equal(t, FinishLength, r.results[1].reason)
	assert.Equal(t, 100, r.results[2].generated)
	assert.Equal(t, FinishLength, r.results[2].reason)
	st := e.Stats()
	assert.Equal(t, uint64(1), st.Finished[FinishStop])
	assert.Equal(t, uint64(2), st.Finished[FinishLength])
}

func TestChunkedPrefillLongPrompt(t *testing.T) {
	// A 5000-token prompt needs three steps at a 2048 budget; a short request
	// that arrives meanwhile still gets decode steps interleaved.
	e := testEngine(t, Config{})
	r := runVirtual(t, e, []vreq{
		{at: 0, adapter: -1, prompt: text("short", 10), maxTokens: 200, ignoreEOS: true},
		{at: 0.05, adapter: -1, prompt: text("long", 5000), maxTokens: 2, ignoreEOS: true},
	})
	m := e.cfg.Step
	minPrefill := 3 * m.Duration(2048, 0, 0) * 0.8
	assert.Greater(t, r.results[1].ttft, minPrefill)
	assert.Equal(t, 200, r.results[0].generated)
}

func TestStepModel(t *testing.T) {
	m := DefaultStepModel()
	assert.InDelta(t, 0.04, m.Duration(1, 0, 0), 1e-9, "prefill floor")
	assert.InDelta(t, 0.01969+6.769e-5*2048, m.Duration(2048, 0, 0), 1e-9)
	assert.InDelta(t, 0.014+5.35e-7*1000+1.026e-4*10, m.Duration(0, 10, 1000), 1e-9)
	assert.Greater(t, m.Duration(0, 100, 100000), m.Duration(0, 10, 10000))
}

// jumpClock makes every Now() a second later and never sleeps: an engine loop
// that cannot keep up with its clock.
type jumpClock struct {
	mu sync.Mutex
	t  float64
}

func (c *jumpClock) Now() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t++
	return c.t
}

func (c *jumpClock) SleepUntil(ctx context.Context, t float64) error { return ctx.Err() }

// virtualClock jumps to whatever time the engine sleeps until: a loop that
// always keeps up.
type virtualClock struct {
	mu sync.Mutex
	t  float64
}

func (c *virtualClock) Now() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *virtualClock) SleepUntil(ctx context.Context, t float64) error {
	c.mu.Lock()
	c.t = max(c.t, t)
	c.mu.Unlock()
	return ctx.Err()
}

// runLoop runs e.Run with one request of n tokens to completion.
func runLoop(t *testing.T, e *Engine, n int) Stats {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	go e.Run(ctx)
	s := e.newSeq(-1, []byte("hello"), n, 0, true)
	e.Submit(s)
	for {
		<-s.notify
		if done, _ := s.Done(); done {
			break
		}
	}
	cancel()
	<-e.closed // the loop exits on cancel
	return e.Stats()
}

func TestEngineReportsFallingBehind(t *testing.T) {
	st := runLoop(t, testEngine(t, Config{Clock: &jumpClock{}}), 20)
	assert.Greater(t, st.BehindSteps, uint64(0))
	assert.Greater(t, st.BehindSeconds, 0.0)
	assert.GreaterOrEqual(t, st.MaxLag, 0.9)
	assert.Equal(t, uint64(20), st.GenerationTokens)
}

func TestEngineLoopKeepsVirtualTime(t *testing.T) {
	e := testEngine(t, Config{Clock: &virtualClock{}})
	st := runLoop(t, e, 50)
	assert.Zero(t, st.BehindSteps)
	assert.Zero(t, st.MaxLag)
	assert.Equal(t, uint64(50), st.GenerationTokens)
	// 1 prefill step (floor 0.04 s) and 49 decode steps of one sequence.
	m := e.cfg.Step
	want := m.Duration(2, 0, 0)
	for k := 1; k < 50; k++ {
		want += m.Duration(0, 1, 2+k-1)
	}
	assert.InDelta(t, want, st.SimTime, 1e-9)
}
