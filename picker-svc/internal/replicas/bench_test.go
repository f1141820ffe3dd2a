package replicas

import (
	"math"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
)

// benchHashes is a pick's prefix chain in these benchmarks: 64 blocks, a
// prompt of about 1,000 tokens (4 KiB).
const benchHashes = 64

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sharedBytes is what a replica sent its peers (every peer counted).
func sharedBytes(n *node) float64 {
	return testutil.ToFloat64(n.m.sentBytes.WithLabelValues("udp")) + testutil.ToFloat64(n.m.sentBytes.WithLabelValues("tcp"))
}

func benchReplicas(b *testing.B, perSecond int) {
	f := newFleet(8)
	// The defaults but the warm-up wait.
	nodes := group(b, f, 3, func(c *Config) { c.FlushInterval = 0 })
	prompts := make([][]uint64, 256)
	for i := range prompts {
		prompts[i] = chain(uint64(i), benchHashes)
	}
	var gap time.Duration
	if perSecond > 0 {
		gap = time.Second / time.Duration(perSecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, start := cpuTime(), time.Now()
	scraped := start
	for i := range b.N {
		if now := time.Now(); now.Sub(scraped) >= 50*time.Millisecond {
			f.scraped(now) // the pods' numbers move on, as with scrapes every 50 ms
			scraped = now
		}
		if gap > 0 {
			if d := time.Until(start.Add(time.Duration(i) * gap)); d > 0 {
				time.Sleep(d) // pacing the load, not synchronising
			}
		}
		n := nodes[i%3]
		_, err := n.sched.Pick(f.eps, pickapi.StrategyPrefixCache, &scheduling.Request{PrefixHashes: prompts[i%len(prompts)], PromptTokens: 1000}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
	}
	// Everything sent has been applied (or counted lost) before measuring.
	want := float64(2 * b.N)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := 0.0
		for _, n := range nodes {
			got += testutil.ToFloat64(n.m.recvPicks) + testutil.ToFloat64(n.m.dropped.WithLabelValues(dropQueueFull))*2
			for _, l := range []string{dropSendError, dropUnknownEndpoint, dropDecode} {
				got += testutil.ToFloat64(n.m.dropped.WithLabelValues(l))
			}
		}
		if got >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // polling the counters under a deadline
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	bytes, applied, lost, drops := 0.0, 0.0, 0.0, 0.0
	for _, n := range nodes {
		bytes += sharedBytes(n)
		applied += testutil.ToFloat64(n.m.recvPicks)
		lost += testutil.ToFloat64(n.m.lost)
		drops += testutil.ToFloat64(n.m.dropped.WithLabelValues(dropQueueFull))
	}
	b.ReportMetric(bytes/float64(b.N), "bytes/pick")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/pick")
	b.ReportMetric(applied/want, "applied/sent")
	b.ReportMetric(lost, "lost-msgs")
	b.ReportMetric(drops, "dropped-picks")
	b.ReportMetric(lagQuantile(nodes, 0.5)*1000, "lag-p50-ms")
	b.ReportMetric(lagQuantile(nodes, 0.99)*1000, "lag-p99-ms")
	if perSecond > 0 {
		b.ReportMetric(bytes/elapsed.Seconds()/3, "bytes/s/replica")
		b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cpu-cores")
	}
}

// lagQuantile is the upper bound of the state-lag bucket that holds quantile q
// of every node's observations.
func lagQuantile(nodes []*node, q float64) float64 {
	counts := map[float64]uint64{}
	var total uint64
	for _, n := range nodes {
		var m dto.Metric
		if err := n.m.lag.Write(&m); err != nil {
			return -1
		}
		for _, bk := range m.GetHistogram().GetBucket() {
			counts[bk.GetUpperBound()] += bk.GetCumulativeCount()
		}
		total += m.GetHistogram().GetSampleCount()
	}
	bounds := make([]float64, 0, len(counts))
	for ub := range counts {
		bounds = append(bounds, ub)
	}
	slices.Sort(bounds)
	for _, ub := range bounds {
		if float64(counts[ub]) >= q*float64(total) {
			return ub
		}
	}
	return math.Inf(1)
}

// BenchmarkReplicaPicks: three replicas in one process, picks round robin
// over them as fast as they go: CPU per pick (the pick, queueing it, and
// every peer's applying it: the process's whole CPU time) and bytes sent
// per pick (to both peers).
func BenchmarkReplicaPicks(b *testing.B) { benchReplicas(b, 0) }

// BenchmarkReplicaPicksAt1000PerSecond: the same at 1,000 picks a second
// across the three (run it with -benchtime=3000x for three seconds):
// bandwidth per replica and CPU cores used by the whole process.
func BenchmarkReplicaPicksAt1000PerSecond(b *testing.B) { benchReplicas(b, 1000) }

// BenchmarkPickAlone is the same pick without replicas, for comparison.
func BenchmarkPickAlone(b *testing.B) {
	f := newFleet(8)
	sched, err := scheduling.New(scheduling.DefaultConfig())
	require.NoError(b, err)
	prompts := make([][]uint64, 256)
	for i := range prompts {
		prompts[i] = chain(uint64(i), benchHashes)
	}
	b.ReportAllocs()
	cpu0, scraped := cpuTime(), time.Now()
	for i := range b.N {
		if now := time.Now(); now.Sub(scraped) >= 50*time.Millisecond {
			f.scraped(now)
			scraped = now
		}
		if _, err := sched.Pick(f.eps, pickapi.StrategyPrefixCache, &scheduling.Request{PrefixHashes: prompts[i%len(prompts)], PromptTokens: 1000}, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/pick")
}
