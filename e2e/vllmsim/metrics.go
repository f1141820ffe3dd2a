package vllmsim

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// histogram is a Prometheus histogram with fixed upper bounds.
type histogram struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative
	sum    float64
	count  uint64
	series []string // rendered "name{labels} " of each exposition line
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds))}
}

func (h *histogram) observe(v float64) {
	h.sum += v
	h.count++
	if i, _ := slices.BinarySearch(h.bounds, v); i < len(h.bounds) {
		h.counts[i]++
	}
}

// Histogram buckets as vLLM's v1 PrometheusStatLogger declares them.
var (
	bucketsTTFT = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
		0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	bucketsTPOT = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
		1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	bucketsRequest = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
		40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
	bucketsIteration = []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}
	bucketsN         = []float64{1, 2, 5, 10, 20}
)

// buckets125 is vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50... <= max.
func buckets125(maxValue int) []float64 {
	var out []float64
	for exp := 1.0; ; exp *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := m * exp; v <= float64(maxValue) {
				out = append(out, v)
			} else {
				return out
			}
		}
	}
}

type engineMetrics struct {
	promptTokens, generationTokens, preemptions uint64
	prefixQueries, prefixHits, loraLoads        uint64
	success                                     map[string]uint64

	ttft, itl, tpotReq, e2e, queue, inference, prefill, decode     histogram
	promptLen, genLen, maxGen, maxTokens, paramsN, iterationTokens histogram
}

// Histogram buckets as SGLang's TokenizerMetricsCollector declares them
// (sgl-project/sglang python/sglang/srt/metrics/collector.py defaults).
var (
	bucketsSGLangTTFT = []float64{0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400}
	bucketsSGLangE2E  = []float64{0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400,
		600, 1200, 1800, 2400}
)

func (m *engineMetrics) init(cfg Config) {
	m.success = map[string]uint64{}
	if !cfg.MetricsV0 {
		// v1 exports every finish reason from the start.
		for _, r := range []string{FinishStop, FinishLength, FinishAbort} {
			m.success[r] = 0
		}
	}
	m.ttft = newHistogram(bucketsTTFT)
	m.itl = newHistogram(bucketsTPOT)
	m.tpotReq = newHistogram(bucketsTPOT)
	for _, h := range []*histogram{&m.e2e, &m.queue, &m.inference, &m.prefill, &m.decode} {
		*h = newHistogram(bucketsRequest)
	}
	b := buckets125(cfg.MaxModelLen)
	for _, h := range []*histogram{&m.promptLen, &m.genLen, &m.maxGen, &m.maxTokens} {
		*h = newHistogram(b)
	}
	m.paramsN = newHistogram(bucketsN)
	m.iterationTokens = newHistogram(bucketsIteration)
	if cfg.Engine == EngineSGLang {
		m.ttft = newHistogram(bucketsSGLangTTFT)
		m.e2e = newHistogram(bucketsSGLangE2E)
	}
}

// formatFloat renders a value as Python's prometheus_client does (repr,
// switching to an exponent sooner, like Go): 8.0, 0.25, 1.795293028e+09.
func formatFloat(d float64) string {
	switch {
	case math.IsInf(d, 1):
		return "+Inf"
	case math.IsInf(d, -1):
		return "-Inf"
	case math.IsNaN(d):
		return "NaN"
	}
	s := pyRepr(d)
	dot := strings.IndexByte(s, '.')
	if d > 0 && dot > 6 {
		mant := strings.TrimRight(s[:1]+"."+s[1:dot]+s[dot+1:], "0.")
		return mant + "e+0" + strconv.Itoa(dot-1)
	}
	return s
}

// pyRepr is Python's repr(float): shortest round-trip digits, fixed notation
// with at least one decimal for exponents in [-4, 16), else scientific.
func pyRepr(d float64) string {
	e := strconv.FormatFloat(d, 'e', -1, 64)
	mant, expS, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expS)
	if exp < -4 || exp >= 16 {
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		es := strconv.Itoa(exp)
		if len(es) < 2 {
			es = "0" + es
		}
		return mant + "e" + sign + es
	}
	s := strconv.FormatFloat(d, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// expo writes Prometheus text exposition (format 0.0.4) the way vLLM's
// prometheus_client does: HELP and TYPE per family, counters named with
// _total, labels sorted by name, histograms as _bucket/_count/_sum.
type expo struct {
	buf    []byte
	labels []string // sorted "k=\"v\"" pairs common to the family
}

func (x *expo) family(name, typ, help string) {
	x.buf = append(x.buf, "# HELP "+name+" "+help+"\n# TYPE "+name+" "+typ+"\n"...)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func quoteLabel(v string) string { return `"` + labelEscaper.Replace(v) + `"` }

// series renders "name{labels} " for the common labels plus extra "k", "v"
// pairs, in sorted label order.
func (x *expo) series(name string, extra ...string) string {
	pairs := slices.Clone(x.labels)
	for i := 0; i+1 < len(extra); i += 2 {
		pairs = append(pairs, extra[i]+"="+quoteLabel(extra[i+1]))
	}
	slices.Sort(pairs)
	if len(pairs) == 0 {
		return name + " "
	}
	return name + "{" + strings.Join(pairs, ",") + "} "
}

// value appends a sample value and the line end; small integers (most
// samples: counts) skip the general formatter.
func (x *expo) value(v float64) {
	if v >= 0 && v < 1e6 && v == math.Trunc(v) {
		x.buf = strconv.AppendInt(x.buf, int64(v), 10)
		x.buf = append(x.buf, ".0\n"...)
		return
	}
	x.buf = append(x.buf, formatFloat(v)...)
	x.buf = append(x.buf, '\n')
}

func (x *expo) sample(name string, v float64, extra ...string) {
	x.buf = append(x.buf, x.series(name, extra...)...)
	x.value(v)
}

func (x *expo) gauge(name, help string, v float64) {
	x.family(name, "gauge", help)
	x.sample(name, v)
}

func (x *expo) counter(name, help string, v uint64) {
	x.family(name, "counter", help)
	x.sample(name, float64(v))
}

// histogram writes h; its series names never change for a server, so they
// are rendered once and kept in h.
func (x *expo) histogram(name, help string, h *histogram) {
	x.family(name, "histogram", help)
	if h.series == nil {
		for _, b := range h.bounds {
			h.series = append(h.series, x.series(name+"_bucket", "le", formatFloat(b)))
		}
		h.series = append(h.series, x.series(name+"_bucket", "le", "+Inf"),
			x.series(name+"_count"), x.series(name+"_sum"))
	}
	var cum uint64
	for i := range h.bounds {
		cum += h.counts[i]
		x.buf = append(x.buf, h.series[i]...)
		x.value(float64(cum))
	}
	n := len(h.bounds)
	x.buf = append(x.buf, h.series[n]...)
	x.value(float64(h.count))
	x.buf = append(x.buf, h.series[n+1]...)
	x.value(float64(h.count))
	x.buf = append(x.buf, h.series[n+2]...)
	x.value(h.sum)
}

// writeMetrics renders /metrics in v1 (default) or v0 naming, or SGLang's.
func (e *Engine) writeMetrics() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	cfg := e.cfg
	if cfg.Engine == EngineSGLang {
		return e.writeSGLangMetricsLocked()
	}
	x := &expo{buf: make([]byte, 0, e.lastSize+1024), labels: []string{"model_name=" + quoteLabel(cfg.Model)}}
	if !cfg.MetricsV0 {
		x.labels = append(x.labels, `engine="0"`)
	}
	m := &e.m
	usage := e.kv.usage()

	if cfg.MetricsV0 {
		x.gauge("vllm:num_requests_running", "Number of requests currently running on GPU.", float64(len(e.running)))
		x.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(len(e.waiting)))
		x.gauge("vllm:num_requests_swapped", "Number of requests swapped to CPU.", 0)
		x.gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", usage)
		x.gauge("vllm:cpu_cache_usage_perc", "CPU KV-cache usage. 1 means 100 percent usage.", 0)
		hit := 0.0
		if m.prefixQueries > 0 {
			hit = float64(m.prefixHits) / float64(m.prefixQueries)
		}
		x.gauge("vllm:gpu_prefix_cache_hit_rate", "GPU prefix cache block hit rate.", hit)
		x.gauge("vllm:cpu_prefix_cache_hit_rate", "CPU prefix cache block hit rate.", 0)
	} else {
		x.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", float64(len(e.running)))
		x.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(len(e.waiting)))
		x.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", usage)
		x.counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.", m.prefixQueries)
		x.counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", m.prefixHits)
	}
	x.counter("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.", m.preemptions)
	x.counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", m.promptTokens)
	x.counter("vllm:generation_tokens_total", "Number of generation tokens processed.", m.generationTokens)
	if cfg.MetricsV0 {
		x.counter("vllm:tokens_total", "Number of prefill plus generation tokens processed.", m.promptTokens+m.generationTokens)
	}
	x.family("vllm:request_success_total", "counter", "Count of successfully processed requests.")
	for _, r := range []string{FinishStop, FinishLength, FinishAbort} {
		if v, ok := m.success[r]; ok {
			x.sample("vllm:request_success_total", float64(v), "finished_reason", r)
		}
	}
	x.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", &m.promptLen)
	x.histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", &m.genLen)
	x.histogram("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", &m.iterationTokens)
	x.histogram("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", &m.maxGen)
	x.histogram("vllm:request_params_n", "Histogram of the n request parameter.", &m.paramsN)
	x.histogram("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", &m.maxTokens)
	x.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", &m.ttft)
	if cfg.MetricsV0 {
		x.histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", &m.itl)
	} else {
		x.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", &m.itl)
		x.histogram("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", &m.tpotReq)
	}
	x.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", &m.e2e)
	x.histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", &m.queue)
	x.histogram("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", &m.inference)
	x.histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", &m.prefill)
	x.histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", &m.decode)

	if len(cfg.LoRAModules) > 0 {
		// No model_name label: vLLM declares this gauge with the three
		// LoRA labels only.
		common := x.labels
		x.labels = nil
		x.family("vllm:lora_requests_info", "gauge", "Running stats on lora requests.")
		keys := make([]string, 0, len(e.loraInfo))
		for k := range e.loraInfo {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			running, waiting, _ := strings.Cut(k, "\x00")
			x.sample("vllm:lora_requests_info", e.loraInfo[k], "max_lora", strconv.Itoa(cfg.MaxLoRAs),
				"running_lora_adapters", running, "waiting_lora_adapters", waiting)
		}
		x.labels = common
	}

	// cache_config_info: an info gauge set to 1 whose labels are the cache
	// config (engine added in v1, no model_name).
	info := []string{
		"block_size", strconv.Itoa(cfg.BlockSize),
		"cache_dtype", "auto",
		"calculate_kv_scales", "False",
		"cpu_offload_gb", "0",
		"enable_prefix_caching", pyBool(!cfg.DisablePrefixCaching),
		"gpu_memory_utilization", "0.9",
		"is_attention_free", "False",
		"num_cpu_blocks", "None",
		"num_gpu_blocks", strconv.Itoa(cfg.NumGPUBlocks),
		"num_gpu_blocks_override", "None",
		"prefix_caching_hash_algo", "builtin",
		"sliding_window", "None",
		"swap_space", "4",
		"swap_space_bytes", "4294967296",
	}
	if !cfg.MetricsV0 {
		info = append(info, "engine", "0")
	}
	x.labels = nil
	x.family("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig")
	x.sample("vllm:cache_config_info", 1, info...)
	e.lastSize = len(x.buf)
	return x.buf
}

// writeSGLangMetricsLocked renders the SGLang series the picker reads and a
// few neighbours, named, typed and labelled as SGLang's collectors declare
// them (sgl-project/sglang python/sglang/srt/metrics/collector.py:
// SchedulerMetricsCollector gauges labelled model_name, engine_type,
// tp_rank, pp_rank as scheduler_metrics_mixin.py init_metrics sets them;
// TokenizerMetricsCollector counters and histograms labelled model_name).
// Unlike SGLang, which sets its scheduler gauges when it logs a batch
// (every --decode-log-interval decode batches), the simulator reports the
// current state at every scrape.
func (e *Engine) writeSGLangMetricsLocked() []byte {
	cfg := e.cfg
	m := &e.m
	x := &expo{buf: make([]byte, 0, e.lastSize+1024), labels: []string{"model_name=" + quoteLabel(cfg.Model),
		`engine_type="unified"`, `pp_rank="0"`, `tp_rank="0"`}}
	total := cfg.NumGPUBlocks * cfg.BlockSize
	usage := e.kv.usage()
	x.gauge("sglang:num_running_reqs", "The number of running requests.", float64(len(e.running)))
	x.gauge("sglang:num_used_tokens", "The number of used tokens.", math.Round(usage*float64(total)))
	x.gauge("sglang:token_usage", "The token usage.", usage)
	x.gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", float64(len(e.waiting)))
	x.gauge("sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.", float64(total))

	x.labels = []string{"model_name=" + quoteLabel(cfg.Model)}
	x.counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", m.promptTokens)
	x.counter("sglang:generation_tokens_total", "Number of generation tokens processed.", m.generationTokens)
	if m.prefixHits > 0 { // SGLang increments it only by positive amounts
		x.counter("sglang:cached_tokens_total", "Number of cached prompt tokens.", m.prefixHits)
	}
	var finished uint64
	for _, v := range m.success {
		finished += v
	}
	x.counter("sglang:num_requests_total", "Number of requests processed.", finished)
	x.histogram("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", &m.ttft)
	x.histogram("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", &m.e2e)
	e.lastSize = len(x.buf)
	return x.buf
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}
