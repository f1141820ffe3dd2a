// Package helm holds meshllm's Helm chart (meshllm/) and, in its tests, the
// chart's checks: rendered with Helm's Go library for each combination of
// values, every object is checked with e2e/deploycheck's validators (those
// the static files in istio/ and gateway/ pass), and the default rendering
// must equal the static files. Nothing here installs into a cluster.
package helm
