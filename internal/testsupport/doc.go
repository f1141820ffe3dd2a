// Package testsupport holds, in its subpackages, what product unit tests
// share with the e2e harness: envoystats (Envoy's stat tag extraction and
// Prometheus naming) and wasmvm (the parts of the SDK's proxytest wasm VM a
// long run needs). They live here, not under e2e/, so that a product test
// need not import the harness.
//
// The rules, checked by TestImportRules:
//   - only _test.go files, e2e/ and testsupport itself import testsupport;
//   - nothing outside e2e/ imports e2e/, except the benchmark tools (bench/,
//     cmd/), which run the simulated fleet (e2e/stack, e2e/vllmsim).
package testsupport
