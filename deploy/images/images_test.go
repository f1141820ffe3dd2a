package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"
)

const wasmFile = "../../wasm/meshllm.wasm"

func readWasm(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(wasmFile)
	require.NoError(t, err, "the filter module is missing: run make wasm (make test does)")
	return b
}

// inProcessRegistry is go-containerregistry's registry behind httptest; its
// address is 127.0.0.1, which clients reach over plain HTTP.
func inProcessRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// pull fetches ref as istio-agent does: remote.Get, then the image.
func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	require.NoError(t, err)
	desc, err := remote.Get(r)
	require.NoError(t, err)
	img, err := desc.Image()
	require.NoError(t, err)
	return img
}

// TestImagesRoundTrip builds the whole set as `make images` does (the Go
// binaries once, for this machine's architecture so they can run here),
// pushes the layouts to an in-process registry, pulls each image back and
// checks what a cluster would get.
func TestImagesRoundTrip(t *testing.T) {
	module := readWasm(t)
	ctx := context.Background()
	out := t.TempDir()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := Build(ctx, Options{
		ModuleDir: "../..", OutDir: out, Version: "0.1.0-test", Revision: "0123abc", Created: created,
		Platforms: []v1.Platform{{OS: "linux", Architecture: runtime.GOARCH}}, WasmFile: wasmFile,
	})
	require.NoError(t, err)
	require.Len(t, res, len(Names()))

	host := inProcessRegistry(t)
	pushed, err := Push(ctx, out, host+"/meshllm", PushOptions{})
	require.NoError(t, err)
	require.Len(t, pushed, len(Names()))
	for i, p := range pushed {
		require.Equal(t, host+"/meshllm/"+p.Name+":0.1.0-test", p.Ref.String())
		require.Equal(t, res[i].Digest, p.Digest, "%s: the pushed image is the one in the layout", p.Name)
	}

	for _, r := range res[:len(Services)] {
		t.Run(r.Name, func(t *testing.T) {
			img := pull(t, host+"/meshllm/"+r.Name+":0.1.0-test")
			d, err := img.Digest()
			require.NoError(t, err)
			require.Equal(t, r.Digest, d)
			built, err := os.ReadFile(r.Binaries[(&v1.Platform{OS: "linux", Architecture: runtime.GOARCH}).String()])
			require.NoError(t, err)
			checkServiceImage(t, img, r.Name, built, created)
		})
	}

	t.Run(WasmName, func(t *testing.T) {
		img := pull(t, host+"/meshllm/"+WasmName+":0.1.0-test")
		got, err := istioOCIVariant(img)
		require.NoError(t, err)
		require.True(t, bytes.Equal(module, got), "the Wasm layer differs from %s", wasmFile)

		m, err := img.Manifest()
		require.NoError(t, err)
		require.Equal(t, types.OCIManifestSchema1, m.MediaType)
		require.Equal(t, WasmConfigMediaType, m.Config.MediaType)
		require.Equal(t, WasmConfigMediaType, m.Layers[0].MediaType)
		require.Equal(t, WasmLayerMediaType, m.Layers[1].MediaType)
		require.Equal(t, PluginFileName, m.Layers[1].Annotations["org.opencontainers.image.title"])
		require.Equal(t, "0.1.0-test", m.Annotations["org.opencontainers.image.version"])
		raw, err := img.RawConfigFile()
		require.NoError(t, err)
		var rc RuntimeConfig
		require.NoError(t, json.Unmarshal(raw, &rc))
		require.Equal(t, "envoy_proxy", rc.Type)
		require.Equal(t, []string{"0_2_0"}, rc.ABIVersions, "the proxy-wasm ABI the Go SDK exports")
		require.Equal(t, []string{"meshllm"}, rc.Config.RootIDs)
	})

	t.Run(WasmName+" compat", func(t *testing.T) {
		img, err := WasmImage(ctx, module, WasmMeta{Variant: WasmCompat, RootID: "meshllm", Created: created})
		require.NoError(t, err)
		ref, err := name.NewTag(host + "/meshllm/" + WasmName + ":compat")
		require.NoError(t, err)
		require.NoError(t, remote.Write(ref, img))
		img = pull(t, ref.String())
		m, err := img.Manifest()
		require.NoError(t, err)
		require.Len(t, m.Layers, 1)
		require.Equal(t, string(WasmCompat), m.Annotations[CompatVariantAnnotation])
		got, err := istioCompatVariant(img)
		require.NoError(t, err)
		require.True(t, bytes.Equal(module, got), "plugin.wasm differs from %s", wasmFile)
		// Istio tries compat first: an oci-variant image must not pass as one.
		_, err = istioCompatVariant(pull(t, host+"/meshllm/"+WasmName+":0.1.0-test"))
		require.Error(t, err)
	})
}

// checkServiceImage: the entrypoint is the binary that was built, the
// image runs as non-root, and the binary (extracted, run here) answers
// --help.
func checkServiceImage(t *testing.T, img v1.Image, bin string, built []byte, created time.Time) {
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, []string{"/" + bin}, cf.Config.Entrypoint)
	require.Equal(t, "linux", cf.OS)
	require.Equal(t, runtime.GOARCH, cf.Architecture)
	require.True(t, cf.Created.Equal(created))
	uid, _, _ := strings.Cut(cf.Config.User, ":")
	n, err := strconv.Atoi(uid)
	require.NoError(t, err, "User %q must be numeric (runAsNonRoot cannot check a name)", cf.Config.User)
	require.NotZero(t, n, "the image runs as root")
	require.Equal(t, NonRootUID, n)
	require.Equal(t, "0.1.0-test", cf.Config.Labels["org.opencontainers.image.version"])
	require.Equal(t, "0123abc", cf.Config.Labels["org.opencontainers.image.revision"])
	require.Equal(t, bin, cf.Config.Labels["org.opencontainers.image.title"])

	files := extract(t, img)
	require.True(t, bytes.Equal(built, files[bin].body), "the image's /%s is not the binary built", bin)
	requireStatic(t, built)
	require.Equal(t, int64(0o555), files[bin].mode)
	require.Contains(t, string(files["etc/passwd"].body), "nonroot:x:65532:65532:")
	require.Equal(t, int64(0o1777), files["tmp"].mode)

	exe := filepath.Join(t.TempDir(), bin)
	require.NoError(t, os.WriteFile(exe, files[bin].body, 0o755))
	outb, err := exec.Command(exe, "--help").CombinedOutput()
	require.NoError(t, err, "%s --help:\n%s", bin, outb)
	require.Contains(t, string(outb), "Usage of "+bin)
}

// requireStatic: the image has no libc or loader, so the binary must need
// neither (CGO off): no program interpreter, no shared libraries.
func requireStatic(t *testing.T, binary []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(binary))
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "the binary asks for a dynamic loader")
	}
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	require.Empty(t, libs)
}

type file struct {
	mode int64
	body []byte
}

// extract flattens the image's filesystem (mutate.Extract applies the
// layers in order, as a container runtime does).
func extract(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[strings.TrimSuffix(h.Name, "/")] = file{mode: h.Mode, body: b}
	}
}

// istioOCIVariant reads an image as istio/istio pkg/wasm/imagefetcher.go's
// extractOCIArtifactImage does: exactly two layers, the one of the Wasm
// content media type taken as it is stored.
func istioOCIVariant(img v1.Image) ([]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != 2 {
		return nil, errors.New("number of layers must be 2")
	}
	for _, l := range layers {
		mt, err := l.MediaType()
		if err != nil {
			return nil, err
		}
		if mt == WasmLayerMediaType {
			rc, err := l.Compressed()
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			return io.ReadAll(rc)
		}
	}
	return nil, errors.New("no layer of the Wasm content media type")
}

// istioCompatVariant reads an image as extractOCIStandardImage does: the
// last layer, an OCI tar+gzip layer, holding plugin.wasm.
func istioCompatVariant(img v1.Image) ([]byte, error) {
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		return nil, errors.New("no layers")
	}
	l := layers[len(layers)-1]
	if mt, err := l.MediaType(); err != nil || mt != types.OCILayer {
		return nil, errors.New("last layer is not application/vnd.oci.image.layer.v1.tar+gzip")
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, errors.New("plugin.wasm not found")
		}
		if filepath.Base(h.Name) == PluginFileName {
			return io.ReadAll(tr)
		}
	}
}
