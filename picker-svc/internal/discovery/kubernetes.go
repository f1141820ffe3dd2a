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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// The objects that replaced InferenceModel: v1alpha2 in the group they
	// were born in, and in llm-d.ai where llm-d's router serves them now.
	ObjectivesV1alpha2     = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha2", Resource: "inferenceobjectives"}
	RewritesV1alpha2       = schema.GroupVersionResource{Group: inference.GroupXK8s, Version: "v1alpha2", Resource: "inferencemodelrewrites"}
	ObjectivesLLMDV1alpha2 = schema.GroupVersionResource{Group: inference.GroupLLMD, Version: "v1alpha2", Resource: "inferenceobjectives"}
	RewritesLLMDV1alpha2   = schema.GroupVersionResource{Group: inference.GroupLLMD, Version: "v1alpha2", Resource: "inferencemodelrewrites"}
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
	Resync   time.Duration
	Logger   *slog.Logger
	// Now stamps condition transitions (nil: time.Now).
	Now func() time.Time

	ctx       context.Context
	mu        sync.Mutex
	pools     map[string]inference.Pool
	badSeen   map[string]string // object key -> last error logged
	statusErr map[string]string // object key -> last status write error logged
	pods      listersv1.PodLister
	sink      Sink
	synced    bool
}

// Run implements Source.
func (k *Kubernetes) Run(ctx context.Context, sink Sink) error {
	if k.Logger == nil {
		k.Logger = slog.Default()
	}
	if k.Now == nil {
		k.Now = time.Now
	}
	k.ctx, k.sink, k.pools, k.badSeen, k.statusErr = ctx, sink, map[string]inference.Pool{}, map[string]string{}, map[string]string{}
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
	for _, opt := range []struct {
		gvr  *schema.GroupVersionResource
		kind string
	}{{k.ObjectiveGVR, inference.KindObjective}, {k.RewriteGVR, inference.KindRewrite}} {
		if opt.gvr == nil {
			continue
		}
		served, err := k.serves(*opt.gvr)
		if err != nil {
			return err
		}
		if !served {
			k.Logger.Info("the API server does not serve it (CRD not installed?): not watching", "resource", opt.gvr.String())
			continue
		}
		gvr, kind := *opt.gvr, opt.kind
		if _, err := df.ForResource(gvr).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { k.policyEvent(gvr, kind, o, false) },
			UpdateFunc: func(_, o any) { k.policyEvent(gvr, kind, o, false) },
			DeleteFunc: func(o any) { k.policyEvent(gvr, kind, o, true) },
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

// serves asks the API server's discovery whether it serves gvr, so that a
// cluster without a CRD costs one log line rather than an informer that
// never syncs. Any other discovery failure stops the picker: better a
// restart than running without objects that exist.
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

// ours reports whether an object naming pools belongs to this picker: any
// pool when it watches all of them; else only OnlyPool. An object whose
// pools cannot be read is ours only when the picker watches every pool.
func (k *Kubernetes) ours(pools []string) bool {
	if k.OnlyPool == "" {
		return true
	}
	for _, p := range pools {
		if p == k.OnlyPool {
			return true
		}
	}
	return false
}

// policyEvent handles an InferenceObjective or InferenceModelRewrite: the
// sink gets the valid ones (an invalid update keeps the last valid
// version), and the object gets its Accepted condition.
func (k *Kubernetes) policyEvent(gvr schema.GroupVersionResource, kind string, o any, deleted bool) {
	u, ok := toUnstructured(o)
	if !ok {
		return
	}
	j, err := json.Marshal(u.Object)
	if err != nil {
		return
	}
	k.mu.Lock()
	if deleted {
		if kind == inference.KindObjective {
			k.sink.DeleteObjective(u.GetNamespace(), u.GetName())
		} else {
			k.sink.DeleteRewrite(u.GetNamespace(), u.GetName())
		}
		delete(k.badSeen, u.GetNamespace()+"/"+u.GetName()+"/"+kind)
		delete(k.statusErr, u.GetNamespace()+"/"+u.GetName()+"/"+kind)
		k.mu.Unlock()
		return
	}
	if !k.ours(inference.PoolRefNames(j)) {
		// Another picker's, or it moved to another pool: forget it, as
		// the upstream's reconcilers do when poolRef stops matching.
		if kind == inference.KindObjective {
			k.sink.DeleteObjective(u.GetNamespace(), u.GetName())
		} else {
			k.sink.DeleteRewrite(u.GetNamespace(), u.GetName())
		}
		k.mu.Unlock()
		return
	}
	objs, valid := k.parse(u)
	switch {
	case valid && len(objs.Objectives) == 1:
		k.sink.SetObjective(objs.Objectives[0])
	case valid && len(objs.Rewrites) == 1:
		k.sink.SetRewrite(objs.Rewrites[0])
	}
	cond := metav1.Condition{Type: ConditionAccepted, Status: metav1.ConditionTrue, Reason: ReasonAccepted,
		Message: "read by the meshllm picker", ObservedGeneration: u.GetGeneration()}
	if !valid {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalid, k.badSeen[u.GetNamespace()+"/"+u.GetName()+"/"+kind]
	}
	k.mu.Unlock()
	if !k.ReadOnly {
		k.writeCondition(gvr, kind, u, cond)
	}
}

// Condition written on InferenceObjectives and InferenceModelRewrites. The
// type and its True reason are the upstream's (llm-d/llm-d-router
// apix/v1alpha2/inferenceobjective_types.go ObjectiveConditionAccepted,
// ObjectiveReasonAccepted; the rewrite type has the same pair), whose CRDs
// default the condition to Unknown/Pending. The upstream endpoint picker
// itself writes none (pkg/epp/controller/*_reconciler.go only read), so a
// rejected object would look pending forever; meshllm says why instead.
const (
	ConditionAccepted = "Accepted"
	ReasonAccepted    = "Accepted"
	ReasonInvalid     = "Invalid" // the spec does not parse; Message quotes the error
)

// writeCondition sets cond on u's status.conditions when it differs from
// what is there (status, reason, message, generation): the status update
// comes back as an informer event, which then finds nothing to write.
func (k *Kubernetes) writeCondition(gvr schema.GroupVersionResource, kind string, u *unstructured.Unstructured, cond metav1.Condition) {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var conds []metav1.Condition
	if b, err := json.Marshal(raw); err == nil {
		_ = json.Unmarshal(b, &conds)
	}
	if c := apimeta.FindStatusCondition(conds, cond.Type); c != nil && c.Status == cond.Status && c.Reason == cond.Reason &&
		c.Message == cond.Message && c.ObservedGeneration == cond.ObservedGeneration {
		return
	}
	cond.LastTransitionTime = metav1.NewTime(k.Now())
	apimeta.SetStatusCondition(&conds, cond)
	out := u.DeepCopy()
	var list []any
	if b, err := json.Marshal(conds); err == nil {
		_ = json.Unmarshal(b, &list)
	}
	if err := unstructured.SetNestedSlice(out.Object, list, "status", "conditions"); err != nil {
		return
	}
	key := u.GetNamespace() + "/" + u.GetName() + "/" + kind
	_, err := k.Dynamic.Resource(gvr).Namespace(u.GetNamespace()).UpdateStatus(k.ctx, out, metav1.UpdateOptions{})
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case err == nil:
		delete(k.statusErr, key)
	case apierrors.IsConflict(err):
		// The object changed meanwhile: its next event writes again.
	case k.statusErr[key] != err.Error():
		k.statusErr[key] = err.Error()
		k.Logger.Warn("cannot write status (RBAC for the status subresource?)", "object", key, "err", err)
	}
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
	name := func(g *schema.GroupVersionResource) string {
		if g == nil {
			return "none"
		}
		return g.String()
	}
	return fmt.Sprintf("kubernetes(namespace=%s pools=%s models=%s objectives=%s rewrites=%s)", k.Namespace, k.PoolGVR.String(), m,
		name(k.ObjectiveGVR), name(k.RewriteGVR))
}
