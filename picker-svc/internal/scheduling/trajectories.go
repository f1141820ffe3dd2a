package scheduling

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// podTrajectories is what the predicted_ttft scorer follows of one pod:
// its step clock, and this picker's requests there that have not ended.
type podTrajectories struct {
	clock stepClock
	// pending are picks before their first token, in pick order; running
	// the others, by the step they will finish at.
	pending, running []*openPick
	// freed is the KV tokens of requests reported ended since the last
	// snapshot (which still counts them).
	freed float64
	// prompt is a moving average of the prompts picked here: the size
	// guessed for waiting requests the picker did not send.
	prompt float64
	// output is a moving average of the picks' expected outputs, and
	// lastPick when the last was made.
	output   float64
	lastPick time.Time
	// looked is the pod's step count when the scorer last brought it up
	// to date.
	looked float64
	buf    []trajectory
	starts []float64
}

// openPick is one request this picker sent a pod.
type openPick struct {
	id        uint64
	at        time.Time
	prompt    int
	work      int // the prompt less the prefix the pod likely held
	out       int // the output expected
	maxTokens int
	model     *outputModel
	// first is the pod's step count at the request's first token (at its
	// pick while pending); finish at its last (running only).
	first, finish float64
}

// maxOpenPicks bounds the requests one pod's trajectories follow.
const maxOpenPicks = 4096

// reconcileSlack is how many more open picks than the pod shows (running,
// waiting, and picks its scrape cannot show yet) are kept before the ones
// due to finish first are taken as ended: an end nobody reported (an
// older filter, a request that failed open) must not hold KV in the
// forecast for ever.
const reconcileSlack = 2

// podEstimates are the pod's step costs, measured or defaulted.
type podEstimates struct {
	decodeStep, prefillToken, chunk float64
}

// forecast brings p up to c's snapshot and now, and returns what the model
// needs of the pod for req (own: its uncached prompt; ownOutput: its
// expected output). forget is told of the picks taken as ended.
func (p *podTrajectories) forecast(c *Candidate, now time.Time, est podEstimates, own, ownOutput, strangerOutput float64, forget func(uint64)) podForecast {
	snap := c.S
	steps := p.clock.steps(now, est.decodeStep)
	inf := &c.InFlight

	// The oldest picks past the ones still before their first token have
	// started: after they were picked, and after the scorer last found
	// them not started; taken as the earliest of that.
	for len(p.pending) > inf.BeforeFirstToken {
		r := p.pending[0]
		p.pending = p.pending[1:]
		r.first = min(max(r.first, p.looked), steps)
		r.finish = r.first + float64(r.out)
		p.insertRunning(r)
	}
	elapsed := 0.0 // steps since the last look (none before the first)
	if p.looked > 0 {
		elapsed = max(steps-p.looked, 0)
	}
	p.looked = steps
	visible := snap.Running + snap.Waiting + float64(inf.Requests)
	for len(p.running) > 0 && float64(len(p.pending)+len(p.running)) > visible+reconcileSlack {
		forget(p.running[0].id)
		p.running = p.running[1:]
	}

	f := podForecast{own: own, ownOutput: ownOutput, strangerOutput: strangerOutput, decodeStep: est.decodeStep, prefillToken: est.prefillToken, chunk: est.chunk,
		queued: float64(inf.BacklogTokens), queuedRequests: float64(inf.BeforeFirstToken)}
	// This picker's requests the pod holds before their first token are
	// waiting, or being prefilled (and counted running). More waiting than
	// that are requests the pod preempted (the newest running: vLLM takes
	// the newest first), then requests someone else sent.
	scraped := float64(max(inf.BeforeFirstToken-inf.Requests, 0))
	prefilling := max(scraped-snap.Waiting, 0)
	others := max(snap.Waiting-scraped, 0)
	preempted := min(int(others), len(p.running))
	size := p.prompt // of a request someone else sent: about what this picker sends
	if size == 0 {
		size = own
	}
	f.strangers = int(others) - preempted
	strangers := float64(f.strangers) * size
	f.queuedRequests += others
	f.unknown = max(int(snap.Running-prefilling)-(len(p.running)-preempted), 0)
	newest := math.Inf(1) // picks started at or after this step are the preempted
	if preempted > 0 {
		p.starts = p.starts[:0]
		for _, r := range p.running {
			p.starts = append(p.starts, r.first)
		}
		slices.Sort(p.starts)
		newest = p.starts[len(p.starts)-preempted]
	}
	recompute := 0.0
	p.buf = p.buf[:0]
	delayed := false
	for _, r := range p.running {
		if preempted > 0 && r.first >= newest {
			// Waiting to be readmitted: its prompt and its output so far.
			// It makes no progress while it waits, so its start and end
			// move out by the steps since the last look.
			r.first += elapsed
			r.finish += elapsed
			delayed = delayed || elapsed > 0
			recompute += float64(r.prompt) + min(max(steps-r.first, 0), float64(r.out-1))
			preempted--
			continue
		}
		gen := min(max(steps-r.first, 0), float64(r.out-1))
		p.buf = append(p.buf, trajectory{left: max(r.finish-steps, 1), held: float64(r.prompt) + gen})
	}
	if delayed {
		slices.SortStableFunc(p.running, func(a, b *openPick) int { return cmp.Compare(a.finish, b.finish) })
	}
	f.running = p.buf
	f.queued += strangers + recompute
	f.ahead = strangers + recompute + p.prefillAhead(now, snap.Waiting == 0, est.prefillToken+est.decodeStep/est.chunk)
	if total := snap.NumGPUBlocks * snap.BlockSize; total > 0 {
		f.capacity = float64(total)
		since := max(now.Sub(scrapeTime(snap)).Seconds(), 0) / est.decodeStep
		f.used = max(snap.KVCacheUsage*f.capacity+snap.Running*since-p.freed, 0)
	}
	return f
}

// prefillAhead is the prefill work left of this picker's requests before
// their first token: each one's uncached prompt, drained since it was
// picked at secondsPerToken, first come first served, while the pod is
// prefilling them (draining: it shows no queue of its own).
func (p *podTrajectories) prefillAhead(now time.Time, draining bool, secondsPerToken float64) float64 {
	left := 0.0
	var last time.Time
	for _, r := range p.pending {
		if draining && !last.IsZero() {
			left = max(left-r.at.Sub(last).Seconds()/secondsPerToken, 0)
		}
		left += float64(r.work)
		last = r.at
	}
	if draining && !last.IsZero() {
		left = max(left-now.Sub(last).Seconds()/secondsPerToken, 0)
	}
	return left
}

// insertRunning puts r among the running picks by its finish.
func (p *podTrajectories) insertRunning(r *openPick) {
	i, _ := slices.BinarySearchFunc(p.running, r.finish, func(x *openPick, f float64) int {
		if x.finish <= f {
			return -1
		}
		return 1
	})
	p.running = slices.Insert(p.running, i, r)
}

// add appends a new pick, dropping the oldest past maxOpenPicks.
func (p *podTrajectories) add(r *openPick, forget func(uint64)) {
	if len(p.pending)+len(p.running) >= maxOpenPicks {
		if len(p.running) > 0 {
			forget(p.running[0].id)
			p.running = p.running[1:]
		} else {
			forget(p.pending[0].id)
			p.pending = p.pending[1:]
		}
	}
	p.pending = append(p.pending, r)
	if p.prompt == 0 {
		p.prompt = float64(r.prompt)
	}
	p.prompt += 0.1 * (float64(r.prompt) - p.prompt)
	if p.output == 0 {
		p.output = float64(r.out)
	}
	p.output += 0.1 * (float64(r.out) - p.output)
	p.lastPick = r.at
}

// end takes a reported end out of the trajectories; it returns the pick
// (nil if p does not follow it) and the KV tokens it held, which the
// forecast frees at once.
func (p *podTrajectories) end(id uint64, completionTokens int, steps float64) (*openPick, float64) {
	if r, i := find(p.running, id); r != nil {
		p.running = slices.Delete(p.running, i, i+1)
		gen := float64(completionTokens)
		if gen < 0 {
			gen = min(max(steps-r.first, 0), float64(r.out))
		}
		return r, float64(r.prompt) + gen
	}
	if r, i := find(p.pending, id); r != nil {
		p.pending = slices.Delete(p.pending, i, i+1)
		return r, 0
	}
	return nil, 0
}

func find(rs []*openPick, id uint64) (*openPick, int) {
	for i, r := range rs {
		if r.id == id {
			return r, i
		}
	}
	return nil, -1
}

// observe takes a new snapshot into the step clock (ends reported before
// it are in its numbers).
func (p *podTrajectories) observe(s *scrape.Snapshot, cost *prefillCost) {
	if p.clock.observe(s, cost) {
		p.freed = 0
	}
}
