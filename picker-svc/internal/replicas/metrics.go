package replicas

import "github.com/prometheus/client_golang/prometheus"

// metrics are the replica series (meshllm_picker_replica_*).
type metrics struct {
	sentMsgs, sentBytes  *prometheus.CounterVec // by transport: udp, tcp, state
	recvMsgs, recvBytes  *prometheus.CounterVec
	sentPicks, recvPicks prometheus.Counter
	sentEnds, recvEnds   prometheus.Counter
	dropped              *prometheus.CounterVec // by reason
	lost                 prometheus.Counter
	lag                  prometheus.Histogram
	warm                 prometheus.Gauge
}

// Drop reasons.
const (
	dropQueueFull       = "queue_full"       // the oldest queued picks or ends, past MaxQueueBytes
	dropSendError       = "send_error"       // a message a peer could not be sent
	dropDecode          = "decode"           // a message this replica cannot read
	dropUnknownEndpoint = "unknown_endpoint" // a peer's pick for an endpoint this replica has not discovered
)

func newMetrics(reg prometheus.Registerer, members func() float64) *metrics {
	m := &metrics{
		sentMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshllm_picker_replica_messages_sent_total",
			Help: "Messages sent to peer replicas, by transport (udp, tcp; state: warm-up state for a joining peer)."}, []string{"transport"}),
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshllm_picker_replica_bytes_sent_total",
			Help: "Payload bytes sent to peer replicas, by transport (each peer counted)."}, []string{"transport"}),
		recvMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshllm_picker_replica_messages_received_total",
			Help: "Messages received from peer replicas, by kind (batch, state)."}, []string{"kind"}),
		recvBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshllm_picker_replica_bytes_received_total",
			Help: "Payload bytes received from peer replicas, by kind (batch, state)."}, []string{"kind"}),
		sentPicks: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshllm_picker_replica_picks_shared_total",
			Help: "This replica's picks sent to its peers (once per pick, whatever the number of peers)."}),
		recvPicks: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshllm_picker_replica_peer_picks_applied_total",
			Help: "Peer replicas' picks applied to this replica's state."}),
		sentEnds: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshllm_picker_replica_ends_shared_total",
			Help: "Request ends reported to this replica and sent to its peers."}),
		recvEnds: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshllm_picker_replica_peer_ends_applied_total",
			Help: "Request ends reported to peer replicas and applied here."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshllm_picker_replica_dropped_total",
			Help: "Shared state lost, by reason: queue_full, send_error, decode, unknown_endpoint."}, []string{"reason"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshllm_picker_replica_messages_lost_total",
			Help: "Peers' messages that never arrived (gaps in their sequence numbers): UDP loss, or a peer's send errors."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meshllm_picker_replica_state_lag_seconds",
			Help:    "From a peer's pick to its application here (the peer's wait to send plus the network, across the two clocks).",
			Buckets: []float64{5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1}}),
		warm: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshllm_picker_replica_warm",
			Help: "1 once this replica has its peers' state (or waited WarmupTimeout for one); readiness waits for it."}),
	}
	reg.MustRegister(m.sentMsgs, m.sentBytes, m.recvMsgs, m.recvBytes, m.sentPicks, m.recvPicks, m.sentEnds, m.recvEnds,
		m.dropped, m.lost, m.lag, m.warm,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meshllm_picker_replica_members",
			Help: "Live members of the replica group, this one included."}, members))
	for _, t := range []string{"udp", "tcp", "state"} {
		m.sentMsgs.WithLabelValues(t)
		m.sentBytes.WithLabelValues(t)
	}
	for _, k := range []string{"batch", "state"} {
		m.recvMsgs.WithLabelValues(k)
		m.recvBytes.WithLabelValues(k)
	}
	for _, r := range []string{dropQueueFull, dropSendError, dropDecode, dropUnknownEndpoint} {
		m.dropped.WithLabelValues(r)
	}
	return m
}
