package scheduling

// A fleet of vLLM engines in virtual time, driven by this package's
// scheduler: the engines step as e2e/vllmsim's do (engine.go schedule and
// complete, kvcache.go allocate and release: continuous batching under a
// token budget, KV admission first come first served, the newest running
// request preempted when a block runs out), without prefix caching or
// LoRA. The picker sees what it would in production: a scrape of each
// engine's /metrics numbers every scrapeEvery, its own picks, and each end
// reported on the next pick. A run of hundreds of requests takes tens of
// milliseconds, so routing ideas can be compared over many seeds and
// shapes (BenchmarkFleet); meshllm-compare, on the real stack, is the
// benchmark of record.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// stepCosts is vllmsim's affine step model, in simulated seconds
// (e2e/vllmsim/config.go StepModel).
type stepCosts struct{ decodeBase, decodeKV, decodeBatch, prefillBase, prefillPerToken, prefillMin float64 }

func (m stepCosts) duration(prefill, batch, kv int) float64 {
	d := m.decodeKV*float64(kv) + m.decodeBatch*float64(batch)
	if prefill > 0 {
		return d + math.Max(m.prefillMin, m.prefillBase+m.prefillPerToken*float64(prefill))
	}
	return d + m.decodeBase
}

var (
	// vllmsim's defaults (DefaultStepModel).
	vllmsimSteps = stepCosts{0.014, 5.35e-7, 1.026e-4, 0.01969, 6.769e-5, 0.04}
	// bench/compare's qwen2.5-7b-a10 preset (an A10 roofline).
	qwenA10Steps = stepCosts{0.02684, 9.557e-8, 1.026e-4, 0.02684, 2.432e-4, 0.04}
)

type modelRequest struct {
	prompt, target              int // tokens; target is where it stops
	maxTokens                   int
	computed, generated, blocks int
	sent, first                 float64
	pickID                      uint64
	pod                         int
}

func (r *modelRequest) tokens() int { return r.prompt + r.generated }

type modelEngine struct {
	blocks, free, budget int
	steps                stepCosts
	waiting, running     []*modelRequest
	batch                []modelChunk
	busy                 bool
	busyUntil            float64
	firstTokens, stepped int
	promptTokens         int
	preemptions          int
}

type modelChunk struct {
	r *modelRequest
	n int
}

const modelBlock = 16

func (e *modelEngine) allocate(r *modelRequest, total int) bool {
	need := (total+modelBlock-1)/modelBlock - r.blocks
	if need > e.free {
		return false
	}
	if need > 0 {
		e.free -= need
		r.blocks += need
	}
	return true
}

func (e *modelEngine) release(r *modelRequest) { e.free += r.blocks; r.blocks = 0 }

// schedule plans a step and returns its duration (vllmsim's schedule).
func (e *modelEngine) schedule() float64 {
	e.batch = e.batch[:0]
	budget := e.budget
	preempted := false
	for i := 0; i < len(e.running) && budget > 0; i++ {
		r := e.running[i]
		n := min(r.tokens()-r.computed, budget)
		for !e.allocate(r, r.computed+n) {
			v := e.running[len(e.running)-1]
			e.running = e.running[:len(e.running)-1]
			e.release(v)
			v.computed = 0
			e.waiting = slices.Insert(e.waiting, 0, v)
			e.preemptions++
			preempted = true
			if v == r {
				n = 0
				break
			}
		}
		if n == 0 {
			break
		}
		e.batch = append(e.batch, modelChunk{r, n})
		budget -= n
	}
	for !preempted && len(e.waiting) > 0 && len(e.running) < 256 && budget > 0 {
		r := e.waiting[0]
		n := min(r.tokens(), budget)
		if !e.allocate(r, n) {
			break
		}
		e.waiting = e.waiting[1:]
		e.running = append(e.running, r)
		e.batch = append(e.batch, modelChunk{r, n})
		budget -= n
	}
	prefill, batch, kv := 0, 0, 0
	for _, c := range e.batch {
		if c.r.generated > 0 && c.r.computed == c.r.tokens()-1 {
			batch++
			kv += c.r.computed
		} else {
			prefill += c.n
		}
	}
	return e.steps.duration(prefill, batch, kv)
}

// complete applies the planned step ending at end; it returns the
// requests that finished (vllmsim's complete).
func (e *modelEngine) complete(end float64) []*modelRequest {
	var done []*modelRequest
	for _, c := range e.batch {
		r := c.r
		r.computed += c.n
		if r.computed < r.tokens() {
			continue
		}
		r.generated++
		if r.generated == 1 {
			r.first = end
			e.firstTokens++
			e.promptTokens += r.prompt
		}
		if r.generated >= r.target {
			e.running = slices.DeleteFunc(e.running, func(x *modelRequest) bool { return x == r })
			e.release(r)
			done = append(done, r)
		}
	}
	e.stepped++
	return done
}

// fleetShape is one workload on one fleet: a closed loop of concurrency
// clients, each sending its next request when one ends, as vllm bench's
// --max-concurrency does.
type fleetShape struct {
	pods, blocks      int
	steps             stepCosts
	requests, clients int
	// input and output lengths: U[(1-ratio)·L, (1+ratio)·L], as vllm
	// bench's random dataset; output is max_tokens, and the request
	// runs to it unless naturalStop (the median of a lognormal, sigma 1)
	// stops it first.
	input, output int
	ratio         float64
	naturalStop   float64
}

// The picker's view of the fleet: a scrape every 200 ms (50 ms at the
// speed-4 simulators of meshllm-compare), each taking 4 ms; a pick
// reaches its pod 20 ms after its request was sent.
const (
	scrapeEvery = 0.2
	pickDelay   = 0.02
)

// fleetRun is what a run measured.
type fleetRun struct {
	ttft, sent  []float64 // per request, in order of first token
	outputRate  float64   // output tokens per second over the run
	preemptions int
	// kvSpread is the mean, over the scrapes, of the gap between the
	// fullest and the emptiest pod's KV cache use: near 0 when the pods
	// fill and drain together (in phase).
	kvSpread float64
}

// runFleet drives shape with seed through policy: "round_robin", or a
// strategy of s.
func runFleet(shape fleetShape, s *Scheduler, policy string, seed uint64) fleetRun {
	rng := rand.New(rand.NewPCG(seed, 7))
	engines := make([]*modelEngine, shape.pods)
	eps := make([]*scrape.Endpoint, shape.pods)
	for i := range engines {
		engines[i] = &modelEngine{blocks: shape.blocks, free: shape.blocks, budget: 2048, steps: shape.steps}
		eps[i] = scrape.NewEndpoint(fmt.Sprintf("10.0.0.%d:8000", i+1), scrape.Config{})
	}
	at := func(t float64) time.Time { return t0.Add(time.Duration(t * float64(time.Second))) }
	spread, scrapes := 0.0, 0
	scrapeAll := func(t float64) {
		lo, hi := 1.0, 0.0
		for _, e := range engines {
			u := 1 - float64(e.free)/float64(e.blocks)
			lo, hi = min(lo, u), max(hi, u)
		}
		spread += hi - lo
		scrapes++
		for i, e := range engines {
			eps[i].Store(&scrape.Snapshot{Waiting: float64(len(e.waiting)), Running: float64(len(e.running)),
				KVCacheUsage: 1 - float64(e.free)/float64(e.blocks), NumGPUBlocks: e.blocks, BlockSize: modelBlock,
				FirstTokens: float64(e.firstTokens), HasFirstTokens: true, Steps: float64(e.stepped), HasSteps: true,
				PromptTokens: float64(e.promptTokens), RequestedAt: at(t), ScrapedAt: at(t + 0.004)})
		}
	}
	draw := func(l int) int {
		lo, hi := int(math.Floor(float64(l)*(1-shape.ratio))), int(math.Ceil(float64(l)*(1+shape.ratio)))
		return lo + rng.IntN(hi-lo+1)
	}
	var run fleetRun
	type arrival struct {
		t float64
		r *modelRequest
	}
	var arrivals []arrival
	var ended []RequestEnd
	sent, done, next, generated := 0, 0, 0, 0
	send := func(t float64) {
		r := &modelRequest{prompt: draw(shape.input), maxTokens: draw(shape.output), sent: t}
		r.target = r.maxTokens
		if shape.naturalStop > 0 {
			r.target = min(r.maxTokens, max(1, int(shape.naturalStop*math.Exp(rng.NormFloat64()))))
		}
		sent++
		if policy == "round_robin" {
			r.pod = next % shape.pods
			next++
		} else {
			s.RequestsDone(ended, at(t))
			ended = ended[:0]
			res, err := s.Pick(eps, pickapi.Strategy(policy), &Request{TargetModel: "m", Criticality: pickapi.Critical,
				PromptTokens: r.prompt, MaxTokens: r.maxTokens}, at(t))
			if err != nil {
				panic(err)
			}
			r.pod, r.pickID = slices.Index(eps, res.Endpoints[0]), res.PickID
		}
		arrivals = append(arrivals, arrival{t + pickDelay, r})
	}
	now, nextScrape := 0.0, scrapeEvery
	scrapeAll(0)
	for sent < min(shape.clients, shape.requests) {
		send(0)
	}
	for done < shape.requests {
		t, event, pod := nextScrape, 0, 0
		if len(arrivals) > 0 && arrivals[0].t < t {
			t, event = arrivals[0].t, 1
		}
		for i, e := range engines {
			if e.busy && e.busyUntil < t {
				t, event, pod = e.busyUntil, 2, i
			}
		}
		now = t
		switch event {
		case 0:
			scrapeAll(now)
			nextScrape = now + scrapeEvery
		case 1:
			r := arrivals[0].r
			arrivals = arrivals[1:]
			e := engines[r.pod]
			e.waiting = append(e.waiting, r)
			if !e.busy {
				e.busy, e.busyUntil = true, now+e.schedule()
			}
		case 2:
			e := engines[pod]
			for _, c := range e.batch {
				if c.r.generated == 0 && c.r.computed+c.n >= c.r.tokens() {
					run.ttft = append(run.ttft, now-c.r.sent)
					run.sent = append(run.sent, c.r.sent)
				}
			}
			for _, r := range e.complete(now) {
				done++
				generated += r.generated
				ended = append(ended, RequestEnd{ID: r.pickID, CompletionTokens: r.generated})
				if sent < shape.requests {
					send(now)
				}
			}
			if len(e.waiting)+len(e.running) > 0 {
				e.busyUntil = now + e.schedule()
			} else {
				e.busy = false
			}
		}
	}
	run.outputRate = float64(generated) / now
	run.kvSpread = spread / float64(scrapes)
	for _, e := range engines {
		run.preemptions += e.preemptions
	}
	return run
}
