package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// Metrics are the picker's own Prometheus series but the decision's
// (decision.Metrics, registered in the same Registry): scrapes, and the
// per-endpoint state.
type Metrics struct {
	Registry       *prometheus.Registry
	scrapeDuration prometheus.Histogram
	scrapeErrors   *prometheus.CounterVec
}

// NewMetrics registers the scrape series and the process collectors. It
// needs nothing else, so it exists before the scrape manager that reports
// to it.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		scrapeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshllm_picker_scrape_duration_seconds", Help: "Time to fetch, parse and map one /metrics page.",
			Buckets: []float64{2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1},
		}),
		scrapeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_scrape_errors_total", Help: "Failed scrapes by reason (connect, timeout, status, too_large, read, parse, incomplete).",
		}, []string{"reason"}),
	}
	m.Registry.MustRegister(m.scrapeDuration, m.scrapeErrors, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	for _, r := range []scrape.Reason{scrape.ReasonConnect, scrape.ReasonTimeout, scrape.ReasonStatus, scrape.ReasonTooBig,
		scrape.ReasonRead, scrape.ReasonParse, scrape.ReasonPartial} {
		m.scrapeErrors.WithLabelValues(string(r)) // export zeros: rate() works from the start
	}
	return m
}

// CollectEndpoints registers the per-endpoint state, read from store at
// collection time (so label values follow the live endpoint set and
// nothing has to be deleted when endpoints go away).
func (m *Metrics) CollectEndpoints(store *datastore.Store) {
	m.Registry.MustRegister(&endpointCollector{store: store})
}

// ScrapeDone implements scrape.Observer.
func (m *Metrics) ScrapeDone(_ string, took time.Duration, reason scrape.Reason) {
	m.scrapeDuration.Observe(took.Seconds())
	if reason != scrape.OK {
		m.scrapeErrors.WithLabelValues(string(reason)).Inc()
	}
}

var (
	descWaiting  = prometheus.NewDesc("meshllm_picker_endpoint_waiting", "Waiting requests in the last good scrape.", []string{"pool", "endpoint"}, nil)
	descRunning  = prometheus.NewDesc("meshllm_picker_endpoint_running", "Running requests in the last good scrape.", []string{"pool", "endpoint"}, nil)
	descKV       = prometheus.NewDesc("meshllm_picker_endpoint_kv_cache_usage", "KV cache usage (0..1) in the last good scrape.", []string{"pool", "endpoint"}, nil)
	descAge      = prometheus.NewDesc("meshllm_picker_endpoint_snapshot_age_seconds", "Age of the last good scrape.", []string{"pool", "endpoint"}, nil)
	descFailures = prometheus.NewDesc("meshllm_picker_endpoint_consecutive_failures", "Failed scrapes since the last good one.", []string{"pool", "endpoint"}, nil)
	descEligible = prometheus.NewDesc("meshllm_picker_endpoint_eligible", "1 when the endpoint may be picked (fresh metrics, not failing).", []string{"pool", "endpoint"}, nil)
	descPicks    = prometheus.NewDesc("meshllm_picker_endpoint_picks_total", "Picks that chose the endpoint first, on either door (HTTP pick API, ext_proc), since it joined the pool.", []string{"pool", "endpoint"}, nil)
)

type endpointCollector struct{ store *datastore.Store }

// Describe implements prometheus.Collector.
func (c *endpointCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWaiting, descRunning, descKV, descAge, descFailures, descEligible, descPicks} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *endpointCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for name, pv := range c.store.View().Pools {
		for _, ep := range pv.Endpoints {
			snap, ok := ep.Eligible(now)
			elig := 0.0
			if ok {
				elig = 1
			}
			ch <- prometheus.MustNewConstMetric(descEligible, prometheus.GaugeValue, elig, name, ep.Addr)
			ch <- prometheus.MustNewConstMetric(descFailures, prometheus.GaugeValue, float64(ep.Failures()), name, ep.Addr)
			ch <- prometheus.MustNewConstMetric(descPicks, prometheus.CounterValue, float64(ep.Picks()), name, ep.Addr)
			if snap == nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, snap.Waiting, name, ep.Addr)
			ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, snap.Running, name, ep.Addr)
			ch <- prometheus.MustNewConstMetric(descKV, prometheus.GaugeValue, snap.KVCacheUsage, name, ep.Addr)
			ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, now.Sub(snap.ScrapedAt).Seconds(), name, ep.Addr)
		}
	}
}
