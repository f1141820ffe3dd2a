package scheduling

import (
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// stepClock follows one pod's engine steps from scrape to scrape, in the
// picker's own clock: how long a step takes when it only decodes, and what
// a prefill token adds. vLLM's /metrics count the steps
// (vllm:iteration_tokens_total's count) and the prefill tokens
// (vllm:prompt_tokens_total); their changes between two scrapes, against
// the time between them, give both. Until a pod has shown them, or for an
// engine that does not export them, the defaults stand.
type stepClock struct {
	last *scrape.Snapshot
	// decode is the seconds of a decode-only step; perToken the seconds a
	// prefill token adds to its step (moving averages; 0 until measured).
	decode, perToken float64
}

// stepSmoothing is the weight of one scrape interval in the averages: a
// few seconds of scrapes at 50 ms.
const stepSmoothing = 0.05

// observe takes s if it is a new snapshot. It reports whether it was.
func (c *stepClock) observe(s *scrape.Snapshot) bool {
	if s == c.last {
		return false
	}
	prev := c.last
	c.last = s
	if prev == nil || !s.HasSteps || !prev.HasSteps {
		return true
	}
	dt := scrapeTime(s).Sub(scrapeTime(prev)).Seconds()
	steps := s.Steps - prev.Steps
	prompt := s.PromptTokens - prev.PromptTokens
	if !(dt > 0) || !(steps >= 1) || prompt < 0 {
		return true // idle, or counters reset: nothing to learn
	}
	per := dt / steps
	switch {
	case prompt == 0:
		c.decode = smooth(c.decode, per)
	case c.decode > 0:
		// The prefill steps also decode: what they took beyond a decode
		// step each is the prefill tokens' cost.
		if extra := (dt - steps*c.decode) / prompt; extra > 0 {
			c.perToken = smooth(c.perToken, extra)
		}
	}
	return true
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
