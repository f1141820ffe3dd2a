package kvevents

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the KV-event source's Prometheus series. A nil *Metrics
// counts nothing.
type Metrics struct {
	events      *prometheus.CounterVec
	blocksTotal *prometheus.CounterVec
	gaps        *prometheus.CounterVec
	decodeErrs  prometheus.Counter
	connectErrs prometheus.Counter
	refused     prometheus.Counter
	specBlocks  *prometheus.CounterVec
}

// Label values.
const (
	// events_total{kind}: applied events by type, and those skipped.
	eventStored   = "block_stored"
	eventRemoved  = "block_removed"
	eventCleared  = "all_blocks_cleared"
	eventUnknown  = "unknown"        // a type this decoder does not know
	eventSkipped  = "other_medium"   // not the GPU cache's main group (CPU offload, hybrid models' other groups)
	eventOrphaned = "parent_unknown" // BlockStored whose parent block the index does not hold

	// blocks_total{op}.
	blocksStored         = "stored"
	blocksRemoved        = "removed"
	blocksUnknownRemoved = "removed_unknown" // BlockRemoved of a block the index does not hold
	blocksEvicted        = "evicted"         // dropped by the index's own bounds

	// sequence_gaps_total{outcome}.
	gapReplayed = "replayed"  // the publisher's replay filled the gap
	gapLost     = "lost"      // events lost for good: the pod is cleared and falls back until caught up
	gapRestart  = "restarted" // the sequence began again at 0: a restarted engine, empty cache

	// speculative_blocks_total{outcome}.
	specAdded     = "added"
	specConfirmed = "confirmed"
	specExpired   = "expired"
)

// NewMetrics makes the series; register them with Collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_kv_events_total",
			Help: "KV-cache events from the engines by kind: applied (block_stored, block_removed, all_blocks_cleared) or skipped (unknown, other_medium, parent_unknown).",
		}, []string{"kind"}),
		blocksTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_kv_blocks_total",
			Help: "Blocks stored in and removed from the KV-event index (removed_unknown: named by BlockRemoved but not held; evicted: dropped by the index's bounds).",
		}, []string{"op"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_kv_sequence_gaps_total",
			Help: "Breaks in a publisher's sequence numbers by outcome: replayed, lost (the pod falls back to the approximate source until caught up), restarted.",
		}, []string{"outcome"}),
		decodeErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshllm_picker_kv_decode_errors_total",
			Help: "KV event messages that could not be decoded (their pod falls back until caught up).",
		}),
		connectErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshllm_picker_kv_connect_errors_total",
			Help: "Failed attempts to connect to a KV event publisher (or its replay socket).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshllm_picker_kv_messages_refused_total",
			Help: "KV event messages from a pod the index could not take on, because it already tracks its maximum of pods (the pod falls back to the approximate source).",
		}),
		specBlocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_kv_speculative_blocks_total",
			Help: "Blocks a pick made the index count as held before the engine confirmed them, by outcome: added, confirmed, expired.",
		}, []string{"outcome"}),
	}
	for _, k := range []string{eventStored, eventRemoved, eventCleared, eventUnknown, eventSkipped, eventOrphaned} {
		m.events.WithLabelValues(k)
	}
	for _, k := range []string{blocksStored, blocksRemoved, blocksUnknownRemoved, blocksEvicted} {
		m.blocksTotal.WithLabelValues(k)
	}
	for _, k := range []string{gapReplayed, gapLost, gapRestart} {
		m.gaps.WithLabelValues(k)
	}
	for _, k := range []string{specAdded, specConfirmed, specExpired} {
		m.specBlocks.WithLabelValues(k)
	}
	return m
}

// Collectors are the counters, for a registry.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events, m.blocksTotal, m.gaps, m.decodeErrs, m.connectErrs, m.refused, m.specBlocks}
}

func (m *Metrics) event(kind string, n int) {
	if m != nil && n > 0 {
		m.events.WithLabelValues(kind).Add(float64(n))
	}
}

func (m *Metrics) blocks(op string, n int) {
	if m != nil && n > 0 {
		m.blocksTotal.WithLabelValues(op).Add(float64(n))
	}
}

func (m *Metrics) gap(outcome string) {
	if m != nil {
		m.gaps.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) decodeError() {
	if m != nil {
		m.decodeErrs.Inc()
	}
}

func (m *Metrics) connectError() {
	if m != nil {
		m.connectErrs.Inc()
	}
}

func (m *Metrics) refusedMessage() {
	if m != nil {
		m.refused.Inc()
	}
}

func (m *Metrics) speculative(outcome string, n int) {
	if m != nil && n > 0 {
		m.specBlocks.WithLabelValues(outcome).Add(float64(n))
	}
}

var (
	descPods     = prometheus.NewDesc("meshllm_picker_kv_index_pods", "Pods the KV-event index tracks.", nil, nil)
	descNotReady = prometheus.NewDesc("meshllm_picker_kv_index_pods_not_caught_up", "Pods whose events are incomplete (unknown start, lost events): scored by the approximate source.", nil, nil)
	descBlocks   = prometheus.NewDesc("meshllm_picker_kv_index_blocks", "Blocks the index holds, summed over pods (speculative ones included).", nil, nil)
	descKeys     = prometheus.NewDesc("meshllm_picker_kv_index_distinct_blocks", "Distinct blocks (token chains) the index holds.", nil, nil)
	descBytes    = prometheus.NewDesc("meshllm_picker_kv_index_bytes", "Memory of the index's structures.", nil, nil)
)

// Collector exports the index's size at scrape time.
func (ix *Index) Collector() prometheus.Collector { return indexCollector{ix} }

type indexCollector struct{ ix *Index }

func (c indexCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPods, descNotReady, descBlocks, descKeys, descBytes} {
		ch <- d
	}
}

func (c indexCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.ix.Stats()
	for d, v := range map[*prometheus.Desc]int{descPods: st.Pods, descNotReady: st.NotReady, descBlocks: st.Blocks, descKeys: st.Keys, descBytes: st.Bytes} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
}
