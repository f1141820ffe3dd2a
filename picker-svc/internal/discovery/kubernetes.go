package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// GVRs the kubernetes mode can watch.
var (
	PoolsV1alpha2  = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha2", Resource: "inferencepools"}
	ModelsV1alpha2 = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha2", Resource: "inferencemodels"}
	PoolsV1alpha1  = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha1", Resource: "inferencepools"}
	ModelsV1alpha1 = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha1", Resource: "inferencemodels"}
	PoolsV1        = schema.GroupVersionResource{Group: inference.GroupK8s, Version: "v1", Resource: "inferencepools"}
)

// Kubernetes watches, in one namespace, the InferencePools (and optionally
// InferenceModels) and the ready pods their selectors match. Every pod, pool
// or model event recomputes the affected endpoints, so additions, removals
// and pods turning unready show within one event (and at the latest one
// resync).
type Kubernetes struct {
	Client    kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string
	PoolGVR   schema.GroupVersionResource
	ModelGVR  *schema.GroupVersionResource // nil: no InferenceModels
	// OnlyPool, if set, ignores every other pool.
	OnlyPool string
	Resync   time.Duration
	Logger   *slog.Logger

	mu      sync.Mutex
	pools   map[string]inference.Pool
	badSeen map[string]string // object key -> last error logged
	pods    listersv1.PodLister
	sink    Sink
	synced  bool
}

// Run implements Source.
func (k *Kubernetes) Run(ctx context.Context, sink Sink) error {
	if k.Logger == nil {
		k.Logger = slog.Default()
	}
	k.sink, k.pools, k.badSeen = sink, map[string]inference.Pool{}, map[string]string{}
	pf := informers.NewSharedInformerFactoryWithOptions(k.Client, k.Resync, informers.WithNamespace(k.Namespace))
	podInf := pf.Core().V1().Pods()
	k.pods = podInf.Lister()
	df := dynamicinformer.NewFilteredDynamicSharedInformerFactory(k.Dynamic, k.Resync, k.Namespace, nil)
	poolInf := df.ForResource(k.PoolGVR).Informer()

	podHandler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.reconcileAll() },
		UpdateFunc: func(_, _ any) { k.reconcileAll() },
		DeleteFunc: func(any) { k.reconcileAll() },
	}
	if _, err := podInf.Informer().AddEventHandler(podHandler); err != nil {
		return err
	}
	if _, err := poolInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { k.poolEvent(o, false) },
		UpdateFunc: func(_, o any) { k.poolEvent(o, false) },
		DeleteFunc: func(o any) { k.poolEvent(o, true) },
	}); err != nil {
		return err
	}
	if k.ModelGVR != nil {
		if _, err := df.ForResource(*k.ModelGVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { k.modelEvent(o, false) },
			UpdateFunc: func(_, o any) { k.modelEvent(o, false) },
			DeleteFunc: func(o any) { k.modelEvent(o, true) },
		}); err != nil {
			return err
		}
	}
	pf.Start(ctx.Done())
	df.Start(ctx.Done())
	pf.WaitForCacheSync(ctx.Done())
	df.WaitForCacheSync(ctx.Done())
	k.mu.Lock()
	k.synced = true
	k.mu.Unlock()
	k.reconcileAll()
	<-ctx.Done()
	pf.Shutdown()
	df.Shutdown()
	return nil
}

func toUnstructured(o any) (*unstructured.Unstructured, bool) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	u, ok := o.(*unstructured.Unstructured)
	return u, ok
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

func (k *Kubernetes) poolEvent(o any, deleted bool) {
	u, ok := toUnstructured(o)
	if !ok || (k.OnlyPool != "" && u.GetName() != k.OnlyPool) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if deleted {
		delete(k.pools, u.GetName())
		k.sink.DeletePool(u.GetName())
		return
	}
	objs, ok := k.parse(u)
	if !ok || len(objs.Pools) != 1 {
		return
	}
	p := objs.Pools[0]
	k.pools[p.Name] = p
	k.sink.SetPool(p)
	k.reconcileLocked(p)
}

func (k *Kubernetes) modelEvent(o any, deleted bool) {
	u, ok := toUnstructured(o)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if deleted {
		k.sink.DeleteModel(u.GetNamespace(), u.GetName())
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

func (k *Kubernetes) reconcileAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.synced {
		return // the first full reconcile runs once every cache is synced
	}
	for _, p := range k.pools {
		k.reconcileLocked(p)
	}
}

func (k *Kubernetes) reconcileLocked(p inference.Pool) {
	if !k.synced {
		return
	}
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
	return fmt.Sprintf("kubernetes(namespace=%s pools=%s models=%s)", k.Namespace, k.PoolGVR.String(), m)
}
