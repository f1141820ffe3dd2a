// Package scrape polls each model server's /metrics (vLLM, SGLang or Triton
// TensorRT-LLM; see Engine), maps the page to one Snapshot and publishes it with an atomic pointer swap, so the scheduler
// reads state without ever blocking a scraper (or being blocked by one).
package scrape

import (
	"strconv"
	"time"
)

// Snapshot is the state of one endpoint as of one good scrape, in vLLM's
// terms whatever the engine (mapping.go says what each engine fills in). It
// is immutable once published.
type Snapshot struct {
	// Engine is the dialect the page was read as (detected when the
	// endpoint's engine is EngineAuto).
	Engine Engine

	// Queue and batch: sums over engines (data-parallel ranks).
	Waiting float64
	Running float64
	Swapped float64 // v0 only
	// KVCacheUsage in [0,1]: vllm:kv_cache_usage_perc, else
	// vllm:gpu_cache_usage_perc; the highest engine's value.
	KVCacheUsage float64

	// BaseModel is the model_name label vLLM exports (the served base
	// model); "" when absent.
	BaseModel string

	// LoRA state from the vllm:lora_requests_info series with the largest
	// value (its value is a timestamp: the newest label set wins; series
	// tied at that value are merged, see mapLoRA).
	MaxLoRA         int
	RunningAdapters []string
	WaitingAdapters []string

	// cache_config_info; 0 when absent.
	BlockSize    int
	NumGPUBlocks int

	// Prefix-cache counters in tokens (v1 >= 0.9, or 0.8's gpu_prefix_*).
	PrefixQueries float64
	PrefixHits    float64

	// FirstTokens counts requests that got their first token (the count of
	// vllm:time_to_first_token_seconds); HasFirstTokens is false when the
	// page lacks it.
	FirstTokens    float64
	HasFirstTokens bool

	// Steps counts engine steps (the count of vllm:iteration_tokens_total;
	// the busiest engine's); HasSteps is false when the page lacks it.
	// PromptTokens counts prefill tokens computed (vllm:prompt_tokens_total).
	// Between two scrapes they give the pod's step time and the cost of a
	// prefill token (the predicted_ttft scorer).
	Steps        float64
	HasSteps     bool
	PromptTokens float64

	// ScrapedAt is when the page was read (the picker's clock).
	ScrapedAt time.Time
	// RequestedAt is when the scrape was sent: the page reflects requests
	// the pod admitted before about then. Zero for snapshots not scraped.
	RequestedAt time.Time
	// PageBytes is the size of the page this snapshot came from.
	PageBytes int
}

// AdapterState is where a LoRA adapter stands on an endpoint.
type AdapterState uint8

// The adapter states, as vllm:lora_requests_info reports them.
const (
	AdapterAbsent  AdapterState = iota // in neither list
	AdapterRunning                     // in running_lora_adapters: resident and serving
	AdapterWaiting                     // in waiting_lora_adapters: queued, being loaded
)

func (a AdapterState) String() string {
	switch a {
	case AdapterAbsent:
		return "absent"
	case AdapterRunning:
		return "running"
	case AdapterWaiting:
		return "waiting"
	}
	return "AdapterState(" + strconv.Itoa(int(a)) + ")"
}

// Adapter reports where the adapter name stands on the endpoint; one both
// running and waiting is running.
func (s *Snapshot) Adapter(name string) AdapterState {
	for _, a := range s.RunningAdapters {
		if a == name {
			return AdapterRunning
		}
	}
	for _, a := range s.WaitingAdapters {
		if a == name {
			return AdapterWaiting
		}
	}
	return AdapterAbsent
}

// ActiveAdapters is the number of distinct adapters running or waiting.
func (s *Snapshot) ActiveAdapters() int {
	n := len(s.RunningAdapters)
	for _, w := range s.WaitingAdapters {
		dup := false
		for _, r := range s.RunningAdapters {
			if r == w {
				dup = true
				break
			}
		}
		if !dup {
			n++
		}
	}
	return n
}
