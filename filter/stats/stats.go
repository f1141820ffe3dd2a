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

import (
	"strings"

	"github.com/meshllm/meshllm/internal/metricnames"
)

// Prefix is shared by every metric the filter defines.
const Prefix = metricnames.Prefix

// Metric names, as they appear on Envoy's /stats/prometheus. They are
// internal/metricnames' (picker-svc emits the same series on the ext_proc
// path); here under the names the filter has always used.
const (
	PromptTokens     = metricnames.PromptTokens
	CompletionTokens = metricnames.CompletionTokens
	Requests         = metricnames.Requests
	TTFBMillis       = metricnames.TTFBMillis
	DurationMillis   = metricnames.DurationMillis
	ParseErrors      = metricnames.ParseErrors
	OversizeBodies   = metricnames.OversizeBodies
	DeepBodies       = metricnames.DeepBodies
	UsageMissing     = metricnames.UsageMissing
	LabelOverflow    = metricnames.LabelOverflow
	FilterErrors     = metricnames.FilterErrors
	Picks            = metricnames.Picks
	PickerErrors     = metricnames.PickerErrors
	PickMillis       = metricnames.PickMillis
	LocalResolutions = metricnames.LocalResolutions
	// ResolutionFetches: see metricnames.
	ResolutionFetches = metricnames.ResolutionFetches
)

// Tag names (metricnames' label names).
const (
	TagModel         = metricnames.TagModel
	TagTargetModel   = metricnames.TagTargetModel
	TagResponseClass = metricnames.TagResponseClass
	TagPhase         = metricnames.TagPhase
	TagReason        = metricnames.TagReason
	TagOutcome       = metricnames.TagOutcome
)

// AllTags lists every tag the filter emits, for generating stats_tags.
var AllTags = metricnames.AllTags

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
