package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// recorder is a Sink that forwards endpoint updates on a channel and keeps
// pools and models.
type recorder struct {
	mu         sync.Mutex
	eps        chan []string
	pools      map[string]inference.Pool
	models     map[string]inference.Model
	objectives map[string]inference.Objective
	rewrites   map[string]inference.Rewrite
}

func newRecorder() *recorder {
	return &recorder{eps: make(chan []string, 10000), pools: map[string]inference.Pool{}, models: map[string]inference.Model{},
		objectives: map[string]inference.Objective{}, rewrites: map[string]inference.Rewrite{}}
}

func (r *recorder) SetObjective(o inference.Objective) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.objectives[o.Name] = o
}
func (r *recorder) DeleteObjective(_, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.objectives, name)
}
func (r *recorder) SetRewrite(rw inference.Rewrite) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rewrites[rw.Name] = rw
}
func (r *recorder) DeleteRewrite(_, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.rewrites, name)
}
func (r *recorder) objective(name string) (inference.Objective, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.objectives[name]
	return o, ok
}
func (r *recorder) rewrite(name string) (inference.Rewrite, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.rewrites[name]
	return o, ok
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
	h := NewHealth(slog.New(slog.DiscardHandler))
	d := &DNS{Pool: "p", Targets: []string{"vllm.ns.svc:8000", "other:9000"}, Resolver: res, Ticks: ticks, Logger: slog.New(slog.DiscardHandler),
		Health: h}
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
	ok, _ := h.Synced()
	require.True(t, ok, "synced by the first round")
	require.Eventually(t, func() bool { return failures(t, h, "dns") == 2 }, 10*time.Second, time.Millisecond, "each failed round counted")
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

// served makes the fake API server's discovery list these resources.
func served(client *fake.Clientset, gvrs ...schema.GroupVersionResource) {
	d := client.Discovery().(*fakediscovery.FakeDiscovery)
	byGV := map[string]*metav1.APIResourceList{}
	for _, g := range gvrs {
		gv := g.GroupVersion().String()
		if byGV[gv] == nil {
			byGV[gv] = &metav1.APIResourceList{GroupVersion: gv}
			d.Resources = append(d.Resources, byGV[gv])
		}
		byGV[gv].APIResources = append(byGV[gv].APIResources, metav1.APIResource{Name: g.Resource, Namespaced: true})
	}
}

func accepted(t *testing.T, dyn *dynfake.FakeDynamicClient, gvr schema.GroupVersionResource, name string) (metav1.Condition, bool) {
	t.Helper()
	u, err := dyn.Resource(gvr).Namespace("ns").Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	b, err := json.Marshal(raw)
	require.NoError(t, err)
	var conds []metav1.Condition
	require.NoError(t, json.Unmarshal(b, &conds))
	for _, c := range conds {
		if c.Type == ConditionAccepted {
			return c, true
		}
	}
	return metav1.Condition{}, false
}

func TestKubernetesObjectivesRewritesAndStatus(t *testing.T) {
	client := fake.NewSimpleClientset(pod("a", "10.1.0.1", true, map[string]string{"app": "vllm"}))
	served(client, PoolsV1alpha2, ObjectivesLLMDV1alpha2, RewritesLLMDV1alpha2)
	gv := "llm-d.ai/v1alpha2"
	pool := obj(t, "inference.networking.x-k8s.io/v1alpha2", "InferencePool", "pool", map[string]any{"targetPortNumber": int64(8000), "selector": map[string]any{"app": "vllm"}}, nil)
	premium := obj(t, gv, "InferenceObjective", "premium", map[string]any{"priority": int64(10), "poolRef": map[string]any{"name": "pool"}}, nil)
	premium.SetGeneration(2)
	broken := obj(t, gv, "InferenceObjective", "broken", map[string]any{"priority": "high", "poolRef": map[string]any{"name": "pool"}}, nil)
	elsewhere := obj(t, gv, "InferenceObjective", "elsewhere", map[string]any{"priority": int64(1), "poolRef": map[string]any{"name": "other-pool"}}, nil)
	alias := obj(t, gv, "InferenceModelRewrite", "alias", map[string]any{"poolRef": map[string]any{"name": "pool"},
		"rules": []any{map[string]any{"matches": []any{map[string]any{"model": map[string]any{"value": "a"}}},
			"targets": []any{map[string]any{"modelRewrite": "b"}}}}}, nil)
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		PoolsV1alpha2: "InferencePoolList", ObjectivesLLMDV1alpha2: "InferenceObjectiveList", RewritesLLMDV1alpha2: "InferenceModelRewriteList",
		ModelsV1alpha2: "InferenceModelList"}, pool, premium, broken, elsewhere, alias)

	og, rg, mg := ObjectivesLLMDV1alpha2, RewritesLLMDV1alpha2, ModelsV1alpha2
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	k := &Kubernetes{Client: client, Dynamic: dyn, Namespace: "ns", PoolGVR: PoolsV1alpha2, ModelGVR: &mg, ObjectiveGVR: &og, RewriteGVR: &rg,
		OnlyPool: "pool", Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	ctx, cancel := context.WithCancel(context.Background())
	r := newRecorder()
	done := make(chan error)
	go func() { done <- k.Run(ctx, r) }()
	r.next(t, "pool", "10.1.0.1:8000")

	require.Eventually(t, func() bool { o, ok := r.objective("premium"); return ok && o.Priority == 10 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { rw, ok := r.rewrite("alias"); return ok && rw.Rules[0].Targets[0].Name == "b" }, 10*time.Second, time.Millisecond)
	_, ok := r.objective("broken")
	require.False(t, ok, "an invalid object never reaches the sink")
	_, ok = r.objective("elsewhere")
	require.False(t, ok, "another pool's objective is another picker's")

	// Status: Accepted True on the valid ones, False with the error on the
	// invalid one, nothing on another picker's.
	var c metav1.Condition
	require.Eventually(t, func() bool { c, ok = accepted(t, dyn, og, "premium"); return ok }, 10*time.Second, time.Millisecond)
	require.Equal(t, metav1.ConditionTrue, c.Status)
	require.Equal(t, ReasonAccepted, c.Reason)
	require.Equal(t, int64(2), c.ObservedGeneration)
	require.True(t, c.LastTransitionTime.Time.Equal(now))
	require.Eventually(t, func() bool { c, ok = accepted(t, dyn, og, "broken"); return ok }, 10*time.Second, time.Millisecond)
	require.Equal(t, metav1.ConditionFalse, c.Status)
	require.Equal(t, ReasonInvalid, c.Reason)
	require.Contains(t, c.Message, `InferenceObjective "broken": spec.priority: "high" is not a 32-bit integer`)
	require.Eventually(t, func() bool { _, ok = accepted(t, dyn, rg, "alias"); return ok }, 10*time.Second, time.Millisecond)
	_, ok = accepted(t, dyn, og, "elsewhere")
	require.False(t, ok)

	// Fixing the broken object flips its condition (a new transition time)
	// and lets it through; its status write does not loop: the event it
	// causes finds the condition already there.
	objectives := dyn.Resource(og).Namespace("ns")
	cur, err := objectives.Get(ctx, "broken", metav1.GetOptions{})
	require.NoError(t, err)
	cur.Object["spec"].(map[string]any)["priority"] = int64(-4)
	cur.SetGeneration(3)
	now = now.Add(time.Minute)
	_, err = objectives.Update(ctx, cur, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { o, ok := r.objective("broken"); return ok && o.Priority == -4 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { c, _ = accepted(t, dyn, og, "broken"); return c.Status == metav1.ConditionTrue }, 10*time.Second, time.Millisecond)
	require.Equal(t, int64(3), c.ObservedGeneration)
	require.True(t, c.LastTransitionTime.Time.Equal(now))
	writes := func() int {
		n := 0
		for _, a := range dyn.Actions() {
			if a.GetVerb() == "update" && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return writes() == 4 }, 10*time.Second, time.Millisecond, "premium, broken twice, alias")
	// A resync-like no-op update of a settled object writes nothing.
	cur, err = objectives.Get(ctx, "premium", metav1.GetOptions{})
	require.NoError(t, err)
	cur.SetLabels(map[string]string{"touched": "yes"})
	_, err = objectives.Update(ctx, cur, metav1.UpdateOptions{})
	require.NoError(t, err)
	// The objective moving to another pool leaves this picker.
	cur, err = objectives.Get(ctx, "premium", metav1.GetOptions{})
	require.NoError(t, err)
	cur.Object["spec"].(map[string]any)["poolRef"] = map[string]any{"name": "other-pool"}
	_, err = objectives.Update(ctx, cur, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, ok := r.objective("premium"); return !ok }, 10*time.Second, time.Millisecond)
	require.Equal(t, 4, writes(), "neither the label change nor another pool's object is written")

	require.NoError(t, dyn.Resource(rg).Namespace("ns").Delete(ctx, "alias", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { _, ok := r.rewrite("alias"); return !ok }, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestKubernetesSkipsUnservedResourcesAndCanBeReadOnly(t *testing.T) {
	client := fake.NewSimpleClientset()
	served(client, ObjectivesV1alpha2) // no rewrites CRD
	pool := obj(t, "inference.networking.x-k8s.io/v1alpha2", "InferencePool", "pool", map[string]any{"targetPortNumber": int64(8000), "selector": map[string]any{"app": "vllm"}}, nil)
	o := obj(t, "inference.networking.x-k8s.io/v1alpha2", "InferenceObjective", "o", map[string]any{"poolRef": map[string]any{"name": "pool"}}, nil)
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		PoolsV1alpha2: "InferencePoolList", ObjectivesV1alpha2: "InferenceObjectiveList"}, pool, o)
	og, rg := ObjectivesV1alpha2, RewritesV1alpha2
	k := &Kubernetes{Client: client, Dynamic: dyn, Namespace: "ns", PoolGVR: PoolsV1alpha2, ObjectiveGVR: &og, RewriteGVR: &rg,
		ReadOnly: true, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	r := newRecorder()
	done := make(chan error)
	go func() { done <- k.Run(ctx, r) }()
	r.next(t, "pool")
	require.Eventually(t, func() bool { _, ok := r.objective("o"); return ok }, 10*time.Second, time.Millisecond)
	for _, a := range dyn.Actions() {
		require.NotEqual(t, "inferencemodelrewrites", a.GetResource().Resource, "an unserved resource is not even listed")
		require.NotEqual(t, "status", a.GetSubresource(), "read-only: no status writes")
	}
	cancel()
	require.NoError(t, <-done)

	// Discovery failing for another reason (the API server away) is
	// retried, never fatal: not synced until it answers.
	client = fake.NewSimpleClientset()
	served(client, ObjectivesV1alpha2)
	var away atomic.Bool
	away.Store(true)
	client.Discovery().(*fakediscovery.FakeDiscovery).PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		if away.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	h := NewHealth(slog.New(slog.DiscardHandler))
	k = &Kubernetes{Client: client, Dynamic: dyn, Namespace: "ns", PoolGVR: PoolsV1alpha2, ObjectiveGVR: &og, Logger: slog.New(slog.DiscardHandler),
		Health: h, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond}
	ctx, cancel = context.WithCancel(context.Background())
	r = newRecorder()
	go func() { done <- k.Run(ctx, r) }()
	r.next(t, "pool")
	require.Eventually(t, func() bool { return failures(t, h, "inferenceobjectives") >= 3 }, 10*time.Second, time.Millisecond,
		"retried with backoff")
	ok, why := h.Synced()
	require.False(t, ok)
	require.Equal(t, "discovery has not synced inferenceobjectives yet", why)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while the API server was away", err)
	default:
	}
	away.Store(false)
	require.Eventually(t, func() bool { ok, _ := h.Synced(); return ok }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { _, ok := r.objective("o"); return ok }, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}
