package vllmsim

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type seqState uint8

const (
	stateWaiting seqState = iota
	stateRunning
	stateFinished
)

// Finish reasons, as vLLM names them.
const (
	FinishStop   = "stop"
	FinishLength = "length"
	FinishAbort  = "abort"
)

// Seq is one request inside the engine (one choice of one prompt).
type Seq struct {
	adapter      int // index into Config.LoRAModules, -1 for the base model
	promptTokens int
	maxTokens    int
	target       int      // output length at which it finishes
	byLength     bool     // target is max_tokens (or max_model_len), not a natural stop
	tokens       []uint32 // prompt token ids (see tokenizer.go)
	hashes       []uint64
	seed         uint64

	// Engine-owned, guarded by Engine.mu.
	state          seqState
	numComputed    int // tokens whose KV is computed
	generated      int
	blocks         []int32
	cachedBlocks   int // leading blocks already registered in the prefix cache
	arrival        float64
	firstScheduled float64
	lastScheduled  float64
	firstToken     float64
	lastToken      float64
	scheduled      bool

	// Published to the HTTP handler: outGen is stored before outDone, and
	// finishReason before outDone, so a reader that sees outDone sees both.
	outGen       atomic.Int64
	outDone      atomic.Bool
	finishReason string
	notify       chan struct{}
}

// numTokens is prompt plus generated tokens: what a recompute must prefill.
func (s *Seq) numTokens() int { return s.promptTokens + s.generated }

// Generated is how many output tokens the engine has produced so far.
func (s *Seq) Generated() int { return int(s.outGen.Load()) }

// Done reports whether the sequence finished, and why.
func (s *Seq) Done() (bool, string) {
	if s.outDone.Load() {
		return true, s.finishReason
	}
	return false, ""
}

type schedEntry struct {
	s *Seq
	n int
}

type stepPlan struct {
	entries []schedEntry
	dur     float64
	notify  []*Seq
}

// Engine is one simulated vLLM engine: continuous batching over a paged KV
// cache, driven step by step, either by its own loop against a Clock (Run) or
// directly by tests in virtual time (schedule/complete).
type Engine struct {
	cfg   Config
	clock Clock

	mu       sync.Mutex
	waiting  []*Seq
	running  []*Seq
	kv       *kvCache
	resident []int // resident adapters, least recently used first
	rng      *rand.Rand
	m        engineMetrics
	plan     stepPlan
	loraInfo map[string]float64 // lora_requests_info label sets -> Unix time
	lastSize int                // size of the last /metrics page, to size the next

	// Loop health: how often the loop trailed the clock by more than
	// BehindTolerance (and was rebased onto it), guarded by mu.
	steps       uint64
	behindSteps uint64
	behindSecs  float64
	maxLag      float64
	behindFirst float64
	behindLast  float64
	lastLog     time.Time

	// restarts counts Restart calls (Stats.Restarts).
	restarts uint64

	// kvOut receives the KV events of each step (nil: events are off).
	kvOut func(kvBatch)

	// changed is broadcast after every step and abort, for waiters on
	// engine state (WaitIdle, tests).
	changed *sync.Cond

	wake   chan struct{}
	closed chan struct{}
}

func newEngine(cfg Config) *Engine {
	clock := cfg.Clock
	if clock == nil {
		clock = NewClock(cfg.Speed)
	}
	e := &Engine{
		cfg:      cfg,
		clock:    clock,
		kv:       newKVCache(cfg.NumGPUBlocks, cfg.BlockSize, !cfg.DisablePrefixCaching),
		rng:      rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		loraInfo: map[string]float64{},
		wake:     make(chan struct{}, 1),
		closed:   make(chan struct{}),
	}
	e.changed = sync.NewCond(&e.mu)
	e.m.init(cfg)
	return e
}

// WaitIdle blocks until the engine has no running or waiting request, or
// the engine stopped. It is how tests wait for aborts to land without
// sleeping.
func (e *Engine) WaitIdle() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.hasWork() {
		select {
		case <-e.closed:
			return
		default:
		}
		e.changed.Wait()
	}
}

// newSeq builds a sequence for a prompt. maxTokens must already be
// validated; adapter is -1 for the base model.
func (e *Engine) newSeq(adapter int, prompt []byte, maxTokens, minTokens int, ignoreEOS bool) *Seq {
	name := e.cfg.Model
	if adapter >= 0 {
		name = e.cfg.LoRAModules[adapter].Name
	}
	ids := tokenize(prompt)
	s := &Seq{
		adapter:      adapter,
		tokens:       ids,
		promptTokens: max(len(ids), 1),
		maxTokens:    maxTokens,
		notify:       make(chan struct{}, 1),
	}
	if !e.cfg.DisablePrefixCaching {
		s.hashes = blockHashes(name, ids, e.cfg.BlockSize)
	}
	e.mu.Lock()
	s.seed = e.rng.Uint64()
	natural := e.cfg.OutputLen.sample(e.rng)
	e.mu.Unlock()
	s.target, s.byLength = maxTokens, true
	if !ignoreEOS {
		if n := max(natural, minTokens, 1); n < maxTokens {
			s.target, s.byLength = n, false
		}
	}
	return s
}

// Now is the engine's simulated time.
func (e *Engine) Now() float64 { return e.clock.Now() }

// add queues s, arrived at simulated time now.
func (e *Engine) add(s *Seq, now float64) {
	e.mu.Lock()
	s.arrival = now
	s.state = stateWaiting
	e.waiting = append(e.waiting, s)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Submit queues s now.
func (e *Engine) Submit(s *Seq) { e.add(s, e.clock.Now()) }

// Abort removes s (its client went away), as vLLM aborts a request.
func (e *Engine) Abort(s *Seq) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch s.state {
	case stateWaiting:
		e.waiting = slices.DeleteFunc(e.waiting, func(x *Seq) bool { return x == s })
	case stateRunning:
		e.running = slices.DeleteFunc(e.running, func(x *Seq) bool { return x == s })
		e.kv.release(s)
	default:
		return
	}
	s.state = stateFinished
	e.m.success[FinishAbort]++
	s.finishReason = FinishAbort
	s.outDone.Store(true)
	e.changed.Broadcast()
}

func (e *Engine) hasWork() bool { return len(e.running)+len(e.waiting) > 0 }

func (e *Engine) preempt(v *Seq) {
	e.kv.release(v)
	v.numComputed, v.cachedBlocks = 0, 0
	v.state = stateWaiting
	e.waiting = slices.Insert(e.waiting, 0, v)
	e.m.preemptions++
}

// schedule plans the step starting at now: every running request first (its
// decode token, or its next prefill chunk), preempting the newest running
// request when blocks run out; then, if nothing was preempted, waiting
// requests FIFO within max_num_seqs, the token budget and the LoRA slots.
// It returns the step's simulated duration. Callers hold e.mu.
func (e *Engine) schedule(now float64) *stepPlan {
	p := &e.plan
	p.entries, p.notify = p.entries[:0], p.notify[:0]
	budget := e.cfg.MaxNumBatchedTokens
	bs := e.cfg.BlockSize
	preempted := false
	for i := 0; i < len(e.running) && budget > 0; i++ {
		s := e.running[i]
		n := min(s.numTokens()-s.numComputed, budget)
		for !e.kv.allocate(s, 0, s.numComputed+n) {
			v := e.running[len(e.running)-1]
			e.running = e.running[:len(e.running)-1]
			e.preempt(v)
			preempted = true
			if v == s {
				n = 0
				break
			}
		}
		if n == 0 {
			break
		}
		p.entries = append(p.entries, schedEntry{s, n})
		budget -= n
	}

	loadTime := 0.0
	if !preempted {
		var active []int // adapters in the running batch
		for _, s := range e.running {
			if s.adapter >= 0 && !slices.Contains(active, s.adapter) {
				active = append(active, s.adapter)
			}
		}
		var skipped []*Seq
		for len(e.waiting) > 0 && len(e.running) < e.cfg.MaxNumSeqs && budget > 0 {
			s := e.waiting[0]
			if s.adapter >= 0 && !slices.Contains(active, s.adapter) && len(active) >= e.cfg.MaxLoRAs {
				// No LoRA slot: let later requests go first, as vLLM does.
				skipped = append(skipped, s)
				e.waiting = e.waiting[1:]
				continue
			}
			hits := e.kv.lookup(s)
			computed := hits * bs
			n := min(s.numTokens()-computed, budget)
			if !e.kv.allocate(s, hits, computed+n) {
				break
			}
			e.waiting = e.waiting[1:]
			e.m.prefixQueries += uint64(s.numTokens())
			e.m.prefixHits += uint64(computed)
			s.numComputed, s.cachedBlocks = computed, hits
			if s.adapter >= 0 {
				if !slices.Contains(active, s.adapter) {
					active = append(active, s.adapter)
				}
				loadTime += e.touchAdapter(s.adapter, active)
			}
			s.state = stateRunning
			e.running = append(e.running, s)
			if !s.scheduled {
				s.scheduled = true
				s.firstScheduled = now
			}
			s.lastScheduled = now
			p.entries = append(p.entries, schedEntry{s, n})
			budget -= n
		}
		if len(skipped) > 0 {
			e.waiting = append(skipped, e.waiting...)
		}
	}

	prefill, batch, kvTokens := 0, 0, 0
	for _, en := range p.entries {
		if en.s.generated > 0 && en.s.numComputed == en.s.numTokens()-1 {
			batch++
			kvTokens += en.s.numComputed
		} else {
			prefill += en.n
		}
	}
	p.dur = e.cfg.Step.Duration(prefill, batch, kvTokens) + loadTime
	return p
}

// touchAdapter makes adapter resident, evicting the least recently used one
// not in the batch, and returns the load time it costs (0 when resident).
func (e *Engine) touchAdapter(a int, active []int) float64 {
	if i := slices.Index(e.resident, a); i >= 0 {
		e.resident = append(slices.Delete(e.resident, i, i+1), a)
		return 0
	}
	if len(e.resident) >= e.cfg.MaxLoRAs {
		for i, r := range e.resident {
			if !slices.Contains(active, r) {
				e.resident = slices.Delete(e.resident, i, i+1)
				break
			}
		}
	}
	e.resident = append(e.resident, a)
	e.m.loraLoads++
	return e.cfg.LoRALoadTime
}

// complete applies a planned step that ended at simulated time end: chunks
// become computed KV, sequences that computed all their tokens sample one,
// finished ones free their blocks. It returns the sequences with new output.
// Callers hold e.mu.
func (e *Engine) complete(p *stepPlan, end float64) []*Seq {
	bs := e.cfg.BlockSize
	promptTok, genTok := 0, 0
	for _, en := range p.entries {
		s := en.s
		if s.state != stateRunning {
			continue // aborted during the step
		}
		s.numComputed += en.n
		if full := min(len(s.hashes), s.numComputed/bs); full > s.cachedBlocks {
			e.kv.registerBlocks(s, s.cachedBlocks, full)
			s.cachedBlocks = full
		}
		if s.numComputed < s.numTokens() {
			continue // a prefill chunk: no token yet
		}
		s.generated++
		genTok++
		if s.generated == 1 {
			promptTok += s.promptTokens
			s.firstToken = end
			e.m.ttft.observe(end - s.arrival)
		} else {
			e.m.itl.observe(end - s.lastToken)
		}
		s.lastToken = end
		if s.generated >= s.target {
			e.finish(s, end)
		}
		s.outGen.Store(int64(s.generated))
		if s.state == stateFinished {
			s.outDone.Store(true)
		}
		p.notify = append(p.notify, s)
	}
	e.m.promptTokens += uint64(promptTok)
	e.m.generationTokens += uint64(genTok)
	e.m.iterationTokens.observe(float64(promptTok + genTok))
	e.steps++
	if len(e.cfg.LoRAModules) > 0 {
		e.recordLoRAInfo()
	}
	e.publishKVEvents()
	e.changed.Broadcast()
	return p.notify
}

// publishKVEvents sends what the cache recorded since the last call as one
// batch (vLLM publishes one batch per engine step). Callers hold e.mu.
func (e *Engine) publishKVEvents() {
	if e.kvOut == nil || len(e.kv.events) == 0 {
		return
	}
	e.kvOut(kvBatch{ts: float64(time.Now().UnixNano()) / 1e9, events: e.kv.takeEvents()})
}

// ResetPrefixCache drops every cached prefix, as vLLM's
// /reset_prefix_cache does: only when no request holds blocks (false
// otherwise). With KV events on it publishes AllBlocksCleared.
func (e *Engine) ResetPrefixCache() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ok := e.kv.reset()
	e.publishKVEvents()
	return ok
}

func (e *Engine) finish(s *Seq, end float64) {
	e.running = slices.DeleteFunc(e.running, func(x *Seq) bool { return x == s })
	e.kv.release(s)
	s.state = stateFinished
	reason := FinishStop
	if s.byLength {
		reason = FinishLength
	}
	s.finishReason = reason
	m := &e.m
	m.success[reason]++
	m.e2e.observe(end - s.arrival)
	m.queue.observe(max(s.firstScheduled-s.arrival, 0))
	m.inference.observe(end - s.lastScheduled)
	m.prefill.observe(max(s.firstToken-s.lastScheduled, 0))
	m.decode.observe(end - s.firstToken)
	m.promptLen.observe(float64(s.promptTokens))
	m.genLen.observe(float64(s.generated))
	m.maxGen.observe(float64(s.maxTokens))
	m.maxTokens.observe(float64(s.maxTokens))
	m.paramsN.observe(1)
	if s.generated > 1 {
		m.tpotReq.observe((end - s.firstToken) / float64(s.generated-1))
	}
}

// recordLoRAInfo sets the lora_requests_info series of the current running
// and waiting adapters to the current Unix time. Like vLLM (a Prometheus
// gauge per label set), older label sets stay exported; a consumer takes
// the newest. The map is bounded to keep a long run from growing it.
func (e *Engine) recordLoRAInfo() {
	names := func(q []*Seq) string {
		var out []string
		for _, s := range q {
			if s.adapter >= 0 {
				n := e.cfg.LoRAModules[s.adapter].Name
				if !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
		return strings.Join(out, ",")
	}
	key := names(e.running) + "\x00" + names(e.waiting)
	e.loraInfo[key] = float64(time.Now().UnixNano()) / 1e9
	if len(e.loraInfo) > 256 {
		oldest, ot := "", 0.0
		for k, t := range e.loraInfo {
			if oldest == "" || t < ot {
				oldest, ot = k, t
			}
		}
		delete(e.loraInfo, oldest)
	}
}

// Run drives the engine against its clock until ctx is done. A step that
// starts more than BehindTolerance after it should have is counted, logged,
// and rebased onto the clock, so simulated time is never silently stretched.
func (e *Engine) Run(ctx context.Context) {
	defer func() {
		close(e.closed)
		e.mu.Lock()
		e.changed.Broadcast() // release WaitIdle callers
		e.mu.Unlock()
	}()
	var t float64
	idle := true
	for {
		e.mu.Lock()
		if !e.hasWork() {
			e.mu.Unlock()
			select {
			case <-e.wake:
				idle = true
				continue
			case <-ctx.Done():
				return
			}
		}
		now := e.clock.Now()
		if idle {
			t, idle = now, false
		} else if lag := now - t; lag > 0 {
			e.maxLag = max(e.maxLag, lag)
			if lag > e.cfg.BehindTolerance {
				if e.behindSteps == 0 {
					e.behindFirst = now
				}
				e.behindSteps++
				e.behindSecs += lag
				e.behindLast = now
				t = now
				if time.Since(e.lastLog) > 5*time.Second {
					e.lastLog = time.Now()
					e.cfg.Logger.Warn("vllm-sim engine behind its clock: simulated time is not being kept",
						"model", e.cfg.Model, "lag_sim_s", lag, "behind_steps", e.behindSteps, "speed", e.cfg.Speed)
				}
			}
		}
		p := e.schedule(t)
		end := t + p.dur
		e.mu.Unlock()
		if err := e.clock.SleepUntil(ctx, end); err != nil {
			return
		}
		e.mu.Lock()
		notify := e.complete(p, end)
		for _, s := range notify {
			select {
			case s.notify <- struct{}{}:
			default:
			}
		}
		e.mu.Unlock()
		t = end
	}
}

// Stats is a consistent snapshot of a server's own counters; times are in
// simulated seconds.
type Stats struct {
	Running, Waiting int
	KVCacheUsage     float64
	PromptTokens     uint64
	GenerationTokens uint64
	Preemptions      uint64
	PrefixQueries    uint64
	PrefixHits       uint64
	LoRALoads        uint64
	// Restarts counts the engine's restarts (Restart).
	Restarts uint64
	// EvictedBlocks counts cached blocks whose prefix was dropped to make
	// room (vLLM has no such metric; its KV events report them).
	EvictedBlocks uint64
	Finished      map[string]uint64 // by finish reason
	ResidentLoRAs []string

	SimTime float64
	Steps   uint64
	// BehindSteps counts steps that started more than BehindTolerance late;
	// BehindSeconds sums their lag; MaxLag is the largest lag seen at all.
	BehindSteps   uint64
	BehindSeconds float64
	MaxLag        float64
	// FirstBehindAt and LastBehindAt are the simulated times of the first
	// and last behind step (0 if none).
	FirstBehindAt, LastBehindAt float64
}

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Stats{
		Running: len(e.running), Waiting: len(e.waiting), KVCacheUsage: e.kv.usage(),
		PromptTokens: e.m.promptTokens, GenerationTokens: e.m.generationTokens,
		Preemptions: e.m.preemptions, PrefixQueries: e.m.prefixQueries, PrefixHits: e.m.prefixHits,
		LoRALoads: e.m.loraLoads, Restarts: e.restarts, EvictedBlocks: e.kv.evicted, Finished: map[string]uint64{},
		SimTime: e.clock.Now(), Steps: e.steps,
		BehindSteps: e.behindSteps, BehindSeconds: e.behindSecs, MaxLag: e.maxLag,
		FirstBehindAt: e.behindFirst, LastBehindAt: e.behindLast,
	}
	for k, v := range e.m.success {
		st.Finished[k] = v
	}
	for _, a := range e.resident {
		st.ResidentLoRAs = append(st.ResidentLoRAs, e.cfg.LoRAModules[a].Name)
	}
	return st
}
