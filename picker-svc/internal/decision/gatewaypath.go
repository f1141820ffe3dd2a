package decision

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshllm/meshllm/internal/labelguard"
	"github.com/meshllm/meshllm/internal/llmapi"
	"github.com/meshllm/meshllm/internal/metricnames"
)

// The gateway path's series. Over ext_proc no filter is in the request's
// way, so the picker counts what the filter counts there, under the
// filter's names and labels (internal/metricnames) and with the filter's
// rules: model and target_model sanitised and bounded by the same guard
// (at most ModelLabelLimit pairs, then "other"), requests by response
// class, usage missing only for 2xx responses, the *_ms histograms in
// Envoy's buckets. One dashboard then serves both paths. Picks on the
// filter's path are the filter's to count (it asks over the HTTP pick
// API), so nothing here counts them twice.

// ModelLabelLimit bounds the (model, target_model) pairs of the series,
// as the filter's model_label_limit default.
const ModelLabelLimit = 100

// Exchange is one request the picker saw over ext_proc, at its end.
type Exchange struct {
	// Model is what the request asked for ("" when its body was not read);
	// Target what the picker chose ("" when it chose none).
	Model, Target string
	// Status is the response's HTTP status, the picker's own when it
	// refused the request; 0 when no response came.
	Status int
	// Start is when the request's headers came, FirstByte when the first
	// response body byte did (zero: none came), End when it ended.
	Start, FirstByte, End time.Time
	Outcome               llmapi.Outcome
}

type gatewayPathMetrics struct {
	prompt, completion, requests *prometheus.CounterVec
	missing, parseErrors         *prometheus.CounterVec
	oversize, deep               *prometheus.CounterVec
	overflow                     prometheus.Counter
	ttfb, duration               *prometheus.HistogramVec

	mu    sync.Mutex
	guard *labelguard.Guard
}

func newGatewayPathMetrics() *gatewayPathMetrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help + " (the ext_proc path; the filter's series on the gateway path)."}, labels)
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help + " (the ext_proc path).",
			Buckets: metricnames.MillisBuckets}, []string{metricnames.TagModel})
	}
	m := &gatewayPathMetrics{
		prompt:      counter(metricnames.PromptTokens, "Prompt tokens by model asked for and target model that served", metricnames.TagModel, metricnames.TagTargetModel),
		completion:  counter(metricnames.CompletionTokens, "Completion tokens by model asked for and target model that served", metricnames.TagModel, metricnames.TagTargetModel),
		requests:    counter(metricnames.Requests, "LLM requests by model and response class (2xx..5xx, none: no response)", metricnames.TagModel, metricnames.TagResponseClass),
		missing:     counter(metricnames.UsageMissing, "2xx responses without usage, by reason", metricnames.TagReason),
		parseErrors: counter(metricnames.ParseErrors, "Response bodies or SSE events that were not JSON, by phase", metricnames.TagPhase),
		oversize:    counter(metricnames.OversizeBodies, "SSE events over the size cap, by phase", metricnames.TagPhase),
		deep:        counter(metricnames.DeepBodies, "Response bodies or SSE events nested too deep to read, by phase", metricnames.TagPhase),
		overflow: prometheus.NewCounter(prometheus.CounterOpts{Name: metricnames.LabelOverflow,
			Help: "Requests counted under model \"other\": the label limit was reached (the ext_proc path)."}),
		ttfb:     histogram(metricnames.TTFBMillis, "Milliseconds from the request's headers to the response's first body byte, by model"),
		duration: histogram(metricnames.DurationMillis, "Milliseconds from the request's headers to the response's end, by model"),
		guard:    labelguard.NewGuard(ModelLabelLimit, nil, &labelguard.InProcess{}),
	}
	_ = m.guard.Start() // in memory: cannot fail
	for _, r := range []string{llmapi.MissingNotReported, llmapi.MissingEncoded, llmapi.MissingOversize, llmapi.MissingUnparsable,
		llmapi.MissingTooDeep, llmapi.MissingNoBody} {
		m.missing.WithLabelValues(r) // export zeros: rate() and alerts work from the start
	}
	return m
}

func (m *gatewayPathMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.prompt, m.completion, m.requests, m.missing, m.parseErrors, m.oversize, m.deep,
		m.overflow, m.ttfb, m.duration}
}

// record counts one exchange as the filter counts one request (filter/http.go's finish).
func (m *gatewayPathMetrics) record(e Exchange) {
	oc := e.Outcome
	target := e.Target
	if target == "" {
		target = oc.Model // what the response says served it
	}
	if target == "" {
		target = e.Model
	}
	m.mu.Lock()
	model, target, verdict := m.guard.Labels(e.Model, target)
	m.mu.Unlock()
	if verdict.Overflow() {
		m.overflow.Inc()
	}
	class := metricnames.ResponseClass(e.Status)
	m.requests.WithLabelValues(model, class).Inc()
	if oc.Usage.HasPrompt {
		m.prompt.WithLabelValues(model, target).Add(float64(oc.Usage.PromptTokens))
	}
	if oc.Usage.HasCompletion {
		m.completion.WithLabelValues(model, target).Add(float64(oc.Usage.CompletionTokens))
	}
	if !e.FirstByte.IsZero() {
		m.ttfb.WithLabelValues(model).Observe(millis(e.FirstByte.Sub(e.Start)))
	}
	m.duration.WithLabelValues(model).Observe(millis(e.End.Sub(e.Start)))
	if oc.Source == "" && class == "2xx" {
		// Only a successful response is expected to report usage.
		m.missing.WithLabelValues(oc.Missing).Inc()
	}
	if oc.Missing == llmapi.MissingTooDeep {
		m.deep.WithLabelValues("response").Inc()
	}
	if oc.Oversized > 0 {
		m.oversize.WithLabelValues("response_event").Inc()
	}
	if oc.BadEvents > 0 {
		m.parseErrors.WithLabelValues("response").Inc()
	}
	if oc.DeepEvents > 0 {
		m.deep.WithLabelValues("response_event").Inc()
	}
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
