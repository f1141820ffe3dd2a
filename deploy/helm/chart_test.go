package helm

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/meshllm/meshllm/e2e/deploycheck"
)

func readRepo(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../" + rel)
	require.NoError(t, err)
	return b
}

// defaults is what the chart's default values promise (the static files'
// names, images as make images pushes them with the placeholder registry).
func defaults(t *testing.T) want {
	t.Helper()
	objs, err := deploycheck.K8sObjects(readRepo(t, "istio/picker-rbac.yaml"))
	require.NoError(t, err)
	var role *rbacv1.Role
	for _, o := range objs {
		if r, ok := o.(*rbacv1.Role); ok {
			role = r
		}
	}
	require.NotNil(t, role)
	gwDocs, err := deploycheck.Docs(readRepo(t, "gateway/gateway.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(gwDocs[0]), "kind: Gateway\n")
	existingGateway = gwDocs[0]
	return want{
		namespace: "default", mesh: true, routeOn: "headers", meshPool: true, gatewayMade: true,
		pool: "vllm-llama2-7b-pool", poolPort: 8000, poolSelector: map[string]string{"app": "vllm-llama2-7b-pool"},
		poolService: "vllm-llama2-7b-pool", ingressNS: "istio-system", ingressPort: 8081,
		pickerImage: "registry.example.com/meshllm/picker-svc:0.1.0",
		wasmURL:     "oci://registry.example.com/meshllm/meshllm-wasm:0.1.0",
		replicas:    3, strategy: appsv1.RollingUpdateDeploymentStrategyType, meshRole: role, server: serverSource(t),
	}
}

// TestChartRenders renders every combination of paths, and custom images,
// replicas, strategies, names and ports, and checks every object.
func TestChartRenders(t *testing.T) {
	base := defaults(t)
	for _, tc := range []struct {
		name   string
		ns     string
		values map[string]any
		edit   func(*want)
	}{
		{name: "mesh only (defaults)"},
		{name: "mesh, body routing", values: set("mesh.routeOn", "body"), edit: func(w *want) { w.routeOn = "body" }},
		{name: "gateway only", values: set("mesh.enabled", false, "gateway.enabled", true),
			edit: func(w *want) { w.mesh, w.gateway = false, true }},
		{name: "both paths", values: set("gateway.enabled", true), edit: func(w *want) { w.gateway = true }},
		{name: "both paths, body routing", values: set("gateway.enabled", true, "mesh.routeOn", "body"),
			edit: func(w *want) { w.gateway, w.routeOn = true, "body" }},
		{
			name: "custom images, replicas, strategy, names and ports", ns: "llm",
			values: set(
				"images.registry", "ghcr.io/acme/meshllm", "images.tag", "1.2.3",
				"images.picker.repository", "mirror.example/picker", "images.picker.tag", "1.2.4",
				"images.wasm.sha256", strings.Repeat("ab", 32), "images.pullPolicy", "Always",
				"picker.replicas", 5, "picker.minAvailable", 3, "picker.gossipPort", 7000, "picker.logLevel", "debug",
				"pool.name", "qwen-pool", "pool.selector", map[string]any{"model": "qwen"}, "pool.targetPort", 8001,
				"pool.routingStrategy", "PREFIX_CACHE", "pool.service", "qwen",
				"mesh.ingressGateway.namespace", "gateways", "mesh.ingressGateway.port", 9443,
				"mesh.ingressGateway.selector", map[string]any{"app": "llm-gateway"}, "mesh.routeOn", "body",
				"mesh.picker.name", "picker", "mesh.picker.serviceAccountName", "picker",
				"gateway.enabled", true, "gateway.picker.name", "epp", "gateway.failureMode", "FailOpen",
				"gateway.gateway.create", false, "gateway.route.requestTimeout", "1h",
			),
			edit: func(w *want) {
				w.namespace, w.gateway, w.gatewayMade, w.routeOn = "llm", true, false, "body"
				w.pickerImage = "mirror.example/picker:1.2.4"
				w.wasmURL = "oci://ghcr.io/acme/meshllm/meshllm-wasm:1.2.3"
				w.replicas = 5
				w.pool, w.poolSelector, w.poolPort, w.poolService = "qwen-pool", map[string]string{"model": "qwen"}, 8001, "qwen"
				w.ingressNS, w.ingressPort = "gateways", 9443
			},
		},
		{name: "mesh without the pool", values: set("mesh.createInferencePool", false), edit: func(w *want) { w.meshPool = false }},
		{name: "one picker, Recreate", values: set("gateway.enabled", true, "picker.replicas", 1, "picker.strategy", map[string]any{"type": "Recreate"}),
			edit: func(w *want) { w.gateway, w.replicas, w.strategy = true, 1, appsv1.RecreateDeploymentStrategyType }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := base
			if tc.edit != nil {
				tc.edit(&w)
			}
			ns := tc.ns
			if ns == "" {
				ns = "default"
			}
			docs, err := render(ns, tc.values)
			require.NoError(t, err)
			require.NoError(t, checkRendering(docs, w))
		})
	}
}

// The checks are not vacuous: a rendering that breaks a promise fails.
func TestCheckRenderingRejects(t *testing.T) {
	base := defaults(t)
	docs, err := render("default", set("gateway.enabled", true))
	require.NoError(t, err)
	base.gateway = true
	require.NoError(t, checkRendering(docs, base))
	for _, tc := range []struct{ file, old, new, want string }{
		{"mesh-picker.yaml", "- --pool=vllm-llama2-7b-pool", "- --pool=other", "--pool"},
		{"mesh-picker.yaml", "replicas: 3", "replica: 3", "replica"},
		{"mesh-picker.yaml", "--replica-peers=picker-svc-gossip:7946", "--replica-peers=picker-svc:7946", "--replica-peers"},
		{"gateway-picker.yaml", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false", "publishNotReadyAddresses"},
		{"gateway-picker.yaml", "minAvailable: 2", "minAvailable: 3", "minAvailable 3"},
		{"mesh-wasmplugin.yaml", "number: 8081", "number: 8080", "port 8081"},
		{"mesh-wasmplugin.yaml", "route_on: headers", "route_onn: headers", "route_onn"},
		{"mesh-pool-cluster.yaml", "portNumber: 8000", "portNumber: 8001", "cluster match"},
		{"mesh-inferencepool.yaml", "name: picker-svc", "name: picker-epp", "extensionRef"},
		{"gateway-inferencepool.yaml", "number: 9002", "number: 9004", "not a port of Service"},
		{"gateway-route.yaml", "kind: InferencePool", "kind: Service", "kind"},
		{"gateway-picker.yaml", "--ext-proc-listen=:9004", "--ext-proc-listen=:9005", "--ext-proc-listen"},
		{"gateway-picker-rbac.yaml", `resources: ["pods"]`, `resources: ["pods", "secrets"]`, "istio/picker-rbac.yaml"},
	} {
		t.Run(tc.file+" "+tc.old, func(t *testing.T) {
			mutated := make([]doc, len(docs))
			copy(mutated, docs)
			hit := false
			for i, d := range mutated {
				if d.file == tc.file && strings.Contains(string(d.raw), tc.old) && !hit {
					mutated[i].raw = []byte(strings.Replace(string(d.raw), tc.old, tc.new, 1))
					hit = true
				}
			}
			require.True(t, hit, "mutation target missing")
			require.ErrorContains(t, checkRendering(mutated, base), tc.want)
		})
	}
	// A rendering that lost an object, or gained a path it was not asked for.
	var noCluster []doc
	for _, d := range docs {
		if d.file != "mesh-pool-cluster.yaml" {
			noCluster = append(noCluster, d)
		}
	}
	require.ErrorContains(t, checkRendering(noCluster, base), "no pool-cluster EnvoyFilter")
	base.gateway = false
	require.ErrorContains(t, checkRendering(docs, base), "gateway path disabled")
}

// Values the schema refuses, with the path of the bad key in the answer.
func TestChartRejectsValues(t *testing.T) {
	for _, tc := range []struct {
		values map[string]any
		want   string
	}{
		{set("mesh.routeon", "body"), "routeon"},
		{set("mesh.routeOn", "both"), "routeOn"},
		{set("picker.replicas", 0), "replicas"},
		{set("images.wasm.sha256", "sha256:abc"), "sha256"},
		{set("pool.routingStrategy", "ROUND_ROBIN"), "routingStrategy"},
		{set("pool.name", "Not_A_Name"), "name"},
		{set("gateway.failureMode", "Open"), "failureMode"},
		{set("picker.strategy", map[string]any{"type": "BlueGreen"}), "type"},
		{set("mesh.ingressGateway.port", 70000), "port"},
	} {
		_, err := render("default", tc.values)
		require.ErrorContains(t, err, tc.want, "%v", tc.values)
	}
}
