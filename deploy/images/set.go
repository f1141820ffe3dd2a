package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Service is one Go service image of the set.
type Service struct {
	Name        string // image name and binary name
	Package     string // main package, relative to the module root
	Description string
	Ports       []int
}

// Services are the Go images `make images` builds.
var Services = []Service{
	{Name: "picker-svc", Package: "./picker-svc", Ports: []int{9002, 9004},
		Description: "meshllm picker-svc: LLM-aware endpoint picker for vLLM pools (pick API and Envoy ext_proc)"},
	{Name: "vllm-sim", Package: "./e2e/vllmsim/cmd/vllm-sim", Ports: []int{8000},
		Description: "meshllm vllm-sim: a simulated vLLM server for demos and tests without GPUs"},
}

// WasmName is the image name of the filter.
const WasmName = "meshllm-wasm"

// Names lists every image of the set, in build order.
func Names() []string {
	out := []string{}
	for _, s := range Services {
		out = append(out, s.Name)
	}
	return append(out, WasmName)
}

// Options of Build.
type Options struct {
	ModuleDir   string // the repository root
	OutDir      string // each image's OCI layout goes to OutDir/<name>, binaries to OutDir/bin
	Version     string // the tag, recorded in each layout's index
	Revision    string // optional VCS revision label
	Created     time.Time
	Platforms   []v1.Platform // of the Go images; an index when more than one
	WasmFile    string        // wasm/meshllm.wasm
	WasmVariant WasmVariant
	GoTool      string // default GoTool()
}

// Result is one image written.
type Result struct {
	Name     string
	Layout   string            // its OCI layout directory
	Digest   v1.Hash           // of the image (or index) in the layout
	Binaries map[string]string // Go images: platform -> the binary packaged
}

// Build compiles the services, packages them and the filter, and writes
// one OCI layout per image.
func Build(ctx context.Context, o Options) ([]Result, error) {
	if o.Version == "" {
		return nil, errors.New("a version (the image tag) is required")
	}
	if len(o.Platforms) == 0 {
		return nil, errors.New("at least one platform is required")
	}
	if o.GoTool == "" {
		o.GoTool = GoTool()
	}
	module, err := os.ReadFile(o.WasmFile)
	if err != nil {
		return nil, fmt.Errorf("the filter module: %w (make wasm builds it)", err)
	}
	var out []Result
	for _, s := range Services {
		r, err := buildService(ctx, o, s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	img, err := WasmImage(ctx, module, WasmMeta{
		Variant: o.WasmVariant,
		RootID:  "meshllm",
		Labels:  labels(WasmName, "meshllm Wasm HTTP filter for Envoy and Istio (proxy-wasm; Wasm Image Specification, "+string(variantOr(o.WasmVariant))+" variant)", o),
		Created: o.Created,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.WasmFile, err)
	}
	r := Result{Name: WasmName, Layout: filepath.Join(o.OutDir, WasmName)}
	if r.Digest, err = WriteLayout(r.Layout, img, o.Version); err != nil {
		return nil, err
	}
	return append(out, r), nil
}

func variantOr(v WasmVariant) WasmVariant {
	if v == "" {
		return WasmOCI
	}
	return v
}

func buildService(ctx context.Context, o Options, s Service) (Result, error) {
	r := Result{Name: s.Name, Layout: filepath.Join(o.OutDir, s.Name), Binaries: map[string]string{}}
	var adds []mutate.IndexAddendum
	for _, p := range o.Platforms {
		bin := filepath.Join(o.OutDir, "bin", p.OS+"_"+p.Architecture+p.Variant, s.Name)
		if err := GoBuild(ctx, o.GoTool, o.ModuleDir, s.Package, bin, p); err != nil {
			return r, err
		}
		r.Binaries[p.String()] = bin
		b, err := os.ReadFile(bin)
		if err != nil {
			return r, err
		}
		img, err := GoImage(b, GoMeta{Name: s.Name, Platform: p, Ports: s.Ports, Labels: labels(s.Name, s.Description, o), Created: o.Created})
		if err != nil {
			return r, err
		}
		p := p
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	var err error
	if len(adds) == 1 {
		r.Digest, err = WriteLayout(r.Layout, adds[0].Add, o.Version)
	} else {
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
		r.Digest, err = WriteLayout(r.Layout, idx, o.Version)
	}
	return r, err
}

// labels are the OCI annotation keys, set both as image labels and as
// manifest annotations.
func labels(title, description string, o Options) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       title,
		"org.opencontainers.image.description": description,
		"org.opencontainers.image.version":     o.Version,
	}
	if o.Revision != "" {
		l["org.opencontainers.image.revision"] = o.Revision
	}
	return l
}
