package scheduling

// The time-to-first-token model behind the predicted_ttft scorer, after
// vLLM's scheduler (and e2e/vllmsim, which copies it): every step decodes
// one token for each running request, whose KV cache then grows by one
// token; a waiting request is admitted, first come first served, once the
// blocks its prompt needs are free; it then prefills (chunked, within the
// step's token budget) and its first token comes with its last prefill
// chunk. A request finishing frees all its blocks.
//
// So a request placed on a pod waits for two things: KV room for itself
// and for every request queued ahead of it, and then the prefill of those
// requests and its own. Room comes when running requests finish, and it
// shrinks meanwhile as they grow. The model follows that in decode steps:
// with the running requests sorted by the steps they have left, the free
// tokens after k steps are
//
//	free(k) = free(0) - alive(k)·k + Σ_{finished by k} held
//
// (each alive request grew k tokens; each finished one freed what it held
// and what it grew). Between two finishes free(k) only falls, so the first
// step at which the queue fits is 0 or one of the finishes.

// trajectory is one running request's future on its pod.
type trajectory struct {
	// left is the decode steps until it finishes; held the KV tokens it
	// holds now (prompt plus what it generated).
	left, held float64
}

// podForecast is what the model knows of one pod.
type podForecast struct {
	// capacity is the pod's KV cache in tokens (0: not known; the model
	// then sees queues only); used the tokens in use now.
	capacity, used float64
	// queued is the prefill tokens ahead of the request (waiting and on
	// their way); own is the request's own uncached prompt.
	queued, own float64
	// running are the requests whose ends the picker can foresee, by
	// steps left, fewest first; unknown running requests grow and never
	// end within the forecast.
	running []trajectory
	unknown int
	// decodeStep is the seconds of a decode step; prefillToken the
	// seconds a prefill token costs.
	decodeStep, prefillToken float64
}

// noRoomSteps is the wait, in decode steps past the last foreseen finish,
// charged when the queue does not fit even then (only requests the picker
// cannot foresee are left, and they do not end within the forecast).
const noRoomSteps = 1000

// admitSteps is the decode steps until the queue and the request fit in
// the pod's KV cache.
func (p *podForecast) admitSteps() float64 {
	if p.capacity <= 0 {
		return 0
	}
	slack := p.capacity - p.used - p.queued - p.own
	if slack >= 0 {
		return 0
	}
	alive := float64(len(p.running) + p.unknown)
	freed, last := 0.0, 0.0
	for _, r := range p.running {
		alive--
		freed += r.held
		last = r.left
		if slack+freed-alive*r.left >= 0 {
			return r.left
		}
	}
	return last + noRoomSteps
}

// ttft is the predicted seconds to the request's first token.
func (p *podForecast) ttft() float64 {
	return p.admitSteps()*p.decodeStep + (p.queued+p.own)*p.prefillToken + p.decodeStep
}
