package precise

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/kvevents"
)

// 1,000 endpoints whose publishers never answer: every one is dialled and
// its failures counted, none is kept in the index or scored from it, the
// goroutines and memory stay bounded, and all of it goes when the
// endpoints leave.
func TestFollowerThousandSilentPublishers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, ln.Close()) // a port nobody listens on
	p, _ := strconv.Atoi(port)

	addrs := make([]string, 1000)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", 20000+i)
	}
	v := pools(map[string][]string{"big": addrs})
	m := kvevents.NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	ix := kvevents.New(kvevents.Config{Metrics: m})
	f := &Follower{View: func() *datastore.View { return v }, Index: ix, Default: Publisher{Port: p},
		Sub: kvevents.SubscriberConfig{Metrics: m, RetryMin: 50 * time.Millisecond, RetryMax: time.Second}}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.reconcile(ctx, f.preciseAddrs(v), true)
	connectErrors := func() float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "meshllm_picker_kv_connect_errors_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	require.Eventually(t, func() bool { return connectErrors() >= 2000 }, 30*time.Second, 10*time.Millisecond, "every publisher dialled, and again")

	scores := ix.Score(make([]uint32, 64), "", addrs, nil)
	for i, s := range scores {
		require.Equal(t, kvevents.PodScore{}, s, "pod %d: not ready, nothing held", i)
	}
	assert.Zero(t, ix.Stats().Pods, "nothing heard, nothing kept")
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	assert.Less(t, int64(during.HeapAlloc)-int64(before.HeapAlloc), int64(64<<20), "heap grew %d bytes", during.HeapAlloc-before.HeapAlloc)
	assert.Less(t, runtime.NumGoroutine()-goroutines, 10*len(addrs), "goroutines per silent publisher are few")

	f.reconcile(ctx, nil, true)
	assert.Empty(t, f.subs)
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutines+20 }, 30*time.Second, 10*time.Millisecond,
		"the subscribers stop when their endpoints leave")
}
