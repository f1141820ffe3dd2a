package discovery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshllm/meshllm/picker-svc/internal/fakeapiserver"
)

// Resources of the shipped configuration, as the fake API server serves them.
var (
	fakePools      = fakeapiserver.Resource{GVR: PoolsV1alpha2, Kind: "InferencePool"}
	fakeModels     = fakeapiserver.Resource{GVR: ModelsV1alpha2, Kind: "InferenceModel"}
	fakeObjectives = fakeapiserver.Resource{GVR: ObjectivesV1alpha2, Kind: "InferenceObjective"}
	fakeRewrites   = fakeapiserver.Resource{GVR: RewritesV1alpha2, Kind: "InferenceModelRewrite"}
)

// syncBuffer is a log sink the test reads while the source writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeSource is a Kubernetes source on the fake API server with the
// shipped configuration's resources and short retries.
func fakeSource(s *fakeapiserver.Server, logs *syncBuffer) *Kubernetes {
	rc := &rest.Config{Host: s.URL(), QPS: -1}
	mg, og, rg := ModelsV1alpha2, ObjectivesV1alpha2, RewritesV1alpha2
	log := slog.New(slog.NewTextHandler(logs, nil))
	return &Kubernetes{Client: kubernetes.NewForConfigOrDie(rc), Dynamic: dynamic.NewForConfigOrDie(rc), Namespace: "ns",
		PoolGVR: PoolsV1alpha2, ModelGVR: &mg, ObjectiveGVR: &og, RewriteGVR: &rg, Logger: log, Health: NewHealth(log),
		RetryInitial: 2 * time.Millisecond, RetryMax: 20 * time.Millisecond}
}

func fakePool(port int64) map[string]any {
	return map[string]any{"metadata": map[string]any{"name": "pool", "namespace": "ns"},
		"spec": map[string]any{"targetPortNumber": port, "selector": map[string]any{"app": "vllm"}}}
}

var vllm = map[string]string{"app": "vllm"}

// runSource runs k until the test ends; Run must not return before.
func runSource(t *testing.T, k *Kubernetes, r *recorder) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx, r) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	t.Cleanup(func() {
		select {
		case err := <-done:
			t.Errorf("Run returned early: %v", err)
		default:
		}
	})
}

func TestKubernetesWaitsForTheAPIServerAndCatchesUpAfterAnOutage(t *testing.T) {
	s, err := fakeapiserver.NewDown(fakePools, fakeModels, fakeObjectives, fakeRewrites)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	s.Apply(fakePools, fakePool(8000))
	s.Apply(fakeapiserver.Pods, fakeapiserver.Pod("ns", "a", "10.1.0.1", true, vllm), fakeapiserver.Pod("ns", "b", "10.1.0.2", true, vllm))
	s.Apply(fakeObjectives, map[string]any{"metadata": map[string]any{"name": "premium", "namespace": "ns"},
		"spec": map[string]any{"priority": 10, "poolRef": map[string]any{"name": "pool"}}})

	var logs syncBuffer
	k := fakeSource(s, &logs)
	h := k.Health
	r := newRecorder()
	runSource(t, k, r)

	// Unreachable at start, with every watch of the shipped configuration
	// on: retried (with backoff), not synced, Run still running.
	require.Eventually(t, func() bool {
		return failures(t, h, "pods") >= 3 && failures(t, h, "inferenceobjectives") >= 3 && failures(t, h, "inferencemodelrewrites") >= 3
	}, 10*time.Second, time.Millisecond)
	ok, why := h.Synced()
	require.False(t, ok)
	require.Contains(t, why, "pods")
	require.Contains(t, logs.String(), "discovery cannot sync yet")

	require.NoError(t, s.Up())
	r.next(t, "pool", "10.1.0.1:8000", "10.1.0.2:8000")
	require.Eventually(t, func() bool { ok, _ := h.Synced(); return ok }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { _, ok := r.objective("premium"); return ok }, 10*time.Second, time.Millisecond)

	// An outage: the age grows and it is logged; a pod deleted meanwhile
	// is gone soon after the API server returns.
	s.Down()
	require.Eventually(t, func() bool { return h.Age("pods") > 0 && strings.Contains(logs.String(), "discovery failing") },
		10*time.Second, time.Millisecond)
	s.Delete(fakeapiserver.Pods, "ns/a")
	up := time.Now()
	require.NoError(t, s.Up())
	r.next(t, "pool", "10.1.0.2:8000")
	t.Logf("the deleted pod left the endpoints %v after the API server returned", time.Since(up))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "discovery recovered") }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return h.Age("pods") == 0 }, 10*time.Second, time.Millisecond)

	// Watches dropped and every resource version expired (410 Gone): the
	// source lists again and keeps following.
	s.Expire()
	s.DropWatches()
	s.Apply(fakeapiserver.Pods, fakeapiserver.Pod("ns", "c", "10.1.0.3", true, vllm))
	r.next(t, "pool", "10.1.0.2:8000", "10.1.0.3:8000")
}

func TestKubernetesFollowsUnderRepeatedWatchFaults(t *testing.T) {
	s, err := fakeapiserver.New(fakePools, fakeModels, fakeObjectives, fakeRewrites)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	s.Apply(fakePools, fakePool(8000))
	s.Apply(fakeapiserver.Pods, fakeapiserver.Pod("ns", "a", "10.1.0.1", true, vllm))
	var logs syncBuffer
	k := fakeSource(s, &logs)
	r := newRecorder()
	runSource(t, k, r)
	r.next(t, "pool", "10.1.0.1:8000")

	// Every watch dropped every few milliseconds, and every resource
	// version expired every fifth time, while pods come and go.
	stop := make(chan struct{})
	faults := make(chan struct{})
	go func() {
		defer close(faults)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			if i%5 == 4 {
				s.Expire()
			}
			s.DropWatches()
		}
	}()
	want := []string{"pool"}
	for i := 2; i <= 6; i++ {
		s.Apply(fakeapiserver.Pods, fakeapiserver.Pod("ns", fmt.Sprint("p", i), fmt.Sprintf("10.1.0.%d", i), true, vllm))
		want = append(want, fmt.Sprintf("10.1.0.%d:8000", i))
	}
	s.Delete(fakeapiserver.Pods, "ns/a")
	changed := time.Now()
	r.next(t, want...)
	t.Logf("under repeated watch faults the last change showed after %v", time.Since(changed))
	close(stop)
	<-faults
}

func TestKubernetesCoalescesABurstOfPodEvents(t *testing.T) {
	const n = 1000
	s, err := fakeapiserver.New(fakePools)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	s.Apply(fakePools, fakePool(8000))
	s.Apply(fakeapiserver.Pods, burstPods(n, 1)...)
	var logs syncBuffer
	k := fakeSource(s, &logs)
	k.ModelGVR, k.ObjectiveGVR, k.RewriteGVR = nil, nil, nil
	// A wider window than the default so that a slow machine, delivering
	// the burst over seconds, still folds it into few recomputes.
	k.Coalesce = 100 * time.Millisecond
	r := newRecorder()
	runSource(t, k, r)
	r.next(t, burstWant(n, 1)...)

	// Every pod moves at once: one event each, a few recomputes in all.
	s.Apply(fakeapiserver.Pods, burstPods(n, 2)...)
	updates := 0
	want := burstWant(n, 2)
	timeout := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case got := <-r.eps:
			updates++
			done = equal(got, want)
		case <-timeout:
			t.Fatal("the burst never converged")
		}
	}
	t.Logf("%d pod events, %d endpoint recomputes", n, updates)
	require.Less(t, updates, n/4, "pod events are folded into few recomputes")
}

// burstPods are n ready pods of the pool, on subnet 10.<gen>.x.y.
func burstPods(n, gen int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = fakeapiserver.Pod("ns", fmt.Sprintf("pod-%04d", i), podIP(gen, i), true, vllm)
	}
	return out
}

func podIP(gen, i int) string { return fmt.Sprintf("10.%d.%d.%d", gen, i/250, i%250+1) }

// burstWant is the endpoint update burstPods make, sorted as the source sorts.
func burstWant(n, gen int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = podIP(gen, i) + ":8000"
	}
	sort.Strings(addrs)
	return append([]string{"pool"}, addrs...)
}
