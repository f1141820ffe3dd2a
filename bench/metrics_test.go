package bench

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPercentileLinearIsNumpys(t *testing.T) {
	// numpy.percentile([1, 2, 3, 4, 10], p), default method "linear".
	xs := []float64{1, 2, 3, 4, 10}
	for p, want := range map[float64]float64{0: 1, 25: 2, 50: 3, 90: 7.6, 99: 9.76, 100: 10, 12.5: 1.5} {
		assert.InDelta(t, want, PercentileLinear(xs, p), 1e-12, "p%v", p)
	}
	assert.Equal(t, 5.0, PercentileLinear([]float64{5}, 99))
	assert.Equal(t, 0.0, PercentileLinear(nil, 99), "numpy over `x or 0`: an empty sample is 0")
	s := Summarize(nil, []float64{99})
	assert.Equal(t, Stat{Percentiles: []Percentile{{99, 0}}}, s)
}

// trace is a hand-made run: A streams 4 tokens; B one; C got a 429; D sent
// no usage (3 text chunks); E starts exactly when A ends.
func trace() []Output {
	return []Output{
		{Success: true, PromptLen: 10, OutputTokens: 4, StartTime: 0, TTFT: 0.1, ITL: []float64{0.02, 0.03, 0.05}, Latency: 0.2, ClientQueueTime: 0},
		{Success: true, PromptLen: 20, OutputTokens: 1, StartTime: 0.1, TTFT: 0.3, Latency: 0.3, ClientQueueTime: 0.1},
		{Success: false, Status: 429, PromptLen: 30, Error: "429 Too Many Requests"},
		{Success: true, PromptLen: 5, TextChunks: 3, StartTime: 1.2, TTFT: 0.2, ITL: []float64{0.1, 0.1}, Latency: 0.4, ClientQueueTime: 0.2},
		{Success: true, PromptLen: 1, OutputTokens: 1, StartTime: 0.2, TTFT: 0.05, Latency: 0.05},
	}
}

func TestCalculateOnAHandMadeTrace(t *testing.T) {
	m := Calculate(trace(), 2.0, MetricsOptions{Percentiles: []float64{50, 60, 99}, MaxConcurrencySet: true, RateFinite: true})
	const eps = 1e-9
	assert.Equal(t, 4, m.Completed)
	assert.Equal(t, 1, m.Failed, "a 429 is a failed request")
	assert.Equal(t, 36, m.TotalInput, "failed requests' prompts are not counted")
	assert.Equal(t, 9, m.TotalOutput, "D counts its 3 text chunks")
	assert.Equal(t, []int{4, 1, 0, 3, 1}, m.OutputLens)
	assert.InDelta(t, 2.0, m.RequestThroughput, eps)
	assert.InDelta(t, 4.5, m.OutputThroughput, eps)
	assert.InDelta(t, 22.5, m.TotalTokenThroughput, eps)

	// TTFT [0.05 0.1 0.2 0.3] s.
	assert.InDelta(t, 162.5, m.TTFT.Mean, eps)
	assert.InDelta(t, 150, m.TTFT.Median, eps)
	assert.InDelta(t, math.Sqrt(0.036875/4)*1000, m.TTFT.Std, eps, "population std, as numpy's")
	assert.InDelta(t, 297, m.TTFT.Percentiles[2].Value, eps)
	// TPOT only for requests with more than one token: A (0.2-0.1)/3, D (0.4-0.2)/2.
	assert.InDelta(t, (0.1/3+0.1)/2*1000, m.TPOT.Mean, eps)
	assert.InDelta(t, (0.1/3+(0.1-0.1/3)*0.99)*1000, m.TPOT.Percentiles[2].Value, eps)
	// ITL pooled: [0.02 0.03 0.05 0.1 0.1].
	assert.InDelta(t, 60, m.ITL.Mean, eps)
	assert.InDelta(t, 50, m.ITL.Median, eps)
	assert.InDelta(t, 70, m.ITL.Percentiles[1].Value, eps, "p60 interpolates between 0.05 and 0.1")
	assert.InDelta(t, 100, m.ITL.Percentiles[2].Value, eps)
	// E2EL [0.05 0.2 0.3 0.4].
	assert.InDelta(t, 237.5, m.E2EL.Mean, eps)
	assert.InDelta(t, 250, m.E2EL.Median, eps)
	require.NotNil(t, m.ClientQueue)
	assert.InDelta(t, 75, m.ClientQueue.Mean, eps)
	require.NotNil(t, m.E2ELInclQueue)
	assert.InDelta(t, 312.5, m.E2ELInclQueue.Mean, eps)
	// Tokens by second from the first start: A 4, B 1, E 1 in second 0; D 3 in second 1.
	assert.Equal(t, 6.0, m.MaxOutputTokensPerS)
	// A and B overlap; E starts as A ends (half-open), so the peak is 2.
	assert.Equal(t, 2, m.MaxConcurrentRequests)

	m = Calculate(trace(), 2.0, MetricsOptions{Percentiles: []float64{99}, MaxConcurrencySet: true})
	assert.NotNil(t, m.ClientQueue)
	assert.Nil(t, m.E2ELInclQueue, "vllm has queue-inclusive E2EL only with a finite rate")
	m = Calculate(trace(), 2.0, MetricsOptions{Percentiles: []float64{99}})
	assert.Nil(t, m.ClientQueue)
}

func TestCalculateAllFailed(t *testing.T) {
	m := Calculate([]Output{{Error: "x"}, {Error: "y"}}, 1, MetricsOptions{Percentiles: []float64{99}})
	assert.Equal(t, 0, m.Completed)
	assert.Equal(t, 2, m.Failed)
	assert.Equal(t, 0.0, m.TTFT.Mean)
	assert.Equal(t, 0.0, m.MaxOutputTokensPerS)
}

func TestPercentileWord(t *testing.T) {
	assert.Equal(t, "99", percentileWord(99))
	assert.Equal(t, "99.9", percentileWord(99.9))
	assert.Equal(t, "50", percentileWord(50))
	assert.Equal(t, "0", percentileWord(0))
}

func TestGoodputOnAHandMadeTrace(t *testing.T) {
	// Successful requests (TTFT, TPOT, E2EL in s): A (0.1, 0.1/3, 0.2),
	// B (0.3, 0 as it has one token, 0.3), D (0.2, 0.1, 0.4), E (0.05, 0, 0.05).
	for _, c := range []struct {
		slo  map[string]float64
		good int
	}{
		{map[string]float64{"ttft": 150}, 2},             // A, E
		{map[string]float64{"ttft": 300, "tpot": 50}, 3}, // A, B (at the bound), E
		{map[string]float64{"e2el": 100}, 1},             // E
		{map[string]float64{"ttft": 0, "tpot": 1000}, 0}, // none
		{map[string]float64{"tpot": 0}, 2},               // B and E: TPOT 0 with one token, as vllm
	} {
		m := Calculate(trace(), 2.0, MetricsOptions{Percentiles: []float64{99}, Goodput: c.slo})
		require.NotNil(t, m.RequestGoodput)
		assert.InDelta(t, float64(c.good)/2, *m.RequestGoodput, 1e-12, "%v", c.slo)
	}
	assert.Nil(t, Calculate(trace(), 2.0, MetricsOptions{}).RequestGoodput, "no --goodput, no goodput (vllm saves null)")
}
