// Command meshllm-images builds meshllm's container images without a
// container engine and pushes them:
//
//	meshllm-images build --version 0.1.0 [--out build/images] [--wasm wasm/meshllm.wasm]
//	                     [--wasm-variant oci|compat] [--platforms linux/amd64,linux/arm64]
//	meshllm-images push --registry registry.example.com/meshllm [--out build/images] [--insecure]
//
// build writes one OCI image layout per image under --out (picker-svc,
// vllm-sim, meshllm-wasm); push sends them to <registry>/<name>:<version>.
// `make images` and `make images REGISTRY=... push` run these.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/meshllm/meshllm/deploy/images"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshllm-images:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  meshllm-images build --version V [--out DIR] [--wasm FILE] [--wasm-variant oci|compat] [--platforms LIST] [--revision R] [--created UNIX]
  meshllm-images push --registry HOST[:PORT]/PREFIX [--out DIR] [--insecure]
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("want a subcommand: build or push")
	}
	switch args[0] {
	case "build":
		return build(ctx, args[1:], stdout, stderr)
	case "push":
		return push(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func build(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshllm-images build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "build/images", "directory of the OCI layouts (one per image) and the binaries")
	version := fs.String("version", "", "image tag, e.g. 0.1.0 (required)")
	revision := fs.String("revision", "", "VCS revision recorded as org.opencontainers.image.revision")
	created := fs.String("created", "0", "creation time in Unix seconds (e.g. the commit time), so that rebuilds of the same sources are identical")
	wasm := fs.String("wasm", "wasm/meshllm.wasm", "the filter module (make wasm)")
	variant := fs.String("wasm-variant", string(images.WasmOCI), "Wasm image layout: oci (two layers, the Wasm media types) or compat (one tar layer holding plugin.wasm)")
	platforms := fs.String("platforms", "linux/amd64", "comma-separated platforms of the service images; more than one makes an image index")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *version == "" {
		return errors.New("--version is required")
	}
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil {
		return fmt.Errorf("--created %q: want Unix seconds", *created)
	}
	v, err := images.ParseWasmVariant(*variant)
	if err != nil {
		return err
	}
	var plats []v1.Platform
	for _, s := range strings.Split(*platforms, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("--platforms %q: %w", s, err)
		}
		plats = append(plats, *p)
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	res, err := images.Build(ctx, images.Options{
		ModuleDir: wd, OutDir: *out, Version: *version, Revision: *revision,
		Created: time.Unix(secs, 0).UTC(), Platforms: plats, WasmFile: *wasm, WasmVariant: v,
	})
	if err != nil {
		return err
	}
	for _, r := range res {
		fmt.Fprintf(stdout, "%-13s %s  %s  (%s)\n", r.Name, *version, r.Digest, r.Layout)
	}
	return nil
}

func push(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshllm-images push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "build/images", "directory of the OCI layouts meshllm-images build wrote")
	registry := fs.String("registry", "", "registry and prefix, e.g. registry.example.com/meshllm (required)")
	insecure := fs.Bool("insecure", false, "plain HTTP to the registry (localhost and 127.0.0.1 use it without this flag)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	pushed, err := images.Push(ctx, *out, *registry, images.PushOptions{Insecure: *insecure})
	for _, p := range pushed {
		fmt.Fprintf(stdout, "%-13s %s@%s\n", p.Name, p.Ref, p.Digest)
	}
	return err
}
