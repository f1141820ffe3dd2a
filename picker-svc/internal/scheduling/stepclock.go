package scheduling

import (
	"sync"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// stepClock follows one pod's engine steps from scrape to scrape, in the
// picker's own clock. vLLM's /metrics count the steps
// (vllm:iteration_tokens_total's count) and the prefill tokens
// (vllm:prompt_tokens_total, counted when a request's prefill completes);
// their changes over a window of steps, against the time it took, give
// what a step costs and what a prefill token adds to it. A prompt's
// chunks run in several steps, often in another window than the one that
// counts it, so the cost of a prefill token is fitted over every pod's
// windows at once (prefillCost: it is the model's and the hardware's),
// and a pod's own step time is what its windows took beyond that. Until a
// pod has shown its steps, or for an engine that does not export them,
// the defaults stand.
type stepClock struct {
	last  *scrape.Snapshot
	start *scrape.Snapshot // the open window's first snapshot
	// decode is the seconds of the pod's step beyond its prefill tokens
	// (a moving average; 0 until measured).
	decode float64
}

// stepWindow is the fewest steps a window spans: enough that most
// prompts it counts were computed in it.
const stepWindow = 16

// stepSmoothing is the weight of one window in the averages.
const stepSmoothing = 0.05

// observe takes s if it is a new snapshot (reporting whether it was), and
// closes the pod's window when it spans stepWindow steps.
func (c *stepClock) observe(s *scrape.Snapshot, cost *prefillCost) bool {
	if s == c.last {
		return false
	}
	c.last = s
	if !s.HasSteps {
		c.start = nil
		return true
	}
	w := c.start
	if w == nil || s.Steps < w.Steps || s.PromptTokens < w.PromptTokens || s.Running+s.Waiting == 0 {
		c.start = s // the first, counters reset, or idle: a window times busy steps only
		return true
	}
	steps := s.Steps - w.Steps
	if steps < stepWindow {
		return true
	}
	c.start = s
	dt := scrapeTime(s).Sub(scrapeTime(w)).Seconds()
	if !(dt > 0) {
		return true
	}
	prompt := s.PromptTokens - w.PromptTokens
	cost.observe(dt, steps, prompt)
	if per := cost.perToken(); per > 0 || prompt == 0 {
		c.decode = smooth(c.decode, max(dt-per*prompt, 0)/steps)
		cost.observeStep(c.decode)
	}
	return true
}

// prefillCost fits, over every pod's windows, seconds = a·steps +
// c·prefill tokens by least squares on moving sums; c is the seconds a
// prefill token adds to its step.
type prefillCost struct {
	mu                 sync.Mutex
	ss, sp, pp, st, pt float64
	n                  float64
	// step is a moving average of the pods' step times: the guess for a
	// pod not measured yet (an idle one), where a default would stand out
	// against its measured peers.
	step float64
}

func (p *prefillCost) observeStep(s float64) {
	p.mu.Lock()
	p.step = smooth(p.step, s)
	p.mu.Unlock()
}

// stepTime is the pods' mean step, 0 until one was measured.
func (p *prefillCost) stepTime() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.step
}

func (p *prefillCost) observe(seconds, steps, tokens float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := func(avg *float64, x float64) { *avg += stepSmoothing * (x - *avg) }
	m(&p.ss, steps*steps)
	m(&p.sp, steps*tokens)
	m(&p.pp, tokens*tokens)
	m(&p.st, steps*seconds)
	m(&p.pt, tokens*seconds)
	p.n++
}

// perToken is the fitted cost of a prefill token, 0 until the windows
// tell it apart from the steps' own.
func (p *prefillCost) perToken() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	det := p.ss*p.pp - p.sp*p.sp
	if p.n < 8 || det <= 1e-9*p.ss*p.pp {
		return 0
	}
	c := (p.ss*p.pt - p.sp*p.st) / det
	return max(c, 0)
}

func smooth(avg, x float64) float64 {
	if avg == 0 {
		return x
	}
	return avg + stepSmoothing*(x-avg)
}

// scrapeTime is when s's page was asked for (the page shows the pod then),
// else when it was read.
func scrapeTime(s *scrape.Snapshot) time.Time {
	if !s.RequestedAt.IsZero() {
		return s.RequestedAt
	}
	return s.ScrapedAt
}

// steps is the pod's step count at now: the last scrape's, plus the steps
// of a decode-step length since (decodeStep > 0). For a pod that does not
// export steps it is a count of decode-step lengths since the epoch.
func (c *stepClock) steps(now time.Time, decodeStep float64) float64 {
	if c.last != nil && c.last.HasSteps {
		return c.last.Steps + max(now.Sub(scrapeTime(c.last)).Seconds(), 0)/decodeStep
	}
	return float64(now.UnixNano()) / 1e9 / decodeStep
}
