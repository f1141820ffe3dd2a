package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/tetratelabs/wazero"
)

// The Wasm Image Specification Istio pulls (istio/istio pkg/wasm/imagefetcher.go
// implements it; the spec is solo-io/wasm spec/spec.md, "oci" variant, and
// spec/spec-compat.md, "compat" variant):
//
//   - oci: exactly two layers, the runtime config (a JSON document,
//     WasmConfigMediaType) and then the module itself, uncompressed
//     (WasmLayerMediaType). Istio requires the count of two and reads the
//     layer of the content media type byte for byte.
//   - compat: one application/vnd.oci.image.layer.v1.tar+gzip layer holding
//     plugin.wasm (and optionally runtime-config.json), the manifest
//     annotated module.wasm.image/variant=compat. What `docker build` of a
//     FROM scratch / COPY plugin.wasm recipe produces; Istio reads the last
//     layer's plugin.wasm.
const (
	WasmConfigMediaType types.MediaType = "application/vnd.module.wasm.config.v1+json"
	WasmLayerMediaType  types.MediaType = "application/vnd.module.wasm.content.layer.v1+wasm"

	// CompatVariantAnnotation marks a compat image whose layer is an OCI
	// tar+gzip layer (spec-compat.md, "Annotation").
	CompatVariantAnnotation = "module.wasm.image/variant"

	// PluginFileName is the module's name in a compat layer (Istio looks
	// for exactly this base name) and its title in an oci image.
	PluginFileName = "plugin.wasm"
	// RuntimeConfigFileName is the runtime config's name in both variants.
	RuntimeConfigFileName = "runtime-config.json"

	annotationTitle = "org.opencontainers.image.title"
)

// WasmVariant is one of the two layouts of the spec.
type WasmVariant string

const (
	WasmOCI    WasmVariant = "oci"
	WasmCompat WasmVariant = "compat"
)

// ParseWasmVariant accepts "oci" (the default when empty) or "compat".
func ParseWasmVariant(s string) (WasmVariant, error) {
	switch WasmVariant(s) {
	case "", WasmOCI:
		return WasmOCI, nil
	case WasmCompat:
		return WasmCompat, nil
	}
	return "", fmt.Errorf("wasm image variant %q: want %q or %q", s, WasmOCI, WasmCompat)
}

// RuntimeConfig is the spec's runtime config for an Envoy filter: type
// envoy_proxy, the proxy-wasm ABI versions the module exports, and the root
// ids it serves.
type RuntimeConfig struct {
	Type        string   `json:"type"`
	ABIVersions []string `json:"abiVersions"`
	Config      struct {
		RootIDs []string `json:"root_ids"`
	} `json:"config"`
}

// ProxyWasmABIVersions compiles module (wazero's interpreter: it validates
// the module without generating code) and returns the proxy-wasm ABI
// versions it exports (proxy_abi_version_*), refusing a file that is not a
// Wasm module or not a proxy-wasm filter.
func ProxyWasmABIVersions(ctx context.Context, module []byte) ([]string, error) {
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	m, err := r.CompileModule(ctx, module)
	if err != nil {
		return nil, fmt.Errorf("not a valid Wasm module: %w", err)
	}
	var out []string
	for name := range m.ExportedFunctions() {
		if v, ok := strings.CutPrefix(name, "proxy_abi_version_"); ok {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the module exports no proxy_abi_version_* function: not a proxy-wasm filter")
	}
	slices.Sort(out)
	return out, nil
}

// WasmMeta describes the filter image.
type WasmMeta struct {
	Variant WasmVariant
	RootID  string // the root_id Envoy configures (istio/envoyfilter.yaml: meshllm)
	Labels  map[string]string
	Created time.Time
}

// WasmImage packages module as a Wasm image of the given variant. The
// module is checked first (a valid Wasm module exporting a proxy-wasm ABI
// version), so a truncated or wrong file never reaches a registry.
func WasmImage(ctx context.Context, module []byte, meta WasmMeta) (v1.Image, error) {
	abis, err := ProxyWasmABIVersions(ctx, module)
	if err != nil {
		return nil, err
	}
	rc := RuntimeConfig{Type: "envoy_proxy", ABIVersions: abis}
	if meta.RootID != "" {
		rc.Config.RootIDs = []string{meta.RootID}
	}
	rcJSON, err := json.Marshal(rc)
	if err != nil {
		return nil, err
	}
	switch meta.Variant {
	case WasmOCI, "":
		return wasmOCIImage(module, rcJSON, meta)
	case WasmCompat:
		return wasmCompatImage(module, rcJSON, meta)
	}
	return nil, fmt.Errorf("wasm image variant %q: want %q or %q", meta.Variant, WasmOCI, WasmCompat)
}

// wasmOCIImage: the runtime config is both the manifest's config (so tools
// that sort artifacts by config media type see a Wasm module) and the
// first layer (where Istio and the spec's descriptors put it).
func wasmOCIImage(module, rcJSON []byte, meta WasmMeta) (v1.Image, error) {
	rcLayer := static.NewLayer(rcJSON, WasmConfigMediaType)
	modLayer := static.NewLayer(module, WasmLayerMediaType)
	rcDesc, err := describe(rcLayer, map[string]string{annotationTitle: RuntimeConfigFileName})
	if err != nil {
		return nil, err
	}
	modDesc, err := describe(modLayer, map[string]string{annotationTitle: PluginFileName})
	if err != nil {
		return nil, err
	}
	cfgDesc := *rcDesc
	cfgDesc.Annotations = nil
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        cfgDesc,
		Layers:        []v1.Descriptor{*rcDesc, *modDesc},
		Annotations:   manifestAnnotations(meta.Labels, meta.Created),
	}
	return newRawImage(m, rcJSON, rcLayer, modLayer)
}

func describe(l v1.Layer, annotations map[string]string) (*v1.Descriptor, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	n, err := l.Size()
	if err != nil {
		return nil, err
	}
	mt, err := l.MediaType()
	if err != nil {
		return nil, err
	}
	return &v1.Descriptor{MediaType: mt, Size: n, Digest: d, Annotations: annotations}, nil
}

// wasmCompatImage: plugin.wasm and runtime-config.json in one gzipped OCI
// layer of an otherwise empty image, annotated as the compat variant.
func wasmCompatImage(module, rcJSON []byte, meta WasmMeta) (v1.Image, error) {
	layer, err := tarLayer([]tarEntry{
		{name: PluginFileName, mode: 0o444, body: module},
		{name: RuntimeConfigFileName, mode: 0o444, body: rcJSON},
	}, meta.Created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{CreatedBy: "meshllm-images: " + PluginFileName, Created: v1.Time{Time: meta.Created}},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "wasip1", "wasm"
	cf.Created = v1.Time{Time: meta.Created}
	cf.Config.Labels = meta.Labels
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	anns := manifestAnnotations(meta.Labels, meta.Created)
	anns[CompatVariantAnnotation] = string(WasmCompat)
	return mutate.Annotations(img, anns).(v1.Image), nil
}

// manifestAnnotations: the image's labels as manifest annotations too (the
// OCI annotation keys are the same), plus its creation time.
func manifestAnnotations(labels map[string]string, created time.Time) map[string]string {
	out := map[string]string{"org.opencontainers.image.created": created.UTC().Format(time.RFC3339)}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

// tarEntry is one regular file or directory of a layer.
type tarEntry struct {
	name     string
	mode     int64
	uid, gid int
	dir      bool
	body     []byte
}

// tarLayer writes entries as a gzipped OCI layer with fixed times, so the
// same inputs give the same digest.
func tarLayer(entries []tarEntry, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if e.dir {
			h.Typeflag, h.Size, h.Name = tar.TypeDir, 0, strings.TrimSuffix(e.name, "/")+"/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return gzipLayer(buf.Bytes())
}
