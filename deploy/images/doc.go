// Package images builds meshllm's container images without a container
// engine, with go-containerregistry: picker-svc and vllm-sim as static Linux
// binaries on a minimal base made here (no base image is pulled), running as
// a non-root user, and the Wasm filter as the OCI image Istio's WasmPlugin
// (and an EnvoyFilter's ECDS remote code) pulls. Each image is written as an
// OCI image layout; Push sends the layouts to a registry. cmd/meshllm-images
// is the command; `make images` and `make images REGISTRY=... push` run it.
package images
