package scheduling

import "math"

// The model behind the predicted_ttft scorer, after vLLM's scheduler (and
// e2e/vllmsim, which copies it): every step decodes one token for each
// running request, whose KV cache then grows by a token; a waiting request
// is admitted, first come first served, once the blocks of its prompt are
// free; it prefills in chunks of the step's token budget, and its first
// token comes with its last chunk. A finishing request frees its blocks.
// When a step finds no block for a running request to grow into, the
// newest running request is preempted: it waits again, first in line, and
// recomputes its prompt and what it had generated.
//
// So a request placed on a pod waits for KV room for itself and for the
// requests queued ahead of it, and then for their prefill and its own.
// Room comes when running requests finish, and shrinks meanwhile as they
// grow. In decode steps, with the running requests sorted by the steps
// they have left, the tokens free after k steps are
//
//	free(k) = free(0) - alive(k)·k + Σ_{finished by k} held
//
// (each request alive grew k tokens; each finished one freed what it held
// and what it grew). Between two finishes free(k) only falls, so the first
// step at which the queue fits is 0 or a finish.
//
// Once admitted, the request and the queue grow too, a token a step each.
// If free(k) then falls short before the request ends, the pod preempts,
// newest first: this request first. That is the second number the model
// gives: the tokens the pod will lack within the request's life, at most
// the request's own (its prompt and output), which it would recompute.

// trajectory is one running request's future on its pod.
type trajectory struct {
	// left is the decode steps until it finishes; held the KV tokens it
	// holds now (prompt plus what it generated).
	left, held float64
	// low and before are scratch for admit: the room just before it
	// finishes, and the tokens held by the requests that finish before it.
	low, before float64
}

// podForecast is what the model knows of one pod.
type podForecast struct {
	// capacity is the pod's KV cache in tokens (0: not known; the model
	// then sees queues only); used the tokens in use now.
	capacity, used float64
	// queued is the KV tokens the requests ahead of this one need
	// (waiting, or on their way), queuedRequests how many they are, and
	// ahead the prefill work left of them.
	queued, queuedRequests, ahead float64
	// own is the request's uncached prompt, ownOutput its expected output.
	own, ownOutput float64
	// running are the requests whose ends the picker can foresee, by
	// steps left, fewest first; unknown running requests grow and do not
	// end within the forecast.
	running []trajectory
	unknown int
	// strangers is how many of the requests waiting ahead are someone
	// else's: a queue the KV cache does not explain waits for batch slots
	// (--max-num-seqs, LoRA), that is for running requests to end.
	// strangerOutput is the output taken for requests the picker cannot
	// follow (what it knows of them is nothing).
	strangers      int
	strangerOutput float64
	// decodeStep is the seconds of a step; prefillToken what a prefill
	// token adds to its step; chunk the prefill tokens a step takes.
	decodeStep, prefillToken, chunk float64
}

// noRoomSteps is the wait, in decode steps past the last foreseen finish,
// charged when the queue does not fit even then (only requests the picker
// cannot foresee are left, and they do not end within the forecast).
const noRoomSteps = 1000

// predict returns the seconds to the request's first token, and the
// seconds of prefill it risks recomputing if the pod runs short of KV
// cache before it ends.
func (p *podForecast) predict() (ttft, recompute float64) {
	steps, short := p.admit()
	if p.strangers > 0 {
		steps = max(steps, p.slotWait(p.strangers))
	}
	short = min(short, p.own+p.ownOutput)
	work := p.ahead + p.own
	chunks := math.Ceil(max(work, 1) / p.chunk)
	return steps*p.decodeStep + work*p.prefillToken + chunks*p.decodeStep, short * p.prefillToken
}

// admit returns the decode steps until the queue and the request fit in
// the pod's KV cache, and the tokens the pod will then lack, within the
// request's expected life, for them and its running requests to grow
// into. With S(k) = free(k) - queued - own and g the requests admitted at
// k (the queue and this one), admission is at the first k with S(k) >= 0,
// and the shortfall is the deepest S(r⁻) - g·(r-k) just before a finish r
// within the life, or at its end.
func (p *podForecast) admit() (steps, short float64) {
	if p.capacity <= 0 {
		return 0, 0
	}
	slack := p.capacity - p.used - p.queued - p.own
	rs := p.running
	alive := float64(len(rs) + p.unknown)
	held := 0.0
	for j := range rs {
		r := &rs[j]
		r.low, r.before = slack-alive*r.left+held, held
		alive--
		held += r.held
	}
	alive, held = float64(len(rs)+p.unknown), 0
	k := 0.0
	for j := 0; ; j++ {
		if slack-alive*k+held >= 0 {
			return k, p.shortfall(j, k)
		}
		if j == len(rs) {
			return k + noRoomSteps, 0
		}
		k = rs[j].left
		alive--
		held += rs[j].held
	}
}

// shortfall is the tokens the pod will lack within the request's life
// after an admission at step k, before finish j.
func (p *podForecast) shortfall(j int, k float64) float64 {
	rs := p.running
	g, life := 1+p.queuedRequests, p.ownOutput
	low := 0.0
	i := j
	for ; i < len(rs) && rs[i].left <= k+life; i++ {
		low = min(low, rs[i].low-g*(rs[i].left-k))
	}
	// At the life's end, before finish i.
	alive := float64(len(rs) - i + p.unknown)
	freed := 0.0
	if i > 0 {
		freed = rs[i-1].before + rs[i-1].held
	}
	low = min(low, p.capacity-p.used-p.queued-p.own-alive*(k+life)+freed-g*life)
	return -low
}

// slotWait is the decode steps until m running requests have ended, and
// this one can take a slot after m waiting ones: requests the picker
// cannot follow are taken to be halfway through strangerOutput, and past
// the running ones each round of slots takes a whole one.
func (p *podForecast) slotWait(m int) float64 {
	n := len(p.running) + p.unknown
	if n == 0 {
		return 0 // nothing runs: nothing holds the slots
	}
	half := p.strangerOutput / 2
	last, seen := 0.0, 0
	i, unknown := 0, p.unknown
	for seen < min(m, n) {
		if i < len(p.running) && (unknown == 0 || p.running[i].left <= half) {
			last = p.running[i].left
			i++
		} else {
			last = half
			unknown--
		}
		seen++
	}
	if m <= n {
		return last
	}
	return last + math.Ceil(float64(m-n)/float64(n))*p.strangerOutput
}
