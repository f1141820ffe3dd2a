// Package stats names the filter's metrics and bounds their label values.
//
// Envoy has no labels: a wasm metric is a flat stat name, and labels are
// carried inside it as segments `<tag>=.=<value>;.;` (the form Istio's
// extraStatTags use) that a stats_config.stats_tags regex pulls back out.
// Segments come first and the metric name last, so that once every segment
// is extracted what remains is exactly the Prometheus name:
//
//	model=.=llama;.;target_model=.=sql-lora;.;asm_llm_proxy_prompt_tokens
//	  -> asm_llm_proxy_prompt_tokens{model="llama",target_model="sql-lora"}
//
// Label values come from clients, so they are sanitised and bounded
// (internal/labelguard) before they become part of a stat name.
package stats

import "strings"

// Prefix is shared by every metric the filter defines.
const Prefix = "asm_llm_proxy_"

// Metric names, as they appear on Envoy's /stats/prometheus.
const (
	PromptTokens     = Prefix + "prompt_tokens"
	CompletionTokens = Prefix + "completion_tokens"
	Requests         = Prefix + "requests_total"
	TTFBMillis       = Prefix + "time_to_first_byte_ms"
	DurationMillis   = Prefix + "request_duration_ms"
	ParseErrors      = Prefix + "parse_errors_total"
	OversizeBodies   = Prefix + "oversize_bodies_total"
	DeepBodies       = Prefix + "too_deep_bodies_total"
	UsageMissing     = Prefix + "usage_missing_total"
	LabelOverflow    = Prefix + "label_overflow_total"
	FilterErrors     = Prefix + "filter_errors_total"
	Picks            = Prefix + "picks_total"
	PickerErrors     = Prefix + "picker_errors_total"
	PickMillis       = Prefix + "pick_latency_ms"
	// LocalResolutions counts requests whose model the filter resolved
	// with its kept resolution table, no fresh pick having resolved it
	// (outcome: filter/resolution Outcome*).
	LocalResolutions = Prefix + "local_resolutions_total"
	// ResolutionFetches counts fetches of the resolution table (outcome:
	// filter/resolution Fetch*).
	ResolutionFetches = Prefix + "resolution_fetches_total"
)

// Tag names. No tag name may end with another one followed by "=" unless
// the extraction regexes anchor them (see TagRegex): "target_model" ends in
// "model", which is why TagRegex anchors every tag at a segment boundary.
const (
	TagModel         = "model"
	TagTargetModel   = "target_model"
	TagResponseClass = "response_class"
	TagPhase         = "phase"
	TagReason        = "reason"
	TagOutcome       = "outcome"
)

// AllTags lists every tag the filter emits, for generating stats_tags.
var AllTags = []string{TagModel, TagTargetModel, TagResponseClass, TagPhase, TagReason, TagOutcome}

// TagRegex is the stats_tags regex that extracts tag from a stat name: the
// first group is removed from the name, the second is the value. The segment
// must start the name or follow "." (Envoy's "wasmcustom." namespace) or ";"
// (the previous segment), so "model" never matches inside "target_model".
func TagRegex(tag string) string {
	return `(?:^|[.;])(` + tag + `=\.=(.*?);\.;)`
}

// Tag is one label of a stat name.
type Tag struct{ Name, Value string }

// Name builds the stat name of metric with tags, in the order given.
func Name(metric string, tags ...Tag) string {
	n := len(metric)
	for _, t := range tags {
		n += len(t.Name) + len(t.Value) + 6
	}
	var b strings.Builder
	b.Grow(n)
	for _, t := range tags {
		b.WriteString(t.Name)
		b.WriteString("=.=")
		b.WriteString(t.Value)
		b.WriteString(";.;")
	}
	b.WriteString(metric)
	return b.String()
}

// ResponseClass maps an HTTP status to a bounded label value.
func ResponseClass(status int) string {
	switch {
	case status >= 200 && status < 300:
		return "2xx"
	case status >= 300 && status < 400:
		return "3xx"
	case status >= 400 && status < 500:
		return "4xx"
	case status >= 500 && status < 600:
		return "5xx"
	}
	return "none"
}
