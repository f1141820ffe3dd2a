package scheduling

import "sync"

// outputLengths learns, per model, how long outputs run against their
// max_tokens, from the ends the sender reports with their completion
// tokens. With ignore_eos (or a model that never stops early) every
// request runs to its limit and the estimate is max_tokens exactly; where
// requests stop early, it is the mean of what recent requests generated,
// each capped at the new request's limit.
type outputLengths struct {
	mu     sync.Mutex
	models map[string]*outputModel
	// fallback is the estimate with neither max_tokens nor history.
	fallback int
}

// outputSamples bounds the history one model keeps; maxModels bounds the
// models (past it, new models share the fallback: names come from clients).
const (
	outputSamples = 256
	maxModels     = 256
)

type outputModel struct {
	mu sync.Mutex
	// Ring of recent ends: generated tokens, and whether the request ran
	// to its limit (its length is then only a lower bound).
	gen    [outputSamples]int32
	capped [outputSamples]bool
	n, at  int
}

func newOutputLengths(fallback int) *outputLengths {
	return &outputLengths{models: map[string]*outputModel{}, fallback: fallback}
}

// model returns the history of model name (nil when the table is full and
// name is new).
func (o *outputLengths) model(name string) *outputModel {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.models[name]
	if m == nil && len(o.models) < maxModels {
		m = &outputModel{}
		o.models[name] = m
	}
	return m
}

// expect is the output length to expect of a request of m limited to
// maxTokens (0: no limit given).
func (o *outputLengths) expect(m *outputModel, maxTokens int) int {
	if m == nil {
		return o.limited(o.fallback, maxTokens)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == 0 {
		return o.limited(o.fallback, maxTokens)
	}
	// Requests that ran to their limit would have run to this one's too
	// (as far as the history can tell); the others stopped where they
	// stopped, capped at this request's limit.
	var capped int
	var sum float64
	for i := 0; i < m.n; i++ {
		g := int(m.gen[i])
		if m.capped[i] {
			capped++
			if maxTokens == 0 {
				sum += float64(g)
			}
			continue
		}
		if maxTokens > 0 {
			g = min(g, maxTokens)
		}
		sum += float64(g)
	}
	if maxTokens > 0 {
		sum += float64(capped) * float64(maxTokens)
	}
	return max(int(sum/float64(m.n)+0.5), 1)
}

func (o *outputLengths) limited(n, maxTokens int) int {
	if maxTokens > 0 {
		return maxTokens
	}
	return n
}

// observe records an end: generated tokens against the request's limit
// (0: none).
func (m *outputModel) observe(generated, maxTokens int) {
	if m == nil || generated < 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen[m.at] = int32(min(generated, 1<<30))
	m.capped[m.at] = maxTokens > 0 && generated >= maxTokens
	m.at = (m.at + 1) % outputSamples
	m.n = min(m.n+1, outputSamples)
}
