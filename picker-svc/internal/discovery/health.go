package discovery

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Health says how current discovery is, per resource (pods,
// inferencepools, ..., or dns): whether its first full sync has been
// applied, and when its data was last known current. Readiness waits for
// the first sync of every resource; the metrics and the log show a resource
// falling behind (an API server away, a watch failing) and catching up.
// Safe for concurrent use.
type Health struct {
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	start time.Time
	res   map[string]*resourceHealth
}

type resourceHealth struct {
	synced   bool      // a full list has been applied once
	current  bool      // the watch is open: the data is current
	lastGood time.Time // when the data was last known current
	failing  bool      // failed since the last success (logged once)
	failedAt time.Time
	failures float64
}

// NewHealth returns a Health that logs to log (nil: slog.Default).
func NewHealth(log *slog.Logger) *Health {
	if log == nil {
		log = slog.Default()
	}
	return &Health{log: log, now: time.Now, start: time.Now(), res: map[string]*resourceHealth{}}
}

func (h *Health) get(name string) *resourceHealth {
	r := h.res[name]
	if r == nil {
		r = &resourceHealth{lastGood: h.start}
		h.res[name] = r
	}
	return r
}

// Track makes Synced wait for name's first full sync.
func (h *Health) Track(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.get(name)
}

// Untrack forgets name (a resource the API server does not serve).
func (h *Health) Untrack(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.res, name)
}

// Listed records that a full list of name (n objects) has been applied.
func (h *Health) Listed(name string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.get(name)
	if !r.synced {
		h.log.Info("discovery synced", "resource", name, "objects", n)
	}
	r.synced = true
	h.currentLocked(name, r)
}

// Current records that name's data is current (its watch is open).
func (h *Health) Current(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.currentLocked(name, h.get(name))
}

func (h *Health) currentLocked(name string, r *resourceHealth) {
	now := h.now()
	if r.failing {
		h.log.Info("discovery recovered", "resource", name, "failed_for", now.Sub(r.failedAt).Round(time.Millisecond).String(),
			"stale_for", now.Sub(r.lastGood).Round(time.Millisecond).String())
		r.failing = false
	}
	r.current, r.lastGood = true, now
}

// Interrupted records that name's watch ended without an error (a routine
// close or an expired resource version): not current until it reopens,
// nothing logged.
func (h *Health) Interrupted(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.get(name)
	if r.current {
		r.current, r.lastGood = false, h.now()
	}
}

// Failed records a failed list, watch or discovery request for name. The
// first failure after a success is logged; the rest are counted.
func (h *Health) Failed(name string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.get(name)
	now := h.now()
	if r.current {
		r.current, r.lastGood = false, now
	}
	r.failures++
	if r.failing {
		return
	}
	r.failing, r.failedAt = true, now
	if r.synced {
		h.log.Warn("discovery failing; routing on the last known state until it recovers", "resource", name, "err", err.Error())
	} else {
		h.log.Warn("discovery cannot sync yet (not ready until it does); retrying", "resource", name, "err", err.Error())
	}
}

// Missed records a failed round of a source that logs its own failures
// (dns): counted, not current, nothing logged here.
func (h *Health) Missed(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.get(name)
	if r.current {
		r.current, r.lastGood = false, h.now()
	}
	r.failures++
}

// Synced reports whether every tracked resource has had its first full
// sync; if not, why not.
func (h *Health) Synced() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var waiting []string
	for name, r := range h.res {
		if !r.synced {
			waiting = append(waiting, name)
		}
	}
	if len(waiting) == 0 {
		return true, ""
	}
	slices.Sort(waiting)
	return false, "discovery has not synced " + strings.Join(waiting, ", ") + " yet"
}

// Age is how long ago name's data was last known current: 0 while its
// watch is open, the time since start-up if it never synced.
func (h *Health) Age(name string) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ageLocked(h.get(name), h.now())
}

func (h *Health) ageLocked(r *resourceHealth, now time.Time) time.Duration {
	if r.current {
		return 0
	}
	return now.Sub(r.lastGood)
}

var (
	descSyncAge = prometheus.NewDesc("meshllm_picker_discovery_last_sync_age_seconds",
		"Seconds since the resource's data was last known current: 0 while its watch is open, growing while the API server (or DNS) cannot be reached; since start-up before the first sync.",
		[]string{"resource"}, nil)
	descSynced = prometheus.NewDesc("meshllm_picker_discovery_synced",
		"1 once the resource's first full list has been applied (readiness waits for every resource).", []string{"resource"}, nil)
	descFailures = prometheus.NewDesc("meshllm_picker_discovery_failures_total",
		"Failed list, watch and discovery requests to the API server (or failed DNS rounds), by resource.", []string{"resource"}, nil)
)

// Describe implements prometheus.Collector.
func (h *Health) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSyncAge
	ch <- descSynced
	ch <- descFailures
}

// Collect implements prometheus.Collector.
func (h *Health) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for name, r := range h.res {
		synced := 0.0
		if r.synced {
			synced = 1
		}
		ch <- prometheus.MustNewConstMetric(descSyncAge, prometheus.GaugeValue, h.ageLocked(r, now).Seconds(), name)
		ch <- prometheus.MustNewConstMetric(descSynced, prometheus.GaugeValue, synced, name)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, r.failures, name)
	}
}
