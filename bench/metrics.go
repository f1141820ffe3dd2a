package bench

import (
	"math"
	"slices"
	"strconv"
)

// Metrics are vllm bench's BenchmarkMetrics, computed as its
// calculate_metrics does (vllm/benchmarks/serve.py). Latency statistics are
// in milliseconds.
type Metrics struct {
	Completed, Failed int
	TotalInput        int
	TotalOutput       int
	RequestThroughput float64
	// RequestGoodput is successful requests within every --goodput bound
	// per second; nil without --goodput (vllm saves null then).
	RequestGoodput        *float64
	OutputThroughput      float64
	TotalTokenThroughput  float64
	TTFT, TPOT, ITL, E2EL Stat
	// ClientQueue and E2ELInclQueue exist as in vllm bench: the first with
	// --max-concurrency, the second also needs a finite request rate.
	ClientQueue, E2ELInclQueue *Stat
	MaxOutputTokensPerS        float64
	MaxConcurrentRequests      int
	// OutputLens are the output tokens of every request (0 when failed).
	OutputLens []int
}

// Stat summarises one latency metric.
type Stat struct {
	Mean, Median, Std float64
	Percentiles       []Percentile
}

// Percentile is one requested percentile (P in 0..100) and its value.
type Percentile struct{ P, Value float64 }

// PercentileLinear is numpy.percentile's default ("linear") method over
// sorted values: the value at rank p/100*(n-1), interpolated between the
// two nearest. vllm bench summarises with numpy, and with `or 0` an empty
// sample gives 0.
func PercentileLinear(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	lo, hi = min(max(lo, 0), len(sorted)-1), min(max(hi, 0), len(sorted)-1)
	return sorted[lo] + (sorted[hi]-sorted[lo])*(rank-float64(lo))
}

// Summarize is mean, median, population standard deviation (numpy's std)
// and the requested percentiles of xs (seconds), in milliseconds.
func Summarize(xs []float64, percentiles []float64) Stat {
	s := slices.Clone(xs)
	slices.Sort(s)
	var st Stat
	if len(s) > 0 {
		var sum float64
		for _, x := range s {
			sum += x
		}
		mean := sum / float64(len(s))
		var ss float64
		for _, x := range s {
			ss += (x - mean) * (x - mean)
		}
		st.Mean, st.Std = mean*1000, math.Sqrt(ss/float64(len(s)))*1000
	}
	st.Median = PercentileLinear(s, 50) * 1000
	for _, p := range percentiles {
		st.Percentiles = append(st.Percentiles, Percentile{P: p, Value: PercentileLinear(s, p) * 1000})
	}
	return st
}

// MetricsOptions are the parts of a run calculate_metrics looks at.
type MetricsOptions struct {
	Percentiles []float64
	// MaxConcurrencySet and RateFinite decide whether the client queue
	// metrics exist (as in vllm bench).
	MaxConcurrencySet, RateFinite bool
	// Goodput bounds, in milliseconds, by metric (ttft, tpot, e2el); nil
	// for none (see ParseGoodput).
	Goodput map[string]float64
}

// Calculate computes the metrics of outputs over a run of dur seconds.
//   - Output tokens are usage.completion_tokens; without usage vllm bench
//     re-tokenizes the text, which this client cannot, so it counts the
//     chunks that carried text (one a token on vLLM without speculative
//     decoding).
//   - TPOT of a request with more than one output token is
//     (latency - TTFT) / (output tokens - 1); others have none.
//   - Goodput counts the successful requests within every --goodput bound
//     (a request of one token has TPOT 0 there, as in vllm).
//   - ITL pools every request's gaps between chunks.
//   - Peak output tokens/s buckets token arrival times (start + TTFT +
//     cumulative ITL) by whole seconds from the first start; peak concurrency
//     sweeps [start, start+latency) intervals.
func Calculate(outputs []Output, dur float64, o MetricsOptions) Metrics {
	m := Metrics{OutputLens: make([]int, len(outputs))}
	var ttfts, tpots, itls, e2els, queues, queueE2E []float64
	good := 0
	for i, out := range outputs {
		if !out.Success {
			m.Failed++
			continue
		}
		n := out.OutputTokens
		if n == 0 {
			n = max(out.TextChunks, 1)
		}
		m.OutputLens[i] = n
		m.TotalInput += out.PromptLen
		m.TotalOutput += n
		tpot := 0.0
		if n > 1 {
			tpot = (out.Latency - out.TTFT) / float64(n-1)
			tpots = append(tpots, tpot)
		}
		if o.Goodput != nil && withinSLO(o.Goodput, out.TTFT, tpot, out.Latency) {
			good++
		}
		itls = append(itls, out.ITL...)
		ttfts = append(ttfts, out.TTFT)
		e2els = append(e2els, out.Latency)
		queues = append(queues, out.ClientQueueTime)
		queueE2E = append(queueE2E, out.Latency+out.ClientQueueTime)
		m.Completed++
	}
	if dur > 0 {
		m.RequestThroughput = float64(m.Completed) / dur
		m.OutputThroughput = float64(m.TotalOutput) / dur
		m.TotalTokenThroughput = float64(m.TotalInput+m.TotalOutput) / dur
	}
	if o.Goodput != nil {
		g := 0.0
		if dur > 0 {
			g = float64(good) / dur
		}
		m.RequestGoodput = &g
	}
	m.TTFT = Summarize(ttfts, o.Percentiles)
	m.TPOT = Summarize(tpots, o.Percentiles)
	m.ITL = Summarize(itls, o.Percentiles)
	m.E2EL = Summarize(e2els, o.Percentiles)
	if o.MaxConcurrencySet {
		q := Summarize(queues, o.Percentiles)
		m.ClientQueue = &q
		if o.RateFinite {
			qe := Summarize(queueE2E, o.Percentiles)
			m.E2ELInclQueue = &qe
		}
	}
	m.MaxOutputTokensPerS, m.MaxConcurrentRequests = peaks(outputs)
	return m
}

// peaks is vllm bench's max_output_tokens_per_s and max_concurrent_requests.
func peaks(outputs []Output) (float64, int) {
	minStart, maxEnd := math.Inf(1), math.Inf(-1)
	type event struct {
		t     float64
		delta int
	}
	var events []event
	for _, o := range outputs {
		if !o.Success {
			continue
		}
		minStart = min(minStart, o.StartTime)
		maxEnd = max(maxEnd, o.StartTime+o.Latency)
		events = append(events, event{o.StartTime, 1}, event{o.StartTime + o.Latency, -1})
	}
	if len(events) == 0 {
		return 0, 0
	}
	buckets := make([]float64, int(math.Ceil(maxEnd-minStart))+1)
	for _, o := range outputs {
		if !o.Success {
			continue
		}
		t := o.StartTime + o.TTFT
		add := func(t float64) {
			if b := int(t - minStart); b >= 0 && b < len(buckets) {
				buckets[b]++
			}
		}
		add(t)
		for _, g := range o.ITL {
			t += g
			add(t)
		}
	}
	// Half-open intervals: an end sorts before a start at the same time.
	slices.SortFunc(events, func(a, b event) int {
		if a.t != b.t {
			if a.t < b.t {
				return -1
			}
			return 1
		}
		return a.delta - b.delta
	})
	cur, peak := 0, 0
	for _, e := range events {
		cur += e.delta
		peak = max(peak, cur)
	}
	return slices.Max(buckets), peak
}

// percentileWord names percentile p as vllm bench does in keys and labels:
// "99", "99.9".
func percentileWord(p float64) string {
	if p == math.Trunc(p) && math.Abs(p) < 1e15 {
		return strconv.FormatInt(int64(p), 10)
	}
	return strconv.FormatFloat(p, 'f', -1, 64)
}
