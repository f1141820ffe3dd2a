package scrape

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The vLLM series the picker reads (both generations' names; references
// section 3, vllm/v1/metrics/loggers.py and vllm/engine/metrics.py).
const (
	mRunning       = "vllm:num_requests_running"
	mWaiting       = "vllm:num_requests_waiting"
	mSwapped       = "vllm:num_requests_swapped"
	mKVUsage       = "vllm:kv_cache_usage_perc"
	mGPUUsage      = "vllm:gpu_cache_usage_perc"
	mLoRA          = "vllm:lora_requests_info"
	mCacheConfig   = "vllm:cache_config_info"
	mPrefixQueries = "vllm:prefix_cache_queries_total"
	mPrefixHits    = "vllm:prefix_cache_hits_total"
	mGPUPrefixQ    = "vllm:gpu_prefix_cache_queries_total"
	mGPUPrefixH    = "vllm:gpu_prefix_cache_hits_total"
	// The TTFT histogram's count: requests that have had their first
	// token (their prefill is done).
	mFirstTokens = "vllm:time_to_first_token_seconds_count"
	// The per-step token histogram's count: engine steps taken (v1,
	// vllm/v1/metrics/loggers.py histogram_iteration_tokens, observed once
	// per step); and the prefill tokens computed. Their rates give a step's
	// duration and a prefill token's cost, in the picker's own clock.
	mSteps        = "vllm:iteration_tokens_total_count"
	mPromptTokens = "vllm:prompt_tokens_total"
)

// The SGLang series the picker reads. Every name is declared in
// sgl-project/sglang python/sglang/srt/metrics/collector.py (moved to
// python/sglang/srt/observability/metrics_collector.py in later versions,
// same names): the scheduler gauges in SchedulerMetricsCollector, the
// counters and the TTFT histogram in TokenizerMetricsCollector.
const (
	// Gauge "The number of running requests." (SchedulerStats.num_running_reqs).
	sgRunning = "sglang:num_running_reqs"
	// Gauge "The number of requests in the waiting queue." (len(waiting_queue)).
	sgWaiting = "sglang:num_queue_reqs"
	// Gauge in [0,1]: used / max_total_num_tokens of the KV pool
	// (python/sglang/srt/managers/scheduler_metrics_mixin.py, _get_token_info).
	sgKVUsage = "sglang:token_usage"
	// Gauge "Maximum total number of tokens in the KV cache pool."
	sgMaxTokens = "sglang:max_total_num_tokens"
	// Counters in tokens, incremented per finished request
	// (observe_one_finished_request): every prompt token, and the prompt
	// tokens served from the radix cache (only when > 0, so the series can
	// be absent).
	sgPromptTokens = "sglang:prompt_tokens_total"
	sgCachedTokens = "sglang:cached_tokens_total"
	// Histogram sglang:time_to_first_token_seconds: its count.
	sgFirstTokens = "sglang:time_to_first_token_seconds_count"
)

// The Triton TensorRT-LLM backend's series: two gauge families whose
// request_type / kv_cache_block_type label picks the quantity, declared in
// NVIDIA/TensorRT-LLM
// triton_backend/inflight_batcher_llm/src/custom_metrics_reporter/custom_metrics_reporter.cc
// (request_type: active, max, scheduled, context, waiting; kv_cache_block_type:
// max, free, used, tokens_per, reused, fraction; plus model and version labels).
// The older triton-inference-server/tensorrtllm_backend exported neither
// "waiting" nor "fraction": such a page is incomplete.
const (
	ttRequests = "nv_trt_llm_request_metrics"
	ttKVBlocks = "nv_trt_llm_kv_cache_block_metrics"
)

// engineWanted is every series each engine's mapping reads.
var engineWanted = map[Engine]map[string]bool{
	EngineVLLM: {mRunning: true, mWaiting: true, mSwapped: true, mKVUsage: true, mGPUUsage: true, mLoRA: true,
		mCacheConfig: true, mPrefixQueries: true, mPrefixHits: true, mGPUPrefixQ: true, mGPUPrefixH: true,
		mFirstTokens: true, mSteps: true, mPromptTokens: true},
	EngineSGLang: {sgRunning: true, sgWaiting: true, sgKVUsage: true, sgMaxTokens: true, sgPromptTokens: true,
		sgCachedTokens: true, sgFirstTokens: true},
	EngineTritonTRTLLM: {ttRequests: true, ttKVBlocks: true},
}

// engineCore describes, for errors, the gauges without which a page of
// that engine would look idle.
var engineCore = map[Engine]string{
	EngineVLLM:         "vllm:num_requests_running/waiting or a KV cache usage gauge",
	EngineSGLang:       sgRunning + ", " + sgWaiting + " or " + sgKVUsage,
	EngineTritonTRTLLM: ttRequests + `{request_type="waiting"|"scheduled"} or ` + ttKVBlocks + `{kv_cache_block_type="fraction"}`,
}

// wanted is the union of engineWanted: what SelectLines keeps.
var wanted = func() map[string]bool {
	u := map[string]bool{}
	for _, names := range engineWanted {
		for n := range names {
			u[n] = true
		}
	}
	return u
}()

// Wanted reports whether the picker reads the series named name (for any
// engine).
func Wanted(name string) bool { return wanted[name] }

// Limits on what one page may put into a snapshot.
const (
	maxAdapters   = 64
	maxAdapterLen = 253
)

// ErrIncomplete is returned (wrapped, naming the engine's gauges) for a page
// that parses but lacks the core gauges (a truncated or foreign page):
// publishing it would show an idle endpoint.
var ErrIncomplete = errors.New("page lacks the core gauges")

func incomplete(e Engine) error {
	if e == EngineAuto {
		return fmt.Errorf("%w: no vllm:, sglang: or nv_trt_llm_ series to detect the engine from", ErrIncomplete)
	}
	return fmt.Errorf("%w: %s page without %s", ErrIncomplete, e, engineCore[e])
}

// Map parses a Prometheus text page of the given engine (EngineAuto: detect
// it from the page) and maps it to a Snapshot stamped now.
//
// Only sample lines of the series above reach the parser (SelectLines): a
// vLLM page is mostly histograms the picker never reads, and skipping them
// before parsing is what keeps a 30 KiB page well under the CPU budget (see
// docs/performance.md (picker-svc)). Comment lines are dropped too, so every kept
// series parses as untyped; the mapping does not depend on types.
func Map(page []byte, engine Engine, now time.Time) (Snapshot, error) {
	buf := getBuf()
	defer putBuf(buf)
	*buf = SelectLines((*buf)[:0], page)
	return mapSelected(*buf, engine, now, len(page))
}

func mapSelected(sel []byte, engine Engine, now time.Time, pageBytes int) (Snapshot, error) {
	s := Snapshot{ScrapedAt: now, PageBytes: pageBytes}
	if engine == "" {
		engine = EngineAuto
	}
	if len(sel) == 0 {
		return s, incomplete(engine)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(sel))
	if err != nil {
		return s, fmt.Errorf("parse: %w", err)
	}
	if engine == EngineAuto {
		engine = detect(func(yield func(string) bool) {
			for n := range fams {
				if !yield(n) {
					return
				}
			}
		})
		if engine == "" {
			return s, incomplete(EngineAuto)
		}
	}
	names, ok := engineWanted[engine]
	if !ok {
		return s, fmt.Errorf("unknown engine %q", engine)
	}
	// Only this engine's series are checked: a stray series of another
	// dialect on the page is not the endpoint's state.
	for name, f := range fams {
		if !names[name] {
			continue
		}
		for _, m := range f.Metric {
			if v := value(m); math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return s, fmt.Errorf("%s has value %v", name, v)
			}
		}
	}
	s.Engine = engine
	switch engine {
	case EngineVLLM:
		err = mapVLLM(&s, fams)
	case EngineSGLang:
		err = mapSGLang(&s, fams)
	case EngineTritonTRTLLM:
		err = mapTritonTRTLLM(&s, fams)
	}
	if err != nil {
		return s, err
	}
	for _, v := range []float64{s.Running, s.Waiting, s.Swapped, s.PrefixQueries, s.PrefixHits, s.FirstTokens, s.Steps, s.PromptTokens} {
		if math.IsInf(v, 0) { // sums of huge values
			return s, errors.New("counts overflow")
		}
	}
	s.KVCacheUsage = min(s.KVCacheUsage, 1)
	return s, nil
}

func mapVLLM(s *Snapshot, fams map[string]*dto.MetricFamily) error {
	var haveRun, haveWait, haveKV, haveGPU bool
	var kv, gpu float64
	// The newest vllm:lora_requests_info series, all of them when several
	// tie (see newestLoRA); mapped after the loop, so a bad label on an
	// older series cannot fail the page, whatever the page order.
	var lora []*dto.Metric
	bestLoRA := math.Inf(-1)
	for name, f := range fams {
		if !engineWanted[EngineVLLM][name] {
			continue
		}
		for _, m := range f.Metric {
			v := value(m)
			switch name {
			case mRunning:
				s.Running += v
				haveRun = true
				if s.BaseModel == "" {
					s.BaseModel = baseModel(m)
				}
			case mWaiting:
				s.Waiting += v
				haveWait = true
			case mSwapped:
				s.Swapped += v
			case mKVUsage:
				kv = max(kv, v)
				haveKV = true
			case mGPUUsage:
				gpu = max(gpu, v)
				haveGPU = true
			case mPrefixQueries, mGPUPrefixQ:
				s.PrefixQueries += v
			case mPrefixHits, mGPUPrefixH:
				s.PrefixHits += v
			case mFirstTokens:
				s.FirstTokens += v
				s.HasFirstTokens = true
			case mSteps:
				// Data-parallel engines step side by side: the busiest
				// one's count is the pod's step clock.
				s.Steps = max(s.Steps, v)
				s.HasSteps = true
			case mPromptTokens:
				s.PromptTokens += v
			case mLoRA:
				switch {
				case v > bestLoRA:
					bestLoRA, lora = v, append(lora[:0], m)
				case v == bestLoRA:
					lora = append(lora, m)
				}
			case mCacheConfig:
				for _, l := range m.Label {
					switch l.GetName() {
					case "block_size":
						s.BlockSize, _ = strconv.Atoi(l.GetValue())
					case "num_gpu_blocks":
						s.NumGPUBlocks, _ = strconv.Atoi(l.GetValue())
					}
				}
			}
		}
	}
	if !haveRun || !haveWait || !(haveKV || haveGPU) {
		return incomplete(EngineVLLM)
	}
	if err := mapLoRA(s, lora); err != nil {
		return err
	}
	// The newer name wins when both are exported (0.9.2 .. 0.11).
	s.KVCacheUsage = gpu
	if haveKV {
		s.KVCacheUsage = kv
	}
	return nil
}

// baseModel is the model_name label of m (the served model name vLLM and
// SGLang both put there), "" when absent or too long.
func baseModel(m *dto.Metric) string {
	for _, l := range m.Label {
		if l.GetName() == "model_name" && len(l.GetValue()) <= maxAdapterLen {
			return l.GetValue()
		}
	}
	return ""
}

// mapSGLang maps an SGLang page. Only the scheduler of attention-TP rank 0
// of each data-parallel group exports the scheduler gauges unless
// --enable-metrics-for-all-schedulers is set (server_args.py; the gauges
// carry tp_rank, pp_rank and, with data parallelism, dp_rank labels,
// scheduler_metrics_mixin.py init_metrics). With that flag every TP rank
// of one group reports the same queue, so queues are summed over dp_rank
// groups and the largest series is taken inside a group; KV usage is the
// highest series, like vLLM's engines.
//
// SGLang sets these gauges when it logs a prefill batch, every
// --decode-log-interval decode batches (default 40) and every 30 s when
// idle, not every step: the page lags vLLM's, and until the first log
// after start it has no scheduler gauges at all (an incomplete scrape).
//
// No LoRA state: SGLang exports slot counts (sglang:lora_pool_slots_*) but
// not which adapters are loaded, so MaxLoRA stays 0 and LoRA affinity
// treats the pod as one without LoRA (every pod scores alike).
// sglang:cache_hit_rate is not read: it is the last prefill batch's rate,
// and decode-batch logs set it to 0.
func mapSGLang(s *Snapshot, fams map[string]*dto.MetricFamily) error {
	running, haveRun := perDPRank(fams[sgRunning])
	waiting, haveWait := perDPRank(fams[sgWaiting])
	if !haveRun || !haveWait || fams[sgKVUsage] == nil || len(fams[sgKVUsage].Metric) == 0 {
		return incomplete(EngineSGLang)
	}
	s.Running, s.Waiting = running, waiting
	s.BaseModel = baseModel(fams[sgRunning].Metric[0])
	for _, m := range fams[sgKVUsage].Metric {
		s.KVCacheUsage = max(s.KVCacheUsage, value(m))
	}
	// The KV pool in tokens (page_size 1 by default): one-token blocks,
	// so that NumGPUBlocks*BlockSize is the pool's tokens as for vLLM. Per
	// data-parallel rank; the largest.
	if f := fams[sgMaxTokens]; f != nil {
		var tokens float64
		for _, m := range f.Metric {
			tokens = max(tokens, value(m))
		}
		if tokens >= 1 && tokens <= 1<<40 {
			s.BlockSize, s.NumGPUBlocks = 1, int(tokens)
		}
	}
	s.PrefixQueries = sum(fams[sgPromptTokens])
	s.PrefixHits = sum(fams[sgCachedTokens])
	if f := fams[sgFirstTokens]; f != nil && len(f.Metric) > 0 {
		s.FirstTokens, s.HasFirstTokens = sum(f), true
	}
	return nil
}

// perDPRank sums f's series over their dp_rank label values, taking the
// largest series within one value (see mapSGLang); ok is false without
// series.
func perDPRank(f *dto.MetricFamily) (total float64, ok bool) {
	if f == nil || len(f.Metric) == 0 {
		return 0, false
	}
	groups := map[string]float64{}
	for _, m := range f.Metric {
		rank := ""
		for _, l := range m.Label {
			if l.GetName() == "dp_rank" {
				rank = l.GetValue()
			}
		}
		groups[rank] = max(groups[rank], value(m))
	}
	for _, v := range groups {
		total += v
	}
	return total, true
}

func sum(f *dto.MetricFamily) float64 {
	if f == nil {
		return 0
	}
	var t float64
	for _, m := range f.Metric {
		t += value(m)
	}
	return t
}

// mapTritonTRTLLM maps a Triton page with TensorRT-LLM models (several
// models on one server: queues summed, KV the highest). Waiting is
// request_type="waiting", running "scheduled" (the requests of the current
// iteration's batch), as llm-d-router's built-in triton-tensorrt-llm
// mapping reads them (pkg/epp/framework/plugins/datalayer/extractor/metrics,
// defaultEngineConfigs); KV usage is kv_cache_block_type="fraction", the
// block size "tokens_per" and the pool "max" blocks. No model name (the
// model label is Triton's model, e.g. "tensorrt_llm"), LoRA, prefix or TTFT
// series.
func mapTritonTRTLLM(s *Snapshot, fams map[string]*dto.MetricFamily) error {
	var haveRun, haveWait, haveKV bool
	if f := fams[ttRequests]; f != nil {
		for _, m := range f.Metric {
			switch label(m, "request_type") {
			case "waiting":
				s.Waiting += value(m)
				haveWait = true
			case "scheduled":
				s.Running += value(m)
				haveRun = true
			}
		}
	}
	if f := fams[ttKVBlocks]; f != nil {
		for _, m := range f.Metric {
			v := value(m)
			switch label(m, "kv_cache_block_type") {
			case "fraction":
				s.KVCacheUsage = max(s.KVCacheUsage, v)
				haveKV = true
			case "tokens_per":
				if v >= 1 && v <= 1<<20 {
					s.BlockSize = max(s.BlockSize, int(v))
				}
			case "max":
				if v >= 1 && v <= 1<<40 {
					s.NumGPUBlocks = max(s.NumGPUBlocks, int(v))
				}
			}
		}
	}
	if !haveRun || !haveWait || !haveKV {
		return incomplete(EngineTritonTRTLLM)
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// mapLoRA maps the newest vllm:lora_requests_info series. The value of each
// series is the time its label set was last current: vLLM's
// PrometheusStatLogger.record sets the series for the current
// (max_lora, running, waiting) labels with set_to_current_time() every
// iteration, and old label sets stay exported (vllm/v1/metrics/loggers.py).
// vLLM's float seconds practically never tie, but an exporter that stamps
// whole seconds (llm-d-inference-sim's reportLoras:
// Set(float64(time.Now().Unix()))) gives every label set of the same second
// the same value, and which of them is current is then unknowable. So tied
// series are merged: running and waiting adapters are the unions (in page
// order, without repeats), which keeps an adapter that may be running from
// scoring as absent; at worst one that stopped within that second still
// counts as running, and vLLM keeps a stopped adapter resident until
// another one needs its slot. max_lora is the largest tied value: vLLM
// exports one constant (lora_config.max_loras), so disagreement is exporter
// noise, and 0 would switch LoRA affinity off for the pod.
func mapLoRA(s *Snapshot, newest []*dto.Metric) error {
	s.MaxLoRA, s.RunningAdapters, s.WaitingAdapters = 0, nil, nil
	// Sets for the union, only when there is one to make: a hostile 1 MiB
	// page of tied series costs ~64 lookups a series rather than 64x64
	// compares.
	var running, waiting map[string]struct{}
	if len(newest) > 1 {
		running, waiting = map[string]struct{}{}, map[string]struct{}{}
	}
	for _, m := range newest {
		for _, l := range m.Label {
			var err error
			switch l.GetName() {
			case "max_lora":
				n, perr := strconv.Atoi(l.GetValue())
				if perr != nil || n < 0 {
					return fmt.Errorf("%s: max_lora=%q is not a count", mLoRA, l.GetValue())
				}
				s.MaxLoRA = max(s.MaxLoRA, n)
			case "running_lora_adapters":
				s.RunningAdapters, err = addAdapters(s.RunningAdapters, running, l.GetValue())
			case "waiting_lora_adapters":
				s.WaitingAdapters, err = addAdapters(s.WaitingAdapters, waiting, l.GetValue())
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// addAdapters appends to list the adapters of one comma-joined label value
// that are not in seen yet (seen nil: a single series, appended as is). The
// limit applies to the merged list.
func addAdapters(list []string, seen map[string]struct{}, v string) ([]string, error) {
	names, err := adapters(v)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if seen != nil {
			if _, dup := seen[n]; dup {
				continue
			}
			seen[n] = struct{}{}
		}
		list = append(list, n)
	}
	if len(list) > maxAdapters {
		return nil, fmt.Errorf("%s lists %d adapters, the limit is %d", mLoRA, len(list), maxAdapters)
	}
	return list, nil
}

func adapters(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > maxAdapters {
		return nil, fmt.Errorf("%s lists %d adapters, the limit is %d", mLoRA, len(parts), maxAdapters)
	}
	out := parts[:0]
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if len(p) > maxAdapterLen {
			return nil, fmt.Errorf("%s: adapter name of %d bytes", mLoRA, len(p))
		}
		out = append(out, p)
	}
	return out, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return math.NaN()
}

// SelectLines appends to dst the sample lines of page whose metric name is
// Wanted, each ending in '\n'. A line's name ends at '{', ' ' or '\t';
// comments are dropped. Exported for parserbench, which times the parsers on
// what it keeps.
func SelectLines(dst, page []byte) []byte {
	for len(page) > 0 {
		line := page
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i+1], page[i+1:]
		} else {
			page = nil
		}
		// Cheap reject: every wanted name starts with one of the engines'
		// prefixes (vllm:, sglang:, nv_trt_llm_).
		if len(line) < 6 || (line[0] != 'v' && line[0] != 's' && line[0] != 'n') {
			continue
		}
		end := bytes.IndexAny(line, "{ \t")
		if end < 0 || !wanted[string(line[:end])] { // no allocation: map lookup on string(bytes)
			continue
		}
		dst = append(dst, line...)
		if line[len(line)-1] != '\n' {
			dst = append(dst, '\n')
		}
	}
	return dst
}
