package discovery

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

// recorder is a Sink that forwards endpoint updates on a channel and keeps
// pools and models.
type recorder struct {
	mu     sync.Mutex
	eps    chan []string
	pools  map[string]inference.Pool
	models map[string]inference.Model
}

func newRecorder() *recorder {
	return &recorder{eps: make(chan []string, 100), pools: map[string]inference.Pool{}, models: map[string]inference.Model{}}
}

func (r *recorder) SetEndpoints(pool string, addrs []string) {
	r.eps <- append([]string{pool}, addrs...)
}
func (r *recorder) SetPool(p inference.Pool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pools[p.Name] = p
}
func (r *recorder) DeletePool(name string) {
	r.mu.Lock()
	delete(r.pools, name)
	r.mu.Unlock()
	r.eps <- []string{"deleted:" + name}
}
func (r *recorder) SetModel(m inference.Model) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.models[m.Name] = m
}
func (r *recorder) DeleteModel(_, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.models, name)
}
func (r *recorder) model(name string) (inference.Model, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.models[name]
	return m, ok
}

// next waits for an endpoint update equal to want, skipping others.
func (r *recorder) next(t *testing.T, want ...string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var last []string
	for {
		select {
		case got := <-r.eps:
			if equal(got, want) {
				return
			}
			last = got
		case <-timeout:
			t.Fatalf("no update %v; last %v", want, last)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStatic(t *testing.T) {
	_, err := NewStatic("p", []string{"vllm:8000"})
	require.ErrorContains(t, err, "dns")
	s, err := NewStatic("p", []string{"10.0.0.1:8000", "[::1]:9"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := newRecorder()
	done := make(chan error)
	go func() { done <- s.Run(ctx, r) }()
	r.next(t, "p", "10.0.0.1:8000", "[::1]:9")
	cancel()
	require.NoError(t, <-done)
}

type fakeResolver struct {
	mu  sync.Mutex
	ans map[string][]string
	err map[string]error
}

func (f *fakeResolver) LookupHost(_ context.Context, h string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ans[h], f.err[h]
}

func (f *fakeResolver) set(h string, ips []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ans[h], f.err[h] = ips, err
}

func TestDNS(t *testing.T) {
	res := &fakeResolver{ans: map[string][]string{}, err: map[string]error{}}
	res.set("vllm.ns.svc", []string{"10.0.0.2", "10.0.0.1"}, nil)
	res.set("other", []string{"10.0.1.1"}, nil)
	ticks := make(chan time.Time)
	d := &DNS{Pool: "p", Targets: []string{"vllm.ns.svc:8000", "other:9000"}, Resolver: res, Ticks: ticks, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	r := newRecorder()
	done := make(chan error)
	go func() { done <- d.Run(ctx, r) }()
	r.next(t, "p", "10.0.0.1:8000", "10.0.0.2:8000", "10.0.1.1:9000")

	res.set("vllm.ns.svc", []string{"10.0.0.3"}, nil)
	ticks <- time.Time{}
	r.next(t, "p", "10.0.0.3:8000", "10.0.1.1:9000")

	// A failing lookup keeps the previous addresses: no update at all.
	res.set("vllm.ns.svc", nil, errors.New("SERVFAIL"))
	ticks <- time.Time{}
	ticks <- time.Time{} // the second tick is taken only after the first round reported (or not)
	require.Empty(t, r.eps)
	cancel()
	require.NoError(t, <-done)
}

func TestDNSRejectsBadTargets(t *testing.T) {
	d := &DNS{Pool: "p", Targets: []string{"no-port"}}
	require.Error(t, d.Run(context.Background(), newRecorder()))
}

func pod(name, ip string, ready bool, lbls map[string]string) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: lbls},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func obj(t *testing.T, apiVersion, kind, name string, spec map[string]any, ann map[string]any) *unstructured.Unstructured {
	meta := map[string]any{"name": name, "namespace": "ns"}
	if ann != nil {
		meta["annotations"] = ann
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": meta, "spec": spec}}
}

func TestKubernetes(t *testing.T) {
	app := map[string]string{"app": "vllm"}
	client := fake.NewSimpleClientset(
		pod("a", "10.1.0.1", true, app),
		pod("b", "10.1.0.2", false, app),
		pod("c", "10.1.0.3", true, map[string]string{"app": "other"}),
	)
	scheme := runtime.NewScheme()
	gv := "inference.networking.x-k8s.io/v1alpha2"
	pool := obj(t, gv, "InferencePool", "pool", map[string]any{"targetPortNumber": int64(8000), "selector": map[string]any{"app": "vllm"}},
		map[string]any{pickapi.RoutingStrategyAnnotation: "PREFIX_CACHE"})
	model := obj(t, gv, "InferenceModel", "chat", map[string]any{"modelName": "chat", "criticality": "Sheddable",
		"poolRef": map[string]any{"name": "pool"}, "targetModels": []any{map[string]any{"name": "x", "weight": int64(1)}}}, nil)
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		PoolsV1alpha2: "InferencePoolList", ModelsV1alpha2: "InferenceModelList"}, pool, model)

	mg := ModelsV1alpha2
	k := &Kubernetes{Client: client, Dynamic: dyn, Namespace: "ns", PoolGVR: PoolsV1alpha2, ModelGVR: &mg, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	r := newRecorder()
	done := make(chan error)
	go func() { done <- k.Run(ctx, r) }()

	r.next(t, "pool", "10.1.0.1:8000") // only the ready pod with matching labels
	r.mu.Lock()
	require.Equal(t, pickapi.StrategyPrefixCache, r.pools["pool"].Strategy)
	r.mu.Unlock()
	require.Eventually(t, func() bool { m, ok := r.model("chat"); return ok && m.Criticality == pickapi.Sheddable }, 10*time.Second, time.Millisecond)

	// Pod b turns ready, a new pod appears, pod a turns unready.
	pods := client.CoreV1().Pods("ns")
	_, err := pods.UpdateStatus(ctx, pod("b", "10.1.0.2", true, app), metav1.UpdateOptions{})
	require.NoError(t, err)
	r.next(t, "pool", "10.1.0.1:8000", "10.1.0.2:8000")
	_, err = pods.Create(ctx, pod("d", "10.1.0.4", true, app), metav1.CreateOptions{})
	require.NoError(t, err)
	r.next(t, "pool", "10.1.0.1:8000", "10.1.0.2:8000", "10.1.0.4:8000")
	_, err = pods.UpdateStatus(ctx, pod("a", "10.1.0.1", false, app), metav1.UpdateOptions{})
	require.NoError(t, err)
	r.next(t, "pool", "10.1.0.2:8000", "10.1.0.4:8000")
	require.NoError(t, pods.Delete(ctx, "d", metav1.DeleteOptions{}))
	r.next(t, "pool", "10.1.0.2:8000")

	// The pool's port changes: endpoints follow.
	pools := dyn.Resource(PoolsV1alpha2).Namespace("ns")
	pool.Object["spec"].(map[string]any)["targetPortNumber"] = int64(9000)
	_, err = pools.Update(ctx, pool, metav1.UpdateOptions{})
	require.NoError(t, err)
	r.next(t, "pool", "10.1.0.2:9000")

	// An invalid update is ignored (the last valid version stays).
	pool.Object["spec"].(map[string]any)["targetPortNumber"] = int64(0)
	_, err = pools.Update(ctx, pool, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { k.mu.Lock(); defer k.mu.Unlock(); return len(k.badSeen) == 1 }, 10*time.Second, time.Millisecond)
	_, err = pods.Create(ctx, pod("e", "10.1.0.5", true, app), metav1.CreateOptions{})
	require.NoError(t, err)
	r.next(t, "pool", "10.1.0.2:9000", "10.1.0.5:9000")
	r.mu.Lock()
	require.EqualValues(t, 9000, r.pools["pool"].TargetPort)
	r.mu.Unlock()

	// Model deleted, pool deleted.
	require.NoError(t, dyn.Resource(ModelsV1alpha2).Namespace("ns").Delete(ctx, "chat", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { _, ok := r.model("chat"); return !ok }, 10*time.Second, time.Millisecond)
	require.NoError(t, pools.Delete(ctx, "pool", metav1.DeleteOptions{}))
	r.next(t, "deleted:pool")
	cancel()
	require.NoError(t, <-done)
}
