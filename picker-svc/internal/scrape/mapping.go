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

// The vLLM series the picker reads (both generations' names).
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
)

var wanted = map[string]bool{
	mRunning: true, mWaiting: true, mSwapped: true, mKVUsage: true, mGPUUsage: true, mLoRA: true,
	mCacheConfig: true, mPrefixQueries: true, mPrefixHits: true, mGPUPrefixQ: true, mGPUPrefixH: true,
	mFirstTokens: true,
}

// Wanted reports whether the picker reads the series named name.
func Wanted(name string) bool { return wanted[name] }

// Limits on what one page may put into a snapshot.
const (
	maxAdapters   = 64
	maxAdapterLen = 253
)

// ErrIncomplete is returned for a page that parses but lacks the core gauges
// (a truncated or foreign page): publishing it would show an idle endpoint.
var ErrIncomplete = errors.New("page lacks vllm:num_requests_running/waiting or a KV cache usage gauge")

// Map parses a Prometheus text page and maps it to a Snapshot stamped now.
//
// Only sample lines of the series above reach the parser (SelectLines): a
// vLLM page is mostly histograms the picker never reads, and skipping them
// before parsing is what keeps a 30 KiB page well under the CPU budget (see
// docs/performance.md (picker-svc)). Comment lines are dropped too, so every kept
// series parses as untyped; the mapping does not depend on types.
func Map(page []byte, now time.Time) (Snapshot, error) {
	buf := getBuf()
	defer putBuf(buf)
	*buf = SelectLines((*buf)[:0], page)
	return mapSelected(*buf, now, len(page))
}

func mapSelected(sel []byte, now time.Time, pageBytes int) (Snapshot, error) {
	s := Snapshot{ScrapedAt: now, PageBytes: pageBytes}
	if len(sel) == 0 {
		return s, ErrIncomplete
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(sel))
	if err != nil {
		return s, fmt.Errorf("parse: %w", err)
	}
	var haveRun, haveWait, haveKV, haveGPU bool
	var kv, gpu float64
	// The newest vllm:lora_requests_info series, all of them when several
	// tie (see newestLoRA); mapped after the loop, so a bad label on an
	// older series cannot fail the page, whatever the page order.
	var lora []*dto.Metric
	bestLoRA := math.Inf(-1)
	for name, f := range fams {
		if !wanted[name] {
			continue
		}
		for _, m := range f.Metric {
			v := value(m)
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return s, fmt.Errorf("%s has value %v", name, v)
			}
			switch name {
			case mRunning:
				s.Running += v
				haveRun = true
				for _, l := range m.Label {
					if l.GetName() == "model_name" && s.BaseModel == "" && len(l.GetValue()) <= maxAdapterLen {
						s.BaseModel = l.GetValue()
					}
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
		return s, ErrIncomplete
	}
	if err := mapLoRA(&s, lora); err != nil {
		return s, err
	}
	for _, v := range []float64{s.Running, s.Waiting, s.Swapped, s.PrefixQueries, s.PrefixHits, s.FirstTokens} {
		if math.IsInf(v, 0) { // sums of huge values
			return s, errors.New("counts overflow")
		}
	}
	// The newer name wins when both are exported (0.9.2 .. 0.11).
	s.KVCacheUsage = gpu
	if haveKV {
		s.KVCacheUsage = kv
	}
	s.KVCacheUsage = min(s.KVCacheUsage, 1)
	return s, nil
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
		// Cheap reject: every wanted name starts with "vllm:".
		if len(line) < 6 || line[0] != 'v' || !bytes.HasPrefix(line, []byte("vllm:")) {
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
