// Package gateway holds the deployment files of meshllm's gateway path (a
// Gateway API Gateway and HTTPRoute to an InferencePool whose endpoint picker
// is picker-svc's ext_proc server) and, in deploy_test.go, their static
// validation with e2e/deploycheck's gateway-path checks (which the Helm
// chart's renderings pass too): strict decoding into the
// sigs.k8s.io/gateway-api and k8s.io/api types and cross-checks between the
// objects. Nothing here runs a gateway or
// a cluster.
package gateway
