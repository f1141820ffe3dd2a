package discovery

import (
	"context"
	"encoding/json"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// statusTimeout bounds one status write: an API server that hangs must not
// hold up the objects queued behind it.
const statusTimeout = 10 * time.Second

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

// policyEvent handles an InferenceObjective or InferenceModelRewrite (u
// nil: deleted): the sink gets the valid ones (an invalid update keeps the
// last valid version), and the object gets its Accepted condition.
func (k *Kubernetes) policyEvent(gvr schema.GroupVersionResource, kind, ns, name string, u *unstructured.Unstructured) {
	key := ns + "/" + name + "/" + kind
	forget := func() {
		if kind == inference.KindObjective {
			k.sink.DeleteObjective(ns, name)
		} else {
			k.sink.DeleteRewrite(ns, name)
		}
	}
	k.mu.Lock()
	if u == nil {
		forget()
		delete(k.badSeen, key)
		delete(k.statusErr, key)
		k.mu.Unlock()
		return
	}
	j, err := json.Marshal(u.Object)
	if err != nil {
		k.mu.Unlock()
		return
	}
	if !k.ours(inference.PoolRefNames(j)) {
		// Another picker's, or it moved to another pool: forget it, as
		// the upstream's reconcilers do when poolRef stops matching.
		forget()
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
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalid, k.badSeen[key]
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
// comes back as a watch event, which then finds nothing to write.
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
	ctx, cancel := context.WithTimeout(k.ctx, statusTimeout)
	defer cancel()
	_, err := k.Dynamic.Resource(gvr).Namespace(u.GetNamespace()).UpdateStatus(ctx, out, metav1.UpdateOptions{})
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case err == nil:
		delete(k.statusErr, key)
	case apierrors.IsConflict(err):
		// The object changed meanwhile: its next event writes again.
	case k.ctx.Err() != nil:
		// Shutting down.
	case k.statusErr[key] != err.Error():
		k.statusErr[key] = err.Error()
		k.Logger.Warn("cannot write status (RBAC for the status subresource?)", "object", key, "err", err)
	}
}
