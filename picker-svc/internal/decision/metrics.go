package decision

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
)

// Metrics are the decision's Prometheus series: picks, their latency,
// request ends, and the gateway path's asm_llm_proxy_* series
// (gatewaypath.go).
type Metrics struct {
	pickLatency prometheus.Histogram
	picks       *prometheus.CounterVec
	stalePicks  *prometheus.CounterVec
	// handoverPicks: picks among a pool's previous endpoints while none
	// of its new ones has metrics yet (datastore's Handover).
	handoverPicks *prometheus.CounterVec
	endsReported  prometheus.Counter
	gatewayPath   *gatewayPathMetrics
}

// Outcome labels of meshllm_picker_picks_total: the scheduler's outcomes
// and the decision's own refusals. The one vocabulary: every outcome a
// pick can have is named here.
const (
	OutcomePicked      = string(scheduling.Picked)
	OutcomeStale       = string(scheduling.Stale)       // no eligible endpoint: picked among those with old metrics
	OutcomeShed        = string(scheduling.Shed)        // 429
	OutcomeNoEndpoints = string(scheduling.NoEndpoints) // 503
	OutcomeUnknown     = "unknown_model"                // 404
	OutcomeBadRequest  = "bad_request"                  // 400
	OutcomeError       = "error"                        // 500: the scheduler failed (a bug or a bad profile)
)

// NewMetrics registers the decision's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pickLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshllm_picker_pick_duration_seconds", Help: "Time to answer one pick, from request read to response written.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1},
		}),
		picks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_picks_total", Help: "Picks by pool strategy and outcome.",
		}, []string{"strategy", "outcome"}),
		stalePicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_stale_picks_total", Help: "Picks made among endpoints with old metrics because none was eligible (stale or failing scrapes).",
		}, []string{"pool"}),
		handoverPicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_handover_picks_total", Help: "Picks among a pool's previous endpoints because none of its new ones had metrics yet (every address changed at once).",
		}, []string{"pool"}),
		endsReported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshllm_picker_request_ends_reported_total", Help: "Pick ids that pick requests reported as ended (\"done\"), known or not.",
		}),
		gatewayPath: newGatewayPathMetrics(),
	}
	reg.MustRegister(m.pickLatency, m.picks, m.stalePicks, m.handoverPicks, m.endsReported)
	reg.MustRegister(m.gatewayPath.collectors()...)
	return m
}
