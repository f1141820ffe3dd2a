package main

import (
	"errors"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/internal/labelguard"
)

// hostMetrics defines each stat once and caches its handle. Model-labelled
// series pass through the cardinality guard first, so the caches are bounded.
// The guard's admitted set is shared by every VM of the proxy (sharedLabels).
type hostMetrics struct {
	guard  *labelguard.Guard
	warned [labelguard.Unavailable + 1]bool // logged once per verdict
	series map[[2]string]*modelSeries
	byName map[string]proxywasm.MetricCounter

	overflow   proxywasm.MetricCounter
	pickMillis proxywasm.MetricHistogram
}

// modelSeries are the stats of one admitted (model, target_model) pair.
type modelSeries struct {
	prompt, completion proxywasm.MetricCounter
	ttfb, duration     proxywasm.MetricHistogram
	requests           map[string]proxywasm.MetricCounter // by response class
	model              string
	// names keeps the defined stat names alive. Envoy copies a name when it
	// is defined; the SDK's wazero test host keeps a pointer into VM memory
	// instead, so a name the guest freed would change under it. A few bytes
	// per admitted label pair buy tests that mean the same as production.
	names []string
}

func newHostMetrics(cfg config.Config) *hostMetrics {
	m := &hostMetrics{
		guard:    labelguard.NewGuard(cfg.ModelLabelLimit, cfg.ModelAllowlist, sharedLabels{}),
		series:   make(map[[2]string]*modelSeries),
		byName:   make(map[string]proxywasm.MetricCounter),
		overflow: proxywasm.DefineCounterMetric(stats.LabelOverflow), // constant names: never freed
	}
	if cfg.RouteOn != config.RouteNone {
		m.pickMillis = proxywasm.DefineHistogramMetric(stats.PickMillis)
	}
	if err := m.guard.Start(); err != nil {
		proxywasm.LogWarnf("meshllm: shared data %s unusable (%v): new model labels count as %q until it works",
			labelguard.LabelSetKey, err, labelguard.Other)
	}
	return m
}

// forModel returns the series of a request's labels.
func (m *hostMetrics) forModel(model, target string) *modelSeries {
	lm, lt, verdict := m.guard.Labels(model, target)
	if verdict.Overflow() {
		m.overflow.Increment(1)
	}
	if (verdict == labelguard.Unavailable || verdict == labelguard.Contended) && !m.warned[verdict] {
		m.warned[verdict] = true
		why := "compare-and-swap kept failing"
		if verdict == labelguard.Unavailable {
			why = "the shared data cannot be read or written"
			if m.guard.Corrupt() {
				why = "the shared value is not a label set; no new label is admitted by this VM"
			}
		}
		proxywasm.LogWarnf("meshllm: model label counted as %q: %s (%s; logged once)", labelguard.Other, why, labelguard.LabelSetKey)
	}
	key := [2]string{lm, lt}
	if s, ok := m.series[key]; ok {
		return s
	}
	both := []stats.Tag{{Name: stats.TagModel, Value: lm}, {Name: stats.TagTargetModel, Value: lt}}
	s := &modelSeries{
		requests: make(map[string]proxywasm.MetricCounter, 2),
		model:    lm,
		names: []string{
			stats.Name(stats.PromptTokens, both...), stats.Name(stats.CompletionTokens, both...),
			stats.Name(stats.TTFBMillis, both[0]), stats.Name(stats.DurationMillis, both[0]),
		},
	}
	s.prompt = proxywasm.DefineCounterMetric(s.names[0])
	s.completion = proxywasm.DefineCounterMetric(s.names[1])
	s.ttfb = proxywasm.DefineHistogramMetric(s.names[2])
	s.duration = proxywasm.DefineHistogramMetric(s.names[3])
	m.series[key] = s
	return s
}

// request counts one request by response class (a bounded set).
func (s *modelSeries) request(class string) {
	c, ok := s.requests[class]
	if !ok {
		name := stats.Name(stats.Requests,
			stats.Tag{Name: stats.TagModel, Value: s.model}, stats.Tag{Name: stats.TagResponseClass, Value: class})
		s.names = append(s.names, name)
		c = proxywasm.DefineCounterMetric(name)
		s.requests[class] = c
	}
	c.Increment(1)
}

// count increments an unlabelled-by-model counter with one bounded tag.
func (m *hostMetrics) count(metric, tag, value string) {
	name := stats.Name(metric, stats.Tag{Name: tag, Value: value})
	c, ok := m.byName[name]
	if !ok {
		c = proxywasm.DefineCounterMetric(name)
		m.byName[name] = c
	}
	c.Increment(1)
}

// sharedLabels is the guard's admitted set in proxy-wasm shared data, which
// Envoy keeps process-wide per vm_id: every worker's VM reads and writes the
// same value (proxy-wasm-cpp-host src/shared_data.cc).
type sharedLabels struct{}

func (sharedLabels) Get() ([]byte, uint32, bool, error) {
	v, cas, err := proxywasm.GetSharedData(labelguard.LabelSetKey)
	if errors.Is(err, types.ErrorStatusNotFound) {
		return nil, 0, false, nil
	}
	return v, cas, err == nil, err
}

func (sharedLabels) Set(v []byte, cas uint32) error {
	err := proxywasm.SetSharedData(labelguard.LabelSetKey, v, cas)
	if errors.Is(err, types.ErrorStatusCasMismatch) {
		return labelguard.ErrCasMismatch
	}
	return err
}
