package inference

// InferenceObjective and InferenceModelRewrite, the objects that replaced
// InferenceModel upstream. Their Go types are, at the source:
//   - llm-d/llm-d-router apix/v1alpha2/inferenceobjective_types.go:
//     spec {priority *int32, poolRef *{group, kind, name}, poolRefs [],
//     poolSelector}; kubernetes-sigs/gateway-api-inference-extension
//     apix/v1alpha2/inferenceobjective_types.go (before the move) has only
//     priority and a required poolRef.
//   - llm-d/llm-d-router config/crd/bases/llm-d.ai_inferencemodelrewrites.yaml
//     (and apix/v1alpha2/inferencemodelrewrite_types.go in the router's
//     forks): spec {poolRef (required), rules[] {matches[] {model {type
//     (enum: Exact, default Exact), value}}, targets[] (minItems 1)
//     {modelRewrite, weight 1..1000000}}}.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/meshllm/meshllm/pickapi"
)

// Limits on one InferenceModelRewrite (the CRD sets none; these keep one
// object from costing the picker more than a few KiB).
const (
	MaxRules   = 64
	MaxMatches = 64
	MaxPools   = 16 // poolRefs, as llm-d-router's v1 InferenceObjective caps it
)

// Objective is an InferenceObjective: a priority for the requests that name
// it (by object name, in a request header) in the pools it refers to.
type Objective struct {
	Name      string
	Namespace string
	// Priority: higher is more important, negative allowed; unset is 0,
	// as the upstream endpoint picker treats it (llm-d/llm-d-router
	// pkg/epp/requestcontrol/director.go getInferenceObjective).
	Priority    int32
	PrioritySet bool
	Pools       []string // poolRef and poolRefs names
	Generation  int64
}

// Rewrite is an InferenceModelRewrite: rules that rewrite a request's model
// to one of several weighted targets, in one pool.
type Rewrite struct {
	Name      string
	Namespace string
	PoolName  string
	// Created orders rewrites that match one model: the oldest wins
	// (the type's "Precedence and Conflict Resolution" comment). Zero for
	// a file's object without metadata.creationTimestamp.
	Created    time.Time
	Rules      []RewriteRule
	Generation int64
}

// RewriteRule matches when the request's model is one of Models (exactly);
// a rule with no Models matches every model no exact rule matches.
type RewriteRule struct {
	Models  []string
	Targets []Target
}

// Generic reports whether the rule matches every model (empty matches).
func (r RewriteRule) Generic() bool { return len(r.Models) == 0 }

type poolRef struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Name  string `json:"name"`
}

type objectiveSpec struct {
	Priority     json.RawMessage `json:"priority"`
	PoolRef      *poolRef        `json:"poolRef"`
	PoolRefs     []poolRef       `json:"poolRefs"`
	PoolSelector json.RawMessage `json:"poolSelector"`
}

type rewriteSpec struct {
	PoolRef *poolRef `json:"poolRef"`
	Rules   []struct {
		Matches []struct {
			Model *struct {
				Type  *string `json:"type"`
				Value string  `json:"value"`
			} `json:"model"`
		} `json:"matches"`
		Targets []struct {
			ModelRewrite string `json:"modelRewrite"`
			Weight       *int64 `json:"weight"`
		} `json:"targets"`
	} `json:"rules"`
}

// checkNewAPIVersion accepts v1alpha2 in the groups that serve the new
// objects: llm-d.ai now, inference.networking.x-k8s.io before the move
// (both read by llm-d-router's reconcilers).
func checkNewAPIVersion(v string) error {
	switch v {
	case GroupXK8s + "/v1alpha2", GroupLLMD + "/v1alpha2":
		return nil
	}
	return fmt.Errorf("%q is not supported (want %s/v1alpha2 or %s/v1alpha2)", v, GroupXK8s, GroupLLMD)
}

func checkPoolRef(r poolRef) (field, msg string) {
	switch {
	case r.Name == "":
		return "name", "is required"
	case len(r.Name) > pickapi.MaxNameLen:
		return "name", fmt.Sprintf("is longer than %d bytes", pickapi.MaxNameLen)
	case r.Kind != "" && r.Kind != KindPool:
		return "kind", fmt.Sprintf("%q is not %s", r.Kind, KindPool)
	}
	switch r.Group {
	case "", GroupXK8s, GroupK8s, GroupLLMD:
		return "", ""
	}
	return "group", fmt.Sprintf("%q is not %s, %s or %s", r.Group, GroupK8s, GroupXK8s, GroupLLMD)
}

func parseObjective(obj *object) (Objective, error) {
	o := Objective{Name: obj.Metadata.Name, Namespace: obj.Metadata.Namespace, Generation: obj.Metadata.Generation}
	fail := func(field, format string, a ...any) (Objective, error) {
		return Objective{}, &ObjectError{KindObjective, o.Name, field, fmt.Sprintf(format, a...)}
	}
	if o.Name == "" {
		return fail("metadata.name", "is required")
	}
	if len(o.Name) > pickapi.MaxNameLen {
		return fail("metadata.name", "is longer than %d bytes", pickapi.MaxNameLen)
	}
	if err := checkNewAPIVersion(obj.APIVersion); err != nil {
		return fail("apiVersion", "%v", err)
	}
	if len(obj.Spec) == 0 {
		return fail("spec", "is required")
	}
	var s objectiveSpec
	if err := json.Unmarshal(obj.Spec, &s); err != nil {
		return fail("spec", "%v", err)
	}
	if len(s.Priority) > 0 && string(s.Priority) != "null" {
		p, err := strconv.ParseInt(string(s.Priority), 10, 32)
		if err != nil {
			return fail("spec.priority", "%s is not a 32-bit integer", s.Priority)
		}
		o.Priority, o.PrioritySet = int32(p), true
	}
	if len(s.PoolSelector) > 0 && string(s.PoolSelector) != "null" {
		// The picker's pools carry no labels to select on.
		return fail("spec.poolSelector", "is not supported: name the pools with poolRef or poolRefs")
	}
	refs := s.PoolRefs
	if len(refs) > MaxPools {
		return fail("spec.poolRefs", "holds %d entries, the limit is %d", len(refs), MaxPools)
	}
	fields := make([]string, 0, len(refs)+1)
	for i := range refs {
		fields = append(fields, fmt.Sprintf("spec.poolRefs[%d].", i))
	}
	if s.PoolRef != nil {
		refs = append([]poolRef{*s.PoolRef}, refs...)
		fields = append([]string{"spec.poolRef."}, fields...)
	}
	if len(refs) == 0 {
		return fail("spec.poolRef", "is required (or spec.poolRefs)")
	}
	seen := map[string]bool{}
	for i, r := range refs {
		f := fields[i]
		if sub, msg := checkPoolRef(r); msg != "" {
			return fail(f+sub, "%s", msg)
		}
		if seen[r.Name] {
			continue // poolRef and poolRefs may both name a pool
		}
		seen[r.Name] = true
		o.Pools = append(o.Pools, r.Name)
	}
	return o, nil
}

func parseRewrite(obj *object) (Rewrite, error) {
	rw := Rewrite{Name: obj.Metadata.Name, Namespace: obj.Metadata.Namespace, Generation: obj.Metadata.Generation}
	fail := func(field, format string, a ...any) (Rewrite, error) {
		return Rewrite{}, &ObjectError{KindRewrite, rw.Name, field, fmt.Sprintf(format, a...)}
	}
	if rw.Name == "" {
		return fail("metadata.name", "is required")
	}
	if err := checkNewAPIVersion(obj.APIVersion); err != nil {
		return fail("apiVersion", "%v", err)
	}
	if ts := obj.Metadata.CreationTimestamp; ts != "" {
		t, err := time.Parse(time.RFC3339, ts)
		if err != nil {
			return fail("metadata.creationTimestamp", "%q is not an RFC 3339 time", ts)
		}
		rw.Created = t
	}
	if len(obj.Spec) == 0 {
		return fail("spec", "is required")
	}
	var s rewriteSpec
	if err := json.Unmarshal(obj.Spec, &s); err != nil {
		return fail("spec", "%v", err)
	}
	if s.PoolRef == nil {
		return fail("spec.poolRef", "is required")
	}
	if sub, msg := checkPoolRef(*s.PoolRef); msg != "" {
		return fail("spec.poolRef."+sub, "%s", msg)
	}
	rw.PoolName = s.PoolRef.Name
	if len(s.Rules) == 0 {
		return fail("spec.rules", "must hold at least one rule")
	}
	if len(s.Rules) > MaxRules {
		return fail("spec.rules", "holds %d entries, the limit is %d", len(s.Rules), MaxRules)
	}
	for i, r := range s.Rules {
		rf := fmt.Sprintf("spec.rules[%d]", i)
		var rule RewriteRule
		if len(r.Matches) > MaxMatches {
			return fail(rf+".matches", "holds %d entries, the limit is %d", len(r.Matches), MaxMatches)
		}
		for j, m := range r.Matches {
			mf := fmt.Sprintf("%s.matches[%d].model", rf, j)
			if m.Model == nil {
				return fail(mf, "is required")
			}
			if m.Model.Type != nil && *m.Model.Type != "Exact" {
				// The CRD's enum holds only Exact; a future type must not
				// silently behave like one.
				return fail(mf+".type", "%q is not supported (only Exact)", *m.Model.Type)
			}
			if m.Model.Value == "" {
				return fail(mf+".value", "is required")
			}
			if len(m.Model.Value) > pickapi.MaxNameLen {
				return fail(mf+".value", "is longer than %d bytes", pickapi.MaxNameLen)
			}
			rule.Models = append(rule.Models, m.Model.Value)
		}
		if len(r.Targets) == 0 {
			return fail(rf+".targets", "must hold at least one target")
		}
		if len(r.Targets) > MaxTargets {
			return fail(rf+".targets", "holds %d entries, the limit is %d", len(r.Targets), MaxTargets)
		}
		specs := make([]targetSpec, len(r.Targets))
		for j, t := range r.Targets {
			specs[j] = targetSpec{t.ModelRewrite, t.Weight}
		}
		targets, _, ferr := weightedTargets(rf+".targets", specs,
			targetRules{nameKey: "modelRewrite", minWeight: 1, what: "target", maxNameLen: pickapi.MaxNameLen})
		if ferr != nil {
			return fail(ferr.field, "%s", ferr.msg)
		}
		rule.Targets = targets
		rw.Rules = append(rw.Rules, rule)
	}
	return rw, nil
}

func objectiveKeys(os []Objective) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.Namespace + "/" + o.Name
	}
	return out
}

func rewriteKeys(rs []Rewrite) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Namespace + "/" + r.Name
	}
	return out
}

// PoolRefNames reads spec.poolRef.name (or the first spec.poolRefs entry)
// from an object's JSON even when the rest of it is invalid: discovery
// uses it to decide whether a rejected object is this picker's to report.
func PoolRefNames(j []byte) []string {
	var obj struct {
		Spec struct {
			PoolRef  *poolRef  `json:"poolRef"`
			PoolRefs []poolRef `json:"poolRefs"`
		} `json:"spec"`
	}
	if json.Unmarshal(j, &obj) != nil {
		return nil
	}
	var out []string
	if obj.Spec.PoolRef != nil && obj.Spec.PoolRef.Name != "" {
		out = append(out, obj.Spec.PoolRef.Name)
	}
	for _, r := range obj.Spec.PoolRefs {
		if r.Name != "" && len(out) < MaxPools+1 {
			out = append(out, r.Name)
		}
	}
	return out
}

// PriorityCriticality maps an InferenceObjective's priority onto the
// shedding classes: negative is Sheddable, 0 (also an unset priority)
// Standard, positive Critical. The upstream sheds exactly the negative
// priorities when the pool is saturated (llm-d/llm-d-router
// pkg/epp/requestcontrol/admission.go rejectIfSheddableAndSaturated, with
// pkg/epp/util/request/sheddable.go IsSheddable: priority < 0) and never
// the others; here 0 is Standard so that a request naming an objective of
// priority 0 fares as one naming none, which is also refused only at a real
// overload (ShedStandard). Priorities are otherwise not ordered within a
// class: -1 and -100 are shed at the same threshold (the upstream's
// saturation check does not order them either; only its flow-control
// queues do, which the picker does not have).
func PriorityCriticality(p int32) pickapi.Criticality {
	switch {
	case p < 0:
		return pickapi.Sheddable
	case p == 0:
		return pickapi.Standard
	}
	return pickapi.Critical
}
