package wasmhost

import (
	"sort"
	"sync"

	"github.com/meshllm/meshllm/internal/metricnames"
)

// MetricType is the ABI's metric type.
type MetricType uint32

// Metric types.
const (
	Counter   MetricType = 0
	Gauge     MetricType = 1
	Histogram MetricType = 2
)

// DefaultBuckets are Envoy's default histogram bucket bounds (named once,
// in internal/metricnames, whose *_ms series picker-svc buckets alike).
var DefaultBuckets = metricnames.MillisBuckets

// Stats is the process-wide store of the filter's metrics.
type Stats struct {
	mu     sync.Mutex
	byName map[string]int
	list   []*metric
}

type metric struct {
	name   string
	typ    MetricType
	value  uint64
	counts []uint64 // histogram buckets (cumulative at render time)
	sum    float64
	count  uint64
}

// NewStats returns an empty store.
func NewStats() *Stats { return &Stats{byName: map[string]int{}} }

// Define returns the index of name, creating it; -1 if it exists with
// another type.
func (s *Stats) Define(t MetricType, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.byName[name]; ok {
		if s.list[i].typ != t {
			return -1
		}
		return i
	}
	m := &metric{name: name, typ: t}
	if t == Histogram {
		m.counts = make([]uint64, len(DefaultBuckets))
	}
	s.list = append(s.list, m)
	s.byName[name] = len(s.list) - 1
	return len(s.list) - 1
}

// Add increments a counter (only by positive amounts, like Envoy) or a gauge.
func (s *Stats) Add(i int, delta int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.list[i]
	switch m.typ {
	case Counter:
		if delta < 0 {
			return false
		}
		m.value += uint64(delta)
	case Gauge:
		m.value = uint64(int64(m.value) + delta)
	default:
		return false
	}
	return true
}

// Record sets a gauge or records a histogram sample.
func (s *Stats) Record(i int, v uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.list[i]
	switch m.typ {
	case Gauge:
		m.value = v
	case Histogram:
		for b, le := range DefaultBuckets {
			if float64(v) <= le {
				m.counts[b]++
				break
			}
		}
		m.sum += float64(v)
		m.count++
	default:
		return false
	}
	return true
}

// Value is a counter's or gauge's value, or a histogram's sample count.
func (s *Stats) Value(i int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.list[i].typ == Histogram {
		return s.list[i].count
	}
	return s.list[i].value
}

// Metric is a snapshot of one stat.
type Metric struct {
	Name  string
	Type  MetricType
	Value uint64
	// Histograms: cumulative counts per DefaultBuckets bound, sum, count.
	Cumulative []uint64
	Sum        float64
	Count      uint64
}

// Snapshot lists every stat, sorted by name.
func (s *Stats) Snapshot() []Metric {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Metric, 0, len(s.list))
	for _, m := range s.list {
		mm := Metric{Name: m.name, Type: m.typ, Value: m.value, Sum: m.sum, Count: m.count}
		if m.typ == Histogram {
			var c uint64
			for _, n := range m.counts {
				c += n
				mm.Cumulative = append(mm.Cumulative, c)
			}
		}
		out = append(out, mm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns a counter's or gauge's value by stat name.
func (s *Stats) Lookup(name string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.byName[name]
	if !ok {
		return 0, false
	}
	if s.list[i].typ == Histogram {
		return s.list[i].count, true
	}
	return s.list[i].value, true
}

// SharedData is Envoy's process-wide key-value store with compare-and-swap
// (one vm_id's namespace: Envoy keys shared data by vm_id).
type SharedData struct {
	mu         sync.Mutex
	kv         map[string]sharedValue
	mismatches int
}

type sharedValue struct {
	data []byte
	cas  uint32
}

// NewSharedData returns an empty store.
func NewSharedData() *SharedData { return &SharedData{kv: map[string]sharedValue{}} }

// Get returns a copy of key's value and its CAS.
func (d *SharedData) Get(key string) ([]byte, uint32, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.kv[key]
	return append([]byte(nil), v.data...), v.cas, ok
}

// Set stores value as Envoy does (proxy-wasm-cpp-host src/shared_data.cc,
// SharedData::set): cas 0 writes unconditionally, another cas must be the
// key's current one, and a key that has no value yet is written whatever the
// cas. It reports false for a CasMismatch.
func (d *SharedData) Set(key string, value []byte, cas uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.kv[key]
	if ok && cas != 0 && cas != v.cas {
		d.mismatches++
		return false
	}
	// Envoy draws CAS values from one process-wide counter; a per-key one is
	// the same to a guest. Neither is ever 0, which means "no CAS".
	next := v.cas + 1
	if next == 0 {
		next = 1
	}
	d.kv[key] = sharedValue{data: append([]byte(nil), value...), cas: next}
	return true
}

// CasMismatches counts the writes refused for a stale CAS.
func (d *SharedData) CasMismatches() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mismatches
}
