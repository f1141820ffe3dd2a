// Package deploycheck validates meshllm's deployment files statically, against
// the real API types, so that they cannot drift from the APIs or from the code:
// Envoy bootstraps against go-control-plane (strict protojson, ValidateAll,
// and every typed_config Any unpacked and validated recursively, since
// ValidateAll stops at an Any), Istio WasmPlugin and EnvoyFilter specs against
// istio.io/api (strict protojson, not Istio's own lenient unmarshaler),
// Kubernetes objects against k8s.io/api with unknown fields rejected, and the
// Wasm filter's pluginConfig through the filter's own parser.
//
// Nothing here runs Envoy, Istio or Kubernetes: these checks prove a document
// is well-formed and semantically consistent for the API versions vendored in
// go.mod, not that a particular proxy build accepts it.
package deploycheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	// Types that typed_config Any values in our files name: imported so that
	// they register with protoregistry.GlobalTypes (protojson resolves an
	// Any's @type there, and an unregistered type is an error, not a skip).
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	_ "google.golang.org/protobuf/types/known/wrapperspb"

	istioext "istio.io/api/extensions/v1alpha1"
	istionet "istio.io/api/networking/v1alpha3"
)

// strict refuses unknown fields (the default, spelled out because it is the
// point) and resolves Any types from the global registry.
var strict = protojson.UnmarshalOptions{DiscardUnknown: false, Resolver: protoregistry.GlobalTypes}

// YAMLToJSON converts one YAML document, refusing duplicate keys (a plain
// conversion keeps the last one silently).
func YAMLToJSON(doc []byte) ([]byte, error) {
	return yaml.YAMLToJSONStrict(doc)
}

// Unmarshal decodes one YAML document into m strictly and validates m and
// every message packed in an Any inside it.
func Unmarshal(doc []byte, m proto.Message) error {
	j, err := YAMLToJSON(doc)
	if err != nil {
		return err
	}
	if err := strict.Unmarshal(j, m); err != nil {
		return err
	}
	return ValidateDeep(m)
}

type validator interface{ ValidateAll() error }

// ValidateDeep runs the protoc-gen-validate rules (ValidateAll) on m and,
// because ValidateAll does not look inside google.protobuf.Any, unpacks every
// Any reachable from m and validates it the same way, recursively. An Any of
// a type that is not registered is an error.
func ValidateDeep(m proto.Message) error {
	var errs []error
	walk(m.ProtoReflect(), "", &errs)
	return errors.Join(errs...)
}

func walk(m protoreflect.Message, path string, errs *[]error) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", pathOr(path), err))
			return
		}
		walk(inner.ProtoReflect(), path+"<"+a.GetTypeUrl()+">", errs)
		return
	}
	if v, ok := m.Interface().(validator); ok {
		if err := v.ValidateAll(); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", pathOr(path), err))
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), errs)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fmt.Sprintf("%s[%v]", p, k.Interface()), errs)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walk(v.Message(), p, errs)
		}
		return true
	})
}

func pathOr(p string) string {
	if p == "" {
		return "<root>"
	}
	return strings.TrimPrefix(p, ".")
}

// Bootstrap parses an Envoy bootstrap (envoy.yaml) strictly and validates it
// deeply.
func Bootstrap(doc []byte) (*bootstrapv3.Bootstrap, error) {
	b := &bootstrapv3.Bootstrap{}
	if err := Unmarshal(doc, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Docs splits a multi-document YAML stream, dropping empty documents (only
// comments or whitespace).
func Docs(stream []byte) ([][]byte, error) {
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(stream), -1) {
		j, err := YAMLToJSON([]byte(d))
		if err != nil {
			return nil, err
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue
		}
		out = append(out, []byte(d))
	}
	return out, nil
}

// Object is the envelope of a Kubernetes object with its spec kept raw.
type Object struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   ObjectMeta      `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

// ObjectMeta is the part of metadata our manifests use; anything else is
// refused so a typo (e.g. "namspace") cannot pass unnoticed.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// StrictJSON decodes j into v refusing unknown fields and trailing data.
func StrictJSON(j []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the object")
	}
	return nil
}

// CustomResource decodes an Istio custom resource document: the envelope
// strictly, then spec strictly into spec (an istio.io/api message) with
// protojson, and validates it deeply.
func CustomResource(doc []byte, apiVersion, kind string, spec proto.Message) (Object, error) {
	var o Object
	j, err := YAMLToJSON(doc)
	if err != nil {
		return o, err
	}
	if err := StrictJSON(j, &o); err != nil {
		return o, fmt.Errorf("%s: %w", kind, err)
	}
	if o.APIVersion != apiVersion || o.Kind != kind {
		return o, fmt.Errorf("want %s %s, got %s %s", apiVersion, kind, o.APIVersion, o.Kind)
	}
	if o.Metadata.Name == "" {
		return o, fmt.Errorf("%s: metadata.name is empty", kind)
	}
	if len(o.Spec) == 0 {
		return o, fmt.Errorf("%s %q: no spec", kind, o.Metadata.Name)
	}
	if err := strict.Unmarshal(o.Spec, spec); err != nil {
		return o, fmt.Errorf("%s %q: spec: %w", kind, o.Metadata.Name, err)
	}
	if err := ValidateDeep(spec); err != nil {
		return o, fmt.Errorf("%s %q: spec: %w", kind, o.Metadata.Name, err)
	}
	return o, nil
}

// WasmPlugin decodes an extensions.istio.io/v1alpha1 WasmPlugin.
func WasmPlugin(doc []byte) (Object, *istioext.WasmPlugin, error) {
	w := &istioext.WasmPlugin{}
	o, err := CustomResource(doc, "extensions.istio.io/v1alpha1", "WasmPlugin", w)
	return o, w, err
}

// EnvoyFilter decodes a networking.istio.io/v1alpha3 EnvoyFilter and checks
// every patch value against the Envoy type it patches (see PatchValue).
func EnvoyFilter(doc []byte) (Object, *istionet.EnvoyFilter, error) {
	f := &istionet.EnvoyFilter{}
	o, err := CustomResource(doc, "networking.istio.io/v1alpha3", "EnvoyFilter", f)
	if err != nil {
		return o, f, err
	}
	for i, p := range f.GetConfigPatches() {
		if _, err := PatchValue(p); err != nil {
			return o, f, fmt.Errorf("EnvoyFilter %q: configPatches[%d] (%s): %w", o.Metadata.Name, i, p.GetApplyTo(), err)
		}
	}
	return o, f, nil
}

// PatchValue decodes an EnvoyFilter patch value (a free-form Struct in the
// Istio API) into the Envoy message its applyTo names, strictly, and
// validates it deeply. MERGE patches are partial messages (a partial Cluster
// or Listener legitimately lacks required fields such as its name or
// address), so for them see validateMerge.
func PatchValue(p *istionet.EnvoyFilter_EnvoyConfigObjectPatch) (proto.Message, error) {
	var m proto.Message
	switch p.GetApplyTo() {
	case istionet.EnvoyFilter_EXTENSION_CONFIG:
		m = &corev3.TypedExtensionConfig{}
	case istionet.EnvoyFilter_HTTP_FILTER:
		m = &hcmv3.HttpFilter{}
	case istionet.EnvoyFilter_CLUSTER:
		m = &clusterv3.Cluster{}
	case istionet.EnvoyFilter_LISTENER:
		m = &listenerv3.Listener{}
	case istionet.EnvoyFilter_NETWORK_FILTER:
		m = &listenerv3.Filter{}
	default:
		return nil, fmt.Errorf("applyTo %s: no Envoy type mapped in deploycheck (add one)", p.GetApplyTo())
	}
	v := p.GetPatch().GetValue()
	if v == nil {
		return nil, errors.New("patch has no value")
	}
	j, err := protojson.Marshal(v)
	if err != nil {
		return nil, err
	}
	if err := strict.Unmarshal(j, m); err != nil {
		return nil, err
	}
	if p.GetPatch().GetOperation() == istionet.EnvoyFilter_Patch_MERGE {
		var errs []error
		validateMerge(m.ProtoReflect(), "", &errs)
		return m, errors.Join(errs...)
	}
	return m, ValidateDeep(m)
}

// validateMerge validates a MERGE patch value the way proto merge applies
// it: the value itself is partial, so its own required fields are not
// checked, nor are those of a typed_config Any it sets (Istio merges a
// network or HTTP filter's typed_config into the existing one). Every other
// message it sets, and every element it appends to a list or map, is
// complete and validated deeply.
func validateMerge(m protoreflect.Message, path string, errs *[]error) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if err := ValidateDeep(l.Get(i).Message().Interface()); err != nil {
					*errs = append(*errs, fmt.Errorf("%s[%d]: %w", pathOr(p), i, err))
				}
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if err := ValidateDeep(mv.Message().Interface()); err != nil {
					*errs = append(*errs, fmt.Errorf("%s[%v]: %w", pathOr(p), k.Interface(), err))
				}
				return true
			})
		default:
			if a, ok := v.Message().Interface().(*anypb.Any); ok {
				inner, err := a.UnmarshalNew()
				if err != nil {
					*errs = append(*errs, fmt.Errorf("%s: %w", pathOr(p), err))
					return true
				}
				validateMerge(inner.ProtoReflect(), p+"<"+a.GetTypeUrl()+">", errs)
				return true
			}
			if err := ValidateDeep(v.Message().Interface()); err != nil {
				*errs = append(*errs, fmt.Errorf("%s: %w", pathOr(p), err))
			}
		}
		return true
	})
}

// StructJSON renders a Struct (a WasmPlugin pluginConfig) as the JSON the
// filter receives.
func StructJSON(s *structpb.Struct) ([]byte, error) {
	return protojson.Marshal(s)
}
