// Package metricnames names the asm_llm_proxy_* series once for both
// products: the filter defines them as Envoy stats (filter/stats encodes
// the labels into stat names), and picker-svc registers the ones that mean
// the same on the ext_proc path, where no filter is in the request's way.
// One scheme, so one dashboard and one set of alerts serve both paths.
//
// A counter is exposed under exactly its name (Envoy's /stats/prometheus
// adds no _total, and picker-svc serves the Prometheus text format, which
// adds none either); a histogram as <name>_bucket, _sum and _count.
package metricnames

// Prefix is shared by every series named here.
const Prefix = "asm_llm_proxy_"

// Series names, as a Prometheus scraper sees them.
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

// Counters and Histograms list every series above by kind.
var (
	Counters = []string{PromptTokens, CompletionTokens, Requests, ParseErrors, OversizeBodies, DeepBodies, UsageMissing,
		LabelOverflow, FilterErrors, Picks, PickerErrors, LocalResolutions, ResolutionFetches}
	Histograms = []string{TTFBMillis, DurationMillis, PickMillis}
)

// Label names. No label name may end with another one followed by "="
// unless the filter's tag regexes anchor them: "target_model" ends in
// "model", which is why filter/stats' TagRegex anchors every tag at a
// segment boundary.
const (
	TagModel         = "model"
	TagTargetModel   = "target_model"
	TagResponseClass = "response_class"
	TagPhase         = "phase"
	TagReason        = "reason"
	TagOutcome       = "outcome"
)

// AllTags lists every label of the series above.
var AllTags = []string{TagModel, TagTargetModel, TagResponseClass, TagPhase, TagReason, TagOutcome}

// MillisBuckets are the upper bounds (le) of the *_ms histograms: Envoy's
// default histogram buckets, which the filter's histograms get, so that
// histogram_quantile over both paths' series sums like buckets.
var MillisBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// ResponseClass maps an HTTP status to the bounded response_class value.
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
