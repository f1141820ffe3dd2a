package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// metricNames are the metrics --percentile-metrics may name, with vllm
// bench's label and section header (serve.py process_one_metric calls).
var metricNames = []struct{ key, label, header string }{
	{"ttft", "TTFT", "Time to First Token"},
	{"tpot", "TPOT", "Time per Output Token (excl. 1st token)"},
	{"itl", "ITL", "Inter-token Latency"},
	{"e2el", "E2EL", "End-to-end Latency"},
	{"client_queue_time", "Client Queue Time", "Client-side Queueing"},
	{"e2el_including_client_queue", "E2EL incl. Client Queue", "Queue-inclusive End-to-end Latency"},
}

// ValidMetric reports whether name is a --percentile-metrics name.
func ValidMetric(name string) bool {
	for _, m := range metricNames {
		if m.key == name {
			return true
		}
	}
	return false
}

func (m *Metrics) stat(key string) *Stat {
	switch key {
	case "ttft":
		return &m.TTFT
	case "tpot":
		return &m.TPOT
	case "itl":
		return &m.ITL
	case "e2el":
		return &m.E2EL
	case "client_queue_time":
		return m.ClientQueue
	case "e2el_including_client_queue":
		return m.E2ELInclQueue
	}
	return nil
}

// TableInfo is what the result table shows besides the metrics.
type TableInfo struct {
	MaxConcurrency    int // 0: not set
	RequestRate       float64
	Duration          float64
	PercentileMetrics []string
}

// center is Python's "{s:{c}^{n}}": s centred in n columns of c, the odd
// column on the right.
func center(s string, n int, c byte) string {
	pad := n - len(s)
	if pad <= 0 {
		return s
	}
	l := pad / 2
	return strings.Repeat(string(c), l) + s + strings.Repeat(string(c), pad-l)
}

// WriteTable prints vllm bench's "Serving Benchmark Result" table, with its
// names and its "{:<40} {:<10}" layout.
func WriteTable(w io.Writer, m Metrics, t TableInfo) {
	row := func(label string, v any) {
		var s string
		switch v := v.(type) {
		case int:
			s = strconv.Itoa(v)
		case float64:
			s = strconv.FormatFloat(v, 'f', 2, 64)
		}
		fmt.Fprintf(w, "%-40s %-10s\n", label, s)
	}
	fmt.Fprintln(w, center(" Serving Benchmark Result ", 50, '='))
	row("Successful requests:", m.Completed)
	row("Failed requests:", m.Failed)
	if t.MaxConcurrency > 0 {
		row("Maximum request concurrency:", t.MaxConcurrency)
	}
	if !math.IsInf(t.RequestRate, 1) {
		row("Request rate configured (RPS):", t.RequestRate)
	}
	row("Benchmark duration (s):", t.Duration)
	row("Total input tokens:", m.TotalInput)
	row("Total generated tokens:", m.TotalOutput)
	row("Request throughput (req/s):", m.RequestThroughput)
	if m.RequestGoodput != nil {
		row("Request goodput (req/s):", *m.RequestGoodput)
	}
	row("Output token throughput (tok/s):", m.OutputThroughput)
	row("Peak output token throughput (tok/s):", m.MaxOutputTokensPerS)
	row("Peak concurrent requests:", float64(m.MaxConcurrentRequests))
	row("Total token throughput (tok/s):", m.TotalTokenThroughput)
	for _, mn := range metricNames {
		st := m.stat(mn.key)
		if st == nil || !contains(t.PercentileMetrics, mn.key) {
			continue
		}
		fmt.Fprintln(w, center(mn.header, 50, '-'))
		row("Mean "+mn.label+" (ms):", st.Mean)
		row("Median "+mn.label+" (ms):", st.Median)
		for _, p := range st.Percentiles {
			row("P"+percentileWord(p.P)+" "+mn.label+" (ms):", p.Value)
		}
	}
	fmt.Fprintln(w, strings.Repeat("=", 50))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Object is a JSON object that keeps its keys in order (vllm bench's result
// dict is ordered; keeping the order makes the two files easy to compare).
type Object []Field

// Field is one key of an Object.
type Field struct {
	Key   string
	Value any
}

// Get returns the value of key.
func (o Object) Get(key string) (any, bool) {
	for _, f := range o {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

// Set replaces key's value or appends it.
func (o *Object) Set(key string, v any) {
	for i := range *o {
		if (*o)[i].Key == key {
			(*o)[i].Value = v
			return
		}
	}
	*o = append(*o, Field{key, v})
}

// MarshalJSON writes the fields in order.
func (o Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.Key)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(f.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Key, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// ResultInfo is the run's configuration as vllm bench saves it.
type ResultInfo struct {
	Date           string // "20060102-150405"
	Backend        string // "openai" or "openai-chat"
	Label          string // "" is saved as null
	ModelID        string
	NumPrompts     int
	Metadata       [][2]string
	RequestRate    float64
	Burstiness     float64
	MaxConcurrency int // 0 is saved as null
	// Additions of this tool, saved under "meshllm_" keys after vllm's.
	DatasetName string
	// IgnoreEOS is whether requests carried ignore_eos (nil: not saved).
	IgnoreEOS *bool
	// Warmups are the test and warm-up requests sent before the run, which
	// vllm's totals leave out (nil or none sent: not saved).
	Warmups *WarmupTotals
}

// SavedResult is vllm bench's --save-result JSON (serve.py main_async and
// benchmark()): the run's configuration, then duration, counts, totals,
// throughputs, the per-request lists (input_lens, output_lens, ttfts, itls,
// start_times, generated_texts and errors only with detailed, as
// --save-detailed; latencies and queue_times always, as vllm keeps them),
// the peaks, then mean/median/std and the percentiles of every metric named
// in percentileMetrics. Differences: start_times are seconds from the
// benchmark's start (vllm: raw perf_counter), tokenizer_id is null (no
// tokenizer), rtfx is 0. This tool's additions come last, each key prefixed
// "meshllm_": dataset_name, ignore_eos, the warm-up counts, served_models
// and (detailed) response_models.
func SavedResult(info ResultInfo, m Metrics, outs []Output, dur float64, percentileMetrics []string, detailed bool) Object {
	var o Object
	o.Set("date", info.Date)
	o.Set("endpoint_type", info.Backend)
	o.Set("backend", info.Backend)
	o.Set("label", nullIfEmpty(info.Label))
	o.Set("model_id", info.ModelID)
	o.Set("tokenizer_id", nil)
	o.Set("num_prompts", info.NumPrompts)
	for _, kv := range info.Metadata {
		o.Set(kv[0], kv[1])
	}
	if math.IsInf(info.RequestRate, 1) {
		o.Set("request_rate", "inf")
	} else {
		o.Set("request_rate", info.RequestRate)
	}
	if math.IsInf(info.Burstiness, 1) {
		o.Set("burstiness", "inf")
	} else {
		o.Set("burstiness", info.Burstiness)
	}
	if info.MaxConcurrency > 0 {
		o.Set("max_concurrency", info.MaxConcurrency)
	} else {
		o.Set("max_concurrency", nil)
	}
	o.Set("duration", dur)
	o.Set("completed", m.Completed)
	o.Set("failed", m.Failed)
	o.Set("total_input_tokens", m.TotalInput)
	o.Set("total_output_tokens", m.TotalOutput)
	o.Set("request_throughput", m.RequestThroughput)
	if m.RequestGoodput != nil {
		o.Set("request_goodput", *m.RequestGoodput)
	} else {
		o.Set("request_goodput", nil)
	}
	o.Set("output_throughput", m.OutputThroughput)
	o.Set("total_token_throughput", m.TotalTokenThroughput)
	col := func(f func(Output) any) []any {
		out := make([]any, len(outs))
		for i, x := range outs {
			out[i] = f(x)
		}
		return out
	}
	if detailed {
		o.Set("input_lens", col(func(x Output) any { return x.PromptLen }))
		o.Set("output_lens", m.OutputLens)
		o.Set("ttfts", col(func(x Output) any { return x.TTFT }))
		o.Set("itls", col(func(x Output) any {
			if x.ITL == nil {
				return []float64{}
			}
			return x.ITL
		}))
	}
	o.Set("latencies", col(func(x Output) any { return x.Latency }))
	if detailed {
		o.Set("start_times", col(func(x Output) any { return x.StartTime }))
	}
	o.Set("queue_times", col(func(x Output) any { return x.ClientQueueTime }))
	if detailed {
		o.Set("generated_texts", col(func(x Output) any { return x.GeneratedText }))
		o.Set("errors", col(func(x Output) any { return x.Error }))
	}
	o.Set("max_output_tokens_per_s", m.MaxOutputTokensPerS)
	o.Set("max_concurrent_requests", m.MaxConcurrentRequests)
	o.Set("rtfx", 0.0)
	for _, mn := range metricNames {
		st := m.stat(mn.key)
		if st == nil || !contains(percentileMetrics, mn.key) {
			continue
		}
		o.Set("mean_"+mn.key+"_ms", st.Mean)
		o.Set("median_"+mn.key+"_ms", st.Median)
		o.Set("std_"+mn.key+"_ms", st.Std)
		for _, p := range st.Percentiles {
			o.Set("p"+percentileWord(p.P)+"_"+mn.key+"_ms", p.Value)
		}
	}
	o.Set(extraKey("dataset_name"), info.DatasetName)
	if info.IgnoreEOS != nil {
		o.Set(extraKey("ignore_eos"), *info.IgnoreEOS)
	}
	if w := info.Warmups; w != nil && w.Sent > 0 {
		o.Set(extraKey("warmup_requests"), w.Sent)
		o.Set(extraKey("warmup_failed"), w.Failed)
		o.Set(extraKey("warmup_input_tokens"), w.InputTokens)
		o.Set(extraKey("warmup_output_tokens"), w.OutputTokens)
	}
	o.Set(extraKey("served_models"), servedModels(outs))
	if detailed {
		o.Set(extraKey("response_models"), col(func(x Output) any { return x.Model }))
	}
	return o
}

// extraKey names a saved key that vllm bench does not have.
func extraKey(name string) string { return "meshllm_" + name }

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// servedModels counts successful responses by their "model", in order of
// first appearance.
func servedModels(outs []Output) Object {
	var o Object
	for _, x := range outs {
		if !x.Success {
			continue
		}
		v, _ := o.Get(x.Model)
		n, _ := v.(int)
		o.Set(x.Model, n+1)
	}
	if o == nil {
		return Object{}
	}
	return o
}
