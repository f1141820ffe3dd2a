package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// GVRs the kubernetes mode can watch.
var (
	PoolsV1alpha2  = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha2", Resource: "inferencepools"}
	ModelsV1alpha2 = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha2", Resource: "inferencemodels"}
	PoolsV1alpha1  = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha1", Resource: "inferencepools"}
	ModelsV1alpha1 = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha1", Resource: "inferencemodels"}
	PoolsV1        = schema.GroupVersionResource{Group: inference.GroupK8s, Version: "v1", Resource: "inferencepools"}
	// The objects that replaced InferenceModel: v1alpha2 in the group they
	// were born in, and in llm-d.ai where llm-d's router serves them now.
	ObjectivesV1alpha2     = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha2", Resource: "inferenceobjectives"}
	RewritesV1alpha2       = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha2", Resource: "inferencemodelrewrites"}
	ObjectivesLLMDV1alpha2 = schema.GroupVersionResource{Group: inference.GroupLLMD, Version: "v1alpha2", Resource: "inferenceobjectives"}
	RewritesLLMDV1alpha2   = schema.GroupVersionResource{Group: inference.GroupLLMD, Version: "v1alpha2", Resource: "inferencemodelrewrites"}
)

// Defaults of the Kubernetes fields that tune fault handling.
const (
	DefaultRetryInitial = 250 * time.Millisecond
	DefaultRetryMax     = 2 * time.Second
	DefaultCoalesce     = 10 * time.Millisecond
)

// Kubernetes watches, in one namespace, the InferencePools (and optionally
// InferenceModels, InferenceObjectives and InferenceModelRewrites) and the
// ready pods their selectors match.
//
// Faults: an API server that cannot be reached, at start or later, is
// retried for ever (RetryInitial doubling to RetryMax), never fatal; until
// every resource's first list is applied Health says not synced, and after
// that the last known state keeps being served while Health shows its age.
// Cost: pod events only mark the endpoints dirty; one recompute, O(pods),
// folds every event of the Coalesce window after the previous one, so a
// burst of N pod events costs O(N), not N recomputes of O(N).
type Kubernetes struct {
	Client    kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string
	PoolGVR   schema.GroupVersionResource
	ModelGVR  *schema.GroupVersionResource // nil: no InferenceModels
	// ObjectiveGVR and RewriteGVR: InferenceObjectives and
	// InferenceModelRewrites (nil: not watched). A resource the API server
	// does not serve (its CRD is not installed) is skipped, logged once.
	ObjectiveGVR *schema.GroupVersionResource
	RewriteGVR   *schema.GroupVersionResource
	// ReadOnly: never write status conditions. Otherwise every
	// InferenceObjective and InferenceModelRewrite of this picker's pools
	// gets an Accepted condition (True, or False with the parse error).
	ReadOnly bool
	// OnlyPool, if set, ignores every other pool.
	OnlyPool string
	// Resync re-reads every cached object this often (0: never).
	Resync time.Duration
	// RetryInitial and RetryMax bound the wait before another list, watch
	// or discovery request after one failed: doubling from the one to the
	// other, plus up to 25% jitter (0: DefaultRetryInitial,
	// DefaultRetryMax). The picker is current again at most about RetryMax
	// after the API server comes back.
	RetryInitial, RetryMax time.Duration
	// Coalesce is how long after an endpoint recompute pod events wait to
	// be folded into the next one (0: DefaultCoalesce).
	Coalesce time.Duration
	// Health learns how current each resource is (nil: a private one).
	Health *Health
	Logger *slog.Logger
	// Now stamps condition transitions (nil: time.Now).
	Now func() time.Time

	ctx       context.Context
	mu        sync.Mutex
	pools     map[string]inference.Pool
	badSeen   map[string]string // object key -> last error logged
	statusErr map[string]string // object key -> last status write error logged
	pods      listersv1.PodLister
	podsW     *watched
	sink      Sink
	queue     *workqueue.Typed[item]
	dirty     chan struct{} // the endpoints need a recompute
}

// item is a work queue entry: an object of a watched resource to apply
// (by namespace/name key), or, with synced set, the end of a full list.
type item struct {
	w      *watched
	key    string
	synced bool
	n      int
}

// Run implements Source. It returns only when ctx ends: failures to reach
// the API server are retried, whatever is watched.
func (k *Kubernetes) Run(ctx context.Context, sink Sink) error {
	if k.Logger == nil {
		k.Logger = slog.Default()
	}
	if k.Now == nil {
		k.Now = time.Now
	}
	if k.Health == nil {
		k.Health = NewHealth(k.Logger)
	}
	// client-go's own log lines go to debug: Health logs what an operator
	// needs (failing, recovered) once per change.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(debugHandler{k.Logger.Handler()}))
	k.ctx, k.sink, k.pools, k.badSeen, k.statusErr = ctx, sink, map[string]inference.Pool{}, map[string]string{}, map[string]string{}
	k.queue = workqueue.NewTyped[item]()
	k.dirty = make(chan struct{}, 1)

	ns := k.Namespace
	pods := k.Client.CoreV1().Pods(ns)
	k.podsW = newWatched("pods", &cache.ListWatch{
		ListWithContextFunc:  func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return pods.List(ctx, o) },
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return pods.Watch(ctx, o) },
	}, k.Client, &corev1.Pod{}, k.Resync, k.backoff(), k.Health,
		func(string) { k.markDirty() },
		func(n int) { k.markDirty(); k.Health.Listed("pods", n) })
	k.pods = listersv1.NewPodLister(k.podsW.store.Indexer)

	var wg sync.WaitGroup
	start := func(w *watched) {
		k.Health.Track(w.name)
		wg.Go(func() { w.run(ctx) })
	}
	start(k.podsW)
	start(k.dynWatched(k.PoolGVR, func(ns, name string, u *unstructured.Unstructured) { k.poolEvent(name, u) }))
	if k.ModelGVR != nil {
		start(k.dynWatched(*k.ModelGVR, k.modelEvent))
	}
	for _, opt := range []struct {
		gvr  *schema.GroupVersionResource
		kind string
	}{{k.ObjectiveGVR, inference.KindObjective}, {k.RewriteGVR, inference.KindRewrite}} {
		if opt.gvr == nil {
			continue
		}
		gvr, kind := *opt.gvr, opt.kind
		k.Health.Track(gvr.Resource)
		wg.Go(func() {
			k.watchIfServed(ctx, gvr, func(ns, name string, u *unstructured.Unstructured) { k.policyEvent(gvr, kind, ns, name, u) })
		})
	}
	wg.Go(k.applyObjects)
	wg.Go(func() { k.publishEndpoints(ctx) })
	<-ctx.Done()
	k.queue.ShutDown()
	wg.Wait()
	return nil
}

// backoff is the wait between failed requests: capped, so that the picker
// catches up soon after the API server returns.
func (k *Kubernetes) backoff() wait.Backoff {
	first, most := k.RetryInitial, k.RetryMax
	if first <= 0 {
		first = DefaultRetryInitial
	}
	if most <= 0 {
		most = DefaultRetryMax
	}
	return wait.Backoff{Duration: min(first, most), Factor: 2, Jitter: 0.25, Steps: math.MaxInt32, Cap: most}
}

// dynWatched watches a custom resource; handle applies one object (nil:
// deleted) on the apply goroutine.
func (k *Kubernetes) dynWatched(gvr schema.GroupVersionResource, handle func(ns, name string, u *unstructured.Unstructured)) *watched {
	ri := k.Dynamic.Resource(gvr).Namespace(k.Namespace)
	var w *watched
	w = newWatched(gvr.Resource, &cache.ListWatch{
		ListWithContextFunc:  func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return ri.List(ctx, o) },
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return ri.Watch(ctx, o) },
	}, k.Dynamic, &unstructured.Unstructured{}, k.Resync, k.backoff(), k.Health,
		func(key string) { k.queue.Add(item{w: w, key: key}) },
		func(n int) { k.queue.Add(item{w: w, synced: true, n: n}) })
	w.handle = handle
	return w
}

// watchIfServed asks the API server whether it serves gvr, until it
// answers, and watches it if so: a cluster without a CRD costs one log
// line rather than a watch that never syncs, and an API server away at
// start is waited for rather than fatal.
func (k *Kubernetes) watchIfServed(ctx context.Context, gvr schema.GroupVersionResource, handle func(ns, name string, u *unstructured.Unstructured)) {
	b := k.backoff()
	for {
		served, err := k.serves(gvr)
		switch {
		case err == nil && served:
			k.dynWatched(gvr, handle).run(ctx)
			return
		case err == nil:
			k.Logger.Info("the API server does not serve it (CRD not installed?): not watching", "resource", gvr.String())
			k.Health.Untrack(gvr.Resource)
			return
		case ctx.Err() != nil:
			return
		}
		k.Health.Failed(gvr.Resource, err)
		t := time.NewTimer(b.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// serves asks the API server's discovery whether it serves gvr.
func (k *Kubernetes) serves(gvr schema.GroupVersionResource) (bool, error) {
	list, err := k.Client.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", gvr.String(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true, nil
		}
	}
	return false, nil
}

// applyObjects applies queued objects one at a time, in order: each key
// once however often it changed while queued, read from the cache as it is
// now.
func (k *Kubernetes) applyObjects() {
	for {
		it, shutdown := k.queue.Get()
		if shutdown {
			return
		}
		if it.synced {
			k.Health.Listed(it.w.name, it.n)
		} else {
			ns, name, _ := cache.SplitMetaNamespaceKey(it.key)
			var u *unstructured.Unstructured
			if o, exists, err := it.w.store.GetByKey(it.key); err == nil && exists {
				u, _ = o.(*unstructured.Unstructured)
			}
			it.w.handle(ns, name, u)
		}
		k.queue.Done(it)
	}
}

// markDirty asks for an endpoint recompute; any number of calls before it
// runs make one.
func (k *Kubernetes) markDirty() {
	select {
	case k.dirty <- struct{}{}:
	default:
	}
}

// publishEndpoints recomputes the endpoints when marked dirty, at once if
// the last recompute was more than Coalesce ago, else at the end of that
// window, so a burst of events makes a few recomputes.
func (k *Kubernetes) publishEndpoints(ctx context.Context) {
	every := k.Coalesce
	if every <= 0 {
		every = DefaultCoalesce
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.dirty:
		}
		k.reconcileAll()
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// parse turns an API object into inference objects through the same code as
// files, so the same YAML means the same thing in both.
func (k *Kubernetes) parse(u *unstructured.Unstructured) (inference.Objects, bool) {
	j, err := json.Marshal(u.Object)
	if err == nil {
		var objs inference.Objects
		objs, err = inference.ParseJSON(j)
		if err == nil {
			delete(k.badSeen, u.GetNamespace()+"/"+u.GetName()+"/"+u.GetKind())
			return objs, true
		}
	}
	key := u.GetNamespace() + "/" + u.GetName() + "/" + u.GetKind()
	if k.badSeen[key] != err.Error() {
		k.badSeen[key] = err.Error()
		k.Logger.Error("ignoring invalid object (keeping its last valid version)", "err", err)
	}
	return inference.Objects{}, false
}

// poolEvent applies an InferencePool (u nil: deleted).
func (k *Kubernetes) poolEvent(name string, u *unstructured.Unstructured) {
	if k.OnlyPool != "" && name != k.OnlyPool {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if u == nil {
		delete(k.pools, name)
		k.sink.DeletePool(name)
		return
	}
	objs, ok := k.parse(u)
	if !ok || len(objs.Pools) != 1 {
		return
	}
	p := objs.Pools[0]
	k.pools[p.Name] = p
	k.sink.SetPool(p)
	k.markDirty()
}

// modelEvent applies an InferenceModel (u nil: deleted).
func (k *Kubernetes) modelEvent(ns, name string, u *unstructured.Unstructured) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if u == nil {
		k.sink.DeleteModel(ns, name)
		return
	}
	objs, ok := k.parse(u)
	if !ok || len(objs.Models) != 1 {
		return
	}
	if k.OnlyPool != "" && objs.Models[0].PoolName != k.OnlyPool {
		return
	}
	k.sink.SetModel(objs.Models[0])
}

// reconcileAll recomputes every pool's endpoints from the pod cache, once
// it holds a full list.
func (k *Kubernetes) reconcileAll() {
	if !k.podsW.store.hasSynced.Load() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.pools {
		k.reconcileLocked(p)
	}
}

func (k *Kubernetes) reconcileLocked(p inference.Pool) {
	pods, err := k.pods.List(labels.SelectorFromSet(p.Selector))
	if err != nil {
		k.Logger.Error("listing pods", "pool", p.Name, "err", err)
		return
	}
	addrs := make([]string, 0, len(pods))
	for _, pod := range pods {
		if podReady(pod) {
			addrs = append(addrs, net.JoinHostPort(pod.Status.PodIP, portString(p.TargetPort)))
		}
	}
	sort.Strings(addrs)
	k.sink.SetEndpoints(p.Name, addrs)
}

// podReady: running, Ready condition true, has an IP, not being deleted.
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// String describes the source for logs.
func (k *Kubernetes) String() string {
	m := "none"
	if k.ModelGVR != nil {
		m = k.ModelGVR.String()
	}
	name := func(g *schema.GroupVersionResource) string {
		if g == nil {
			return "none"
		}
		return g.String()
	}
	return fmt.Sprintf("kubernetes(namespace=%s pools=%s models=%s objectives=%s rewrites=%s)", k.Namespace, k.PoolGVR.String(), m,
		name(k.ObjectiveGVR), name(k.RewriteGVR))
}
