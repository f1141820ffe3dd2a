package images

import (
	"context"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"
)

// The smallest valid Wasm module: magic and version, no sections.
var emptyModule = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

func TestWasmImageRejects(t *testing.T) {
	ctx := context.Background()
	_, err := WasmImage(ctx, []byte("#!/bin/sh\n"), WasmMeta{})
	require.ErrorContains(t, err, "not a valid Wasm module")
	_, err = WasmImage(ctx, readWasm(t)[:4096], WasmMeta{})
	require.ErrorContains(t, err, "not a valid Wasm module", "a truncated module")
	_, err = WasmImage(ctx, emptyModule, WasmMeta{})
	require.ErrorContains(t, err, "not a proxy-wasm filter")
	_, err = WasmImage(ctx, readWasm(t), WasmMeta{Variant: "docker"})
	require.ErrorContains(t, err, `variant "docker"`)
	_, err = ParseWasmVariant("docker")
	require.ErrorContains(t, err, `want "oci" or "compat"`)
}

// Same inputs, same digest: a rebuild of the same sources pushes nothing new.
func TestImagesAreReproducible(t *testing.T) {
	at := time.Unix(1700000000, 0).UTC()
	meta := GoMeta{Name: "picker-svc", Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Ports: []int{9002}, Created: at,
		Labels: map[string]string{"org.opencontainers.image.version": "1"}}
	digest := func(bin string, m GoMeta) v1.Hash {
		img, err := GoImage([]byte(bin), m)
		require.NoError(t, err)
		d, err := img.Digest()
		require.NoError(t, err)
		return d
	}
	require.Equal(t, digest("binary", meta), digest("binary", meta))
	require.NotEqual(t, digest("binary", meta), digest("binary2", meta))

	module := readWasm(t)
	for _, v := range []WasmVariant{WasmOCI, WasmCompat} {
		a, err := WasmImage(context.Background(), module, WasmMeta{Variant: v, Created: at})
		require.NoError(t, err)
		b, err := WasmImage(context.Background(), module, WasmMeta{Variant: v, Created: at})
		require.NoError(t, err)
		da, _ := a.Digest()
		db, _ := b.Digest()
		require.Equal(t, da, db, v)
	}
}

func TestGoImageRejects(t *testing.T) {
	_, err := GoImage([]byte("x"), GoMeta{Name: "picker-svc"})
	require.ErrorContains(t, err, "OS and architecture are required")
	require.ErrorContains(t, GoBuild(context.Background(), GoTool(), ".", "./nothing", t.TempDir()+"/x", v1.Platform{OS: "windows", Architecture: "amd64"}), "Linux images")
}

func TestBuildAndPushReject(t *testing.T) {
	ctx := context.Background()
	plat := []v1.Platform{{OS: "linux", Architecture: "amd64"}}
	_, err := Build(ctx, Options{OutDir: t.TempDir(), Version: "1", Platforms: plat, WasmFile: "no/such.wasm"})
	require.ErrorContains(t, err, "make wasm")
	_, err = Build(ctx, Options{OutDir: t.TempDir(), Platforms: plat, WasmFile: wasmFile})
	require.ErrorContains(t, err, "version")

	_, err = Push(ctx, t.TempDir(), "", PushOptions{})
	require.ErrorContains(t, err, "REGISTRY")
	_, err = Push(ctx, t.TempDir(), "127.0.0.1:1/meshllm", PushOptions{})
	require.ErrorContains(t, err, "run make images first")
}
