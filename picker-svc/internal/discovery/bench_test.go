package discovery_test

// Benchmarks of discovery under load and faults, against the fake API
// server over HTTP, feeding the real datastore, with picks made meanwhile.
// They use only the kubernetes source's plain fields, so the same file
// measures earlier versions too. Figures and commands:
// docs/benchmarks/discovery-faults.md.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/decision"
	"github.com/meshllm/meshllm/picker-svc/internal/discovery"
	"github.com/meshllm/meshllm/picker-svc/internal/fakeapiserver"
	"github.com/meshllm/meshllm/picker-svc/internal/resolve"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// client-go's global log lines would interleave with the benchmark's.
func init() { klog.SetLogger(logr.Discard()) }

var benchPools = fakeapiserver.Resource{GVR: discovery.PoolsV1alpha2, Kind: "InferencePool"}

// benchFleet is a picker's discovery, store and decision on a fake API
// server holding one pool.
type benchFleet struct {
	*datastore.Store // the sink, but for SetEndpoints
	api              *fakeapiserver.Server
	dec              *decision.Decider
	cancel           context.CancelFunc
	done             chan error

	mu     sync.Mutex
	want   []string // the endpoints awaited
	seen   chan struct{}
	last   []string
	lastAt time.Time
	recomp int
}

// SetEndpoints passes the update to the store and tells whoever awaits it.
func (f *benchFleet) SetEndpoints(pool string, addrs []string) {
	f.Store.SetEndpoints(pool, addrs)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last, f.lastAt, f.recomp = addrs, time.Now(), f.recomp+1
	if f.want != nil && slices.Equal(addrs, f.want) {
		f.want = nil
		close(f.seen)
	}
}

// await returns a channel closed once the endpoints are want (sorted).
func (f *benchFleet) await(want []string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = make(chan struct{})
	if slices.Equal(f.last, want) {
		close(f.seen)
	} else {
		f.want = want
	}
	return f.seen
}

// settle waits until no endpoint update has come for quiet, and returns
// when the last one came: the work a burst leaves behind after the
// endpoints are right (a source that recomputes once per event keeps
// recomputing the same answer) is part of its cost.
func (f *benchFleet) settle(quiet time.Duration) time.Time {
	for {
		f.mu.Lock()
		last := f.lastAt
		f.mu.Unlock()
		if time.Since(last) >= quiet {
			return last
		}
		time.Sleep(quiet / 10) // polling for quiet, in a benchmark only
	}
}

func (f *benchFleet) recomputes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recomp
}

// page is what every model server answers to a scrape.
const page = "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 0.1\n"

type cannedPage struct{}

func (cannedPage) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader(page)), Header: http.Header{}, Request: r,
		ContentLength: int64(len(page))}, nil
}

// newBenchFleet starts a picker on an API server holding n ready pods.
// Every endpoint answers its first scrape at once (then once an hour).
func newBenchFleet(b *testing.B, n int, api *fakeapiserver.Server, configure func(*discovery.Kubernetes)) *benchFleet {
	api.Apply(benchPools, map[string]any{"metadata": map[string]any{"name": "pool", "namespace": "ns"},
		"spec": map[string]any{"targetPortNumber": 8000, "selector": map[string]any{"app": "vllm"}}})
	api.Apply(fakeapiserver.Pods, benchPods(n, 0)...)
	log := slog.New(slog.DiscardHandler)
	mgr := scrape.NewManager(scrape.Config{Interval: time.Hour, StaleAfter: time.Hour, Logger: log,
		NewClient: func() *http.Client { return &http.Client{Transport: cannedPage{}} }})
	b.Cleanup(mgr.Close)
	sched, err := scheduling.New(scheduling.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	f := &benchFleet{api: api, Store: datastore.New(mgr, log, nil), done: make(chan error, 1)}
	f.dec = decision.New(f.Store, resolve.New(nil), sched, decision.NewMetrics(prometheus.NewRegistry()), log)
	rc := &rest.Config{Host: api.URL()}
	k := &discovery.Kubernetes{Client: kubernetes.NewForConfigOrDie(rc), Dynamic: dynamic.NewForConfigOrDie(rc), Namespace: "ns",
		PoolGVR: discovery.PoolsV1alpha2, Logger: log}
	if configure != nil {
		configure(k)
	}
	seen := f.await(benchWant(n, 0))
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- k.Run(ctx, f) }()
	b.Cleanup(func() { cancel(); <-f.done })
	wait(b, seen, time.Minute)
	return f
}

func wait(b *testing.B, ch <-chan struct{}, d time.Duration) {
	select {
	case <-ch:
	case <-time.After(d):
		b.Fatalf("no convergence within %v", d)
	}
}

// benchPods are n ready pods of the pool; gen picks their addresses.
func benchPods(n, gen int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = fakeapiserver.Pod("ns", fmt.Sprintf("pod-%04d", i), benchIP(gen, i), true, map[string]string{"app": "vllm"})
	}
	return out
}

func benchIP(gen, i int) string { return fmt.Sprintf("10.%d.%d.%d", gen, i/250, i%250+1) }

func benchWant(n, gen int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = benchIP(gen, i) + ":8000"
	}
	sort.Strings(out)
	return out
}

// picker makes a pick every interval until stopped, keeping each one's
// latency.
type picker struct {
	stop chan struct{}
	done chan []time.Duration
}

func startPicks(dec *decision.Decider, interval time.Duration) *picker {
	p := &picker{stop: make(chan struct{}), done: make(chan []time.Duration, 1)}
	go func() {
		var lat []time.Duration
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.done <- lat
				return
			case <-t.C:
			}
			start := time.Now()
			dec.Decide(&pickapi.PickRequest{Pool: "pool", Model: "m"}, nil, start)
			lat = append(lat, time.Since(start))
		}
	}()
	return p
}

func (p *picker) quantiles(b *testing.B) {
	close(p.stop)
	lat := <-p.done
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "pick-p50-µs")
	b.ReportMetric(q(0.99), "pick-p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "pick-max-µs")
}

// BenchmarkPodBurst: every pod of the pool moves at once (n pod events in
// one burst, as a relist after every pod moved). Reported: the time until
// the picker's endpoints are the new ones (ms-to-right) and until the last
// endpoint recompute the burst caused (ms-to-settle), the recomputes and
// the CPU a burst costs, and the latency of one pick a millisecond made
// meanwhile. ns/op includes a quiet period of 200 ms per burst.
func BenchmarkPodBurst(b *testing.B) {
	const quiet = 200 * time.Millisecond
	for _, n := range []int{250, 500, 1000} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			api, err := fakeapiserver.New(benchPools)
			if err != nil {
				b.Fatal(err)
			}
			defer api.Close()
			f := newBenchFleet(b, n, api, nil)
			f.settle(quiet)
			picks := startPicks(f.dec, time.Millisecond)
			before, cpu := f.recomputes(), cpuTime()
			var right, settled time.Duration
			b.ResetTimer()
			for i := range b.N {
				gen := i%2 + 1
				seen := f.await(benchWant(n, gen))
				start := time.Now()
				api.Apply(fakeapiserver.Pods, benchPods(n, gen)...)
				wait(b, seen, 5*time.Minute)
				right += time.Since(start)
				settled += f.settle(quiet).Sub(start)
			}
			b.StopTimer()
			picks.quantiles(b)
			b.ReportMetric(float64(right.Milliseconds())/float64(b.N), "ms-to-right")
			b.ReportMetric(float64(settled.Milliseconds())/float64(b.N), "ms-to-settle")
			b.ReportMetric(float64(f.recomputes()-before)/float64(b.N), "recomputes/op")
			// CPU rather than wall time: on a shared machine the wall time
			// measures the neighbours. It includes the fake API server's
			// encoding and the client's decoding, the same before and after.
			b.ReportMetric(float64((cpuTime()-cpu).Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

// BenchmarkConvergenceAfterOutage: the API server goes away for the given
// time; a pod is deleted (or comes back) meanwhile; reported is the time
// from the API server's return until the picker's endpoints show it
// (mean and max), with the source's default retry settings.
func BenchmarkConvergenceAfterOutage(b *testing.B) {
	for _, outage := range []time.Duration{time.Second, 5 * time.Second, 30 * time.Second} {
		b.Run("outage="+outage.String(), func(b *testing.B) {
			api, err := fakeapiserver.New(benchPools)
			if err != nil {
				b.Fatal(err)
			}
			defer api.Close()
			const n = 50
			f := newBenchFleet(b, n, api, nil)
			var took []time.Duration
			for i := range b.N {
				// Alternately delete pod-0000 and bring it back.
				want := benchWant(n, 0)
				pod := benchPods(n, 0)[0]
				if i%2 == 0 {
					want = slices.DeleteFunc(slices.Clone(want), func(a string) bool { return a == benchIP(0, 0)+":8000" })
				}
				seen := f.await(want)
				api.Down()
				time.Sleep(outage) // the outage itself, not synchronisation
				if i%2 == 0 {
					api.Delete(fakeapiserver.Pods, "ns/pod-0000")
				} else {
					api.Apply(fakeapiserver.Pods, pod)
				}
				up := time.Now()
				if err := api.Up(); err != nil {
					b.Fatal(err)
				}
				wait(b, seen, 5*time.Minute)
				took = append(took, time.Since(up))
			}
			reportConvergence(b, took)
		})
	}
}

// BenchmarkConvergenceUnderWatchFaults: the API server flaps: every period
// it drops every connection and refuses new ones for 50 ms (and every
// other time it also expires every resource version, so the picker lists
// again). A pod change made at a random moment between flaps is timed
// until the picker's endpoints show it (mean and max), with the default
// retry settings.
func BenchmarkConvergenceUnderWatchFaults(b *testing.B) {
	for _, period := range []time.Duration{time.Second, 5 * time.Second} {
		b.Run("flap-every="+period.String(), func(b *testing.B) {
			api, err := fakeapiserver.New(benchPools)
			if err != nil {
				b.Fatal(err)
			}
			defer api.Close()
			const n = 50
			f := newBenchFleet(b, n, api, nil)
			stop, stopped := make(chan struct{}), make(chan struct{})
			var flaps sync.Mutex // a change is made while the API server is up
			go func() {
				defer close(stopped)
				t := time.NewTicker(period)
				defer t.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-t.C:
					}
					flaps.Lock()
					api.Down()
					time.Sleep(50 * time.Millisecond) // the flap itself
					if i%2 == 1 {
						api.Expire()
					}
					if err := api.Up(); err != nil {
						panic(err)
					}
					flaps.Unlock()
				}
			}()
			var took []time.Duration
			for i := range b.N {
				// Somewhere between two flaps.
				time.Sleep(time.Duration(float64(period) * float64(i%7) / 7)) // spreading the changes, not synchronisation
				gen := i%2 + 1
				seen := f.await(benchWant(n, gen))
				flaps.Lock()
				changed := time.Now()
				api.Apply(fakeapiserver.Pods, benchPods(n, gen)...)
				flaps.Unlock()
				wait(b, seen, 5*time.Minute)
				took = append(took, time.Since(changed))
			}
			close(stop)
			<-stopped
			reportConvergence(b, took)
		})
	}
}

func reportConvergence(b *testing.B, took []time.Duration) {
	var total time.Duration
	for _, d := range took {
		total += d
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(len(took)), "ms-to-converge")
	b.ReportMetric(float64(slices.Max(took).Milliseconds()), "ms-to-converge-max")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
