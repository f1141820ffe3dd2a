// Package inference reads InferencePool, InferenceModel, InferenceObjective
// and InferenceModelRewrite objects, the same YAML from files and (as
// unstructured JSON) from the Kubernetes API, and turns them into the
// picker's plain Pool, Model, Objective and Rewrite types.
//
// Accepted: inference.networking.x-k8s.io v1alpha1 and v1alpha2 (InferencePool
// and InferenceModel), inference.networking.k8s.io/v1 (InferencePool), and
// InferenceObjective / InferenceModelRewrite v1alpha2 in either
// inference.networking.x-k8s.io or llm-d.ai (objectives.go).
// Every error names the object and the field.
package inference

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"sigs.k8s.io/yaml"
)

// API groups and kinds.
const (
	GroupXK8s = "inference.networking.x-k8s.io"
	GroupK8s  = "inference.networking.k8s.io"
	KindPool  = "InferencePool"
	KindModel = "InferenceModel"
	// GroupLLMD is where llm-d's router now serves InferenceObjective and
	// InferenceModelRewrite (llm-d/llm-d-router
	// config/crd/bases/llm-d.ai_inferenceobjectives.yaml); its reconcilers
	// still read the x-k8s.io group, logging it as deprecated.
	GroupLLMD     = "llm-d.ai"
	KindObjective = "InferenceObjective"
	KindRewrite   = "InferenceModelRewrite"
	MaxWeight     = pickapi.MaxTargetWeight
	MaxTargets    = 64
)

// EngineAnnotation on an InferencePool names its pods' metrics dialect
// (scrape.Engine: auto, vllm, sglang, triton-trtllm); absent, the picker's
// --engine applies.
const EngineAnnotation = "meshllm.io/engine"

// Pool is an InferencePool: which pods (selector, port) serve a set of models
// and how the picker routes among them.
type Pool struct {
	Name       string
	Namespace  string
	APIVersion string
	TargetPort int32
	Selector   map[string]string
	Strategy   pickapi.Strategy
	// Engine is the EngineAnnotation's value, "" when absent.
	Engine scrape.Engine
	// ExtensionRef names the endpoint picker service the pool expects
	// (informational: the picker does not check it is itself).
	ExtensionRef string
}

// Target is one weighted target model of an InferenceModel or an
// InferenceModelRewrite rule: the wire contract's type, so that the
// resolution table a filter keeps (pickapi.Resolution) holds the same.
type Target = pickapi.Target

// Model is an InferenceModel: a model name clients use, mapped onto weighted
// target models in one pool.
type Model struct {
	Name        string // object name
	Namespace   string
	ModelName   string // what clients put in "model"
	Criticality pickapi.Criticality
	// CriticalitySet: the object declares its criticality (else Standard
	// by default), so an InferenceObjective's priority overriding it is a
	// conflict worth reporting.
	CriticalitySet bool
	PoolName       string
	Targets        []Target
}

// Objects is what one or more YAML documents declare.
type Objects struct {
	Pools      []Pool
	Models     []Model
	Objectives []Objective
	Rewrites   []Rewrite
}

// wire shapes: a superset of every accepted version's fields.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
		// CreationTimestamp orders InferenceModelRewrites (the oldest
		// wins a tie); RFC 3339 as the API server writes it.
		CreationTimestamp string `json:"creationTimestamp"`
		Generation        int64  `json:"generation"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

type poolSpecAlpha struct {
	TargetPortNumber *int64          `json:"targetPortNumber"`
	Selector         json.RawMessage `json:"selector"`
	ExtensionRef     *struct {
		Name string `json:"name"`
	} `json:"extensionRef"`
}

type poolSpecV1 struct {
	TargetPorts []struct {
		Number int64 `json:"number"`
	} `json:"targetPorts"`
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	EndpointPickerRef *struct {
		Name string `json:"name"`
	} `json:"endpointPickerRef"`
}

type modelSpec struct {
	ModelName   string  `json:"modelName"`
	Criticality *string `json:"criticality"`
	PoolRef     struct {
		Group string `json:"group"`
		Kind  string `json:"kind"`
		Name  string `json:"name"`
	} `json:"poolRef"`
	TargetModels []struct {
		Name   string `json:"name"`
		Weight *int64 `json:"weight"`
	} `json:"targetModels"`
}

// ObjectError names the object and field an error is about.
type ObjectError struct {
	Kind, Name, Field, Msg string
}

func (e *ObjectError) Error() string {
	name := e.Name
	if name == "" {
		name = "<unnamed>"
	}
	if e.Field == "" {
		return fmt.Sprintf("%s %q: %s", e.Kind, name, e.Msg)
	}
	return fmt.Sprintf("%s %q: %s: %s", e.Kind, name, e.Field, e.Msg)
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// ParseYAML reads every document of a (multi-document) YAML stream. Documents
// of other kinds are ignored so that one file can hold a whole deployment.
func ParseYAML(data []byte) (Objects, error) {
	var out Objects
	var errs []error
	for _, doc := range docSep.Split(string(data), -1) {
		if len(bytes.TrimSpace([]byte(doc))) == 0 {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			errs = append(errs, fmt.Errorf("yaml: %w", err))
			continue
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		if err := out.addJSON(j); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Objects{}, err
	}
	return out, out.check()
}

// ParseJSON reads one object as JSON (what an unstructured object from the
// Kubernetes API marshals to).
func ParseJSON(j []byte) (Objects, error) {
	var out Objects
	if err := out.addJSON(j); err != nil {
		return Objects{}, err
	}
	return out, nil
}

func (o *Objects) addJSON(j []byte) error {
	var obj object
	if err := json.Unmarshal(j, &obj); err != nil {
		return fmt.Errorf("object: %w", err)
	}
	switch obj.Kind {
	case KindPool:
		p, err := parsePool(&obj)
		if err != nil {
			return err
		}
		o.Pools = append(o.Pools, p)
	case KindModel:
		m, err := parseModel(&obj)
		if err != nil {
			return err
		}
		o.Models = append(o.Models, m)
	case KindObjective:
		ob, err := parseObjective(&obj)
		if err != nil {
			return err
		}
		o.Objectives = append(o.Objectives, ob)
	case KindRewrite:
		rw, err := parseRewrite(&obj)
		if err != nil {
			return err
		}
		o.Rewrites = append(o.Rewrites, rw)
	}
	return nil
}

// check rejects duplicates: two pools of one name, or two InferenceModels
// claiming one modelName in one pool.
func (o *Objects) check() error {
	pools := map[string]bool{}
	for _, p := range o.Pools {
		if pools[p.Namespace+"/"+p.Name] {
			return &ObjectError{KindPool, p.Name, "metadata.name", "declared twice"}
		}
		pools[p.Namespace+"/"+p.Name] = true
	}
	models := map[string]string{}
	for _, m := range o.Models {
		k := m.PoolName + "\x00" + m.ModelName
		if other, dup := models[k]; dup {
			return &ObjectError{KindModel, m.Name, "spec.modelName",
				fmt.Sprintf("%q is already served in pool %q by InferenceModel %q", m.ModelName, m.PoolName, other)}
		}
		models[k] = m.Name
	}
	for _, set := range []struct {
		kind  string
		names []string
	}{{KindObjective, objectiveKeys(o.Objectives)}, {KindRewrite, rewriteKeys(o.Rewrites)}} {
		seen := map[string]bool{}
		for _, k := range set.names {
			if seen[k] {
				_, name, _ := strings.Cut(k, "/")
				return &ObjectError{set.kind, name, "metadata.name", "declared twice"}
			}
			seen[k] = true
		}
	}
	return nil
}

func parsePool(obj *object) (Pool, error) {
	p := Pool{Name: obj.Metadata.Name, Namespace: obj.Metadata.Namespace, APIVersion: obj.APIVersion, Strategy: pickapi.DefaultStrategy}
	fail := func(field, format string, a ...any) (Pool, error) {
		return Pool{}, &ObjectError{KindPool, p.Name, field, fmt.Sprintf(format, a...)}
	}
	if p.Name == "" {
		return fail("metadata.name", "is required")
	}
	if s, ok := obj.Metadata.Annotations[pickapi.RoutingStrategyAnnotation]; ok {
		st, err := pickapi.ParseStrategy(s)
		if err != nil {
			return fail("metadata.annotations["+pickapi.RoutingStrategyAnnotation+"]", "%v", err)
		}
		p.Strategy = st
	}
	if s, ok := obj.Metadata.Annotations[EngineAnnotation]; ok {
		e, err := scrape.ParseEngine(s)
		if err != nil {
			return fail("metadata.annotations["+EngineAnnotation+"]", "%v", err)
		}
		p.Engine = e
	}
	if len(obj.Spec) == 0 {
		return fail("spec", "is required")
	}
	switch obj.APIVersion {
	case GroupXK8s + "/v1alpha1", GroupXK8s + "/v1alpha2":
		var s poolSpecAlpha
		if err := json.Unmarshal(obj.Spec, &s); err != nil {
			return fail("spec", "%v", err)
		}
		if s.TargetPortNumber == nil {
			return fail("spec.targetPortNumber", "is required")
		}
		if *s.TargetPortNumber < 1 || *s.TargetPortNumber > 65535 {
			return fail("spec.targetPortNumber", "%d is not a port (1..65535)", *s.TargetPortNumber)
		}
		p.TargetPort = int32(*s.TargetPortNumber)
		sel, err := labelMap(s.Selector)
		if err != nil {
			return fail("spec.selector", "%v", err)
		}
		p.Selector = sel
		if s.ExtensionRef != nil {
			p.ExtensionRef = s.ExtensionRef.Name
		}
		if len(p.Selector) == 0 {
			return fail("spec.selector", "must hold at least one label")
		}
	case GroupK8s + "/v1":
		var s poolSpecV1
		if err := json.Unmarshal(obj.Spec, &s); err != nil {
			return fail("spec", "%v", err)
		}
		if len(s.TargetPorts) == 0 {
			return fail("spec.targetPorts", "must hold one port")
		}
		if n := s.TargetPorts[0].Number; n < 1 || n > 65535 {
			return fail("spec.targetPorts[0].number", "%d is not a port (1..65535)", n)
		}
		p.TargetPort = int32(s.TargetPorts[0].Number)
		p.Selector = s.Selector.MatchLabels
		if len(p.Selector) == 0 {
			return fail("spec.selector.matchLabels", "must hold at least one label")
		}
		if s.EndpointPickerRef != nil {
			p.ExtensionRef = s.EndpointPickerRef.Name
		}
	default:
		return fail("apiVersion", "%q is not supported (want %s/v1alpha1, %s/v1alpha2 or %s/v1)", obj.APIVersion, GroupXK8s, GroupXK8s, GroupK8s)
	}
	for k, v := range p.Selector {
		if k == "" {
			return fail("spec.selector", "empty label key (value %q)", v)
		}
	}
	return p, nil
}

// labelMap accepts a plain label map (v1alpha1/2) or {matchLabels: {...}}.
func labelMap(raw json.RawMessage) (map[string]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errors.New("must be a map of labels")
	}
	if ml, ok := m["matchLabels"].(map[string]any); ok && len(m) == 1 {
		m = ml
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("label %q must be a string", k)
		}
		out[k] = s
	}
	return out, nil
}

func parseModel(obj *object) (Model, error) {
	m := Model{Name: obj.Metadata.Name, Namespace: obj.Metadata.Namespace, Criticality: pickapi.Standard}
	fail := func(field, format string, a ...any) (Model, error) {
		return Model{}, &ObjectError{KindModel, m.Name, field, fmt.Sprintf(format, a...)}
	}
	if m.Name == "" {
		return fail("metadata.name", "is required")
	}
	switch obj.APIVersion {
	case GroupXK8s + "/v1alpha1", GroupXK8s + "/v1alpha2":
	default:
		return fail("apiVersion", "%q is not supported (want %s/v1alpha1 or %s/v1alpha2)", obj.APIVersion, GroupXK8s, GroupXK8s)
	}
	if len(obj.Spec) == 0 {
		return fail("spec", "is required")
	}
	var s modelSpec
	if err := json.Unmarshal(obj.Spec, &s); err != nil {
		return fail("spec", "%v", err)
	}
	if s.ModelName == "" {
		return fail("spec.modelName", "is required")
	}
	if len(s.ModelName) > pickapi.MaxNameLen {
		return fail("spec.modelName", "is longer than %d bytes", pickapi.MaxNameLen)
	}
	m.ModelName = s.ModelName
	if s.Criticality != nil {
		c, err := pickapi.ParseCriticality(*s.Criticality)
		if err != nil || *s.Criticality == "" {
			return fail("spec.criticality", "%q is not Critical, Standard or Sheddable", *s.Criticality)
		}
		m.Criticality, m.CriticalitySet = c, true
	}
	if s.PoolRef.Name == "" {
		return fail("spec.poolRef.name", "is required")
	}
	if s.PoolRef.Kind != "" && s.PoolRef.Kind != KindPool {
		return fail("spec.poolRef.kind", "%q is not %s", s.PoolRef.Kind, KindPool)
	}
	if g := s.PoolRef.Group; g != "" && g != GroupXK8s && g != GroupK8s {
		return fail("spec.poolRef.group", "%q is not %s or %s", g, GroupXK8s, GroupK8s)
	}
	m.PoolName = s.PoolRef.Name
	if len(s.TargetModels) > MaxTargets {
		return fail("spec.targetModels", "holds %d entries, the limit is %d", len(s.TargetModels), MaxTargets)
	}
	specs := make([]targetSpec, len(s.TargetModels))
	for i, t := range s.TargetModels {
		specs[i] = targetSpec{t.Name, t.Weight}
	}
	targets, total, ferr := weightedTargets("spec.targetModels", specs, targetRules{nameKey: "name", minWeight: 0, what: "target model"})
	if ferr != nil {
		return fail(ferr.field, "%s", ferr.msg)
	}
	m.Targets = targets
	if len(m.Targets) > 0 && total == 0 {
		return fail("spec.targetModels", "weights sum to 0")
	}
	// No targets: the model name itself is served.
	if len(m.Targets) == 0 {
		m.Targets = []Target{{Name: m.ModelName, Weight: 1}}
	}
	return m, nil
}

// SortedSelector renders a selector as "k=v,k=v" (stable, for logs and keys).
func SortedSelector(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + sel[k])
	}
	return b.String()
}
