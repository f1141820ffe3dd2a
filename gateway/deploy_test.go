package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshllm/meshllm/e2e/deploycheck"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The files of this folder, in the order docs/deploy.md applies them.
var files = []string{"picker-rbac.yaml", "picker-epp.yaml", "inferencepool.yaml", "gateway.yaml"}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(rel))
	require.NoError(t, err)
	return b
}

// sources returns the folder's files by name, so tests can mutate one.
func sources(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range files {
		out[f] = string(readFile(t, f))
	}
	return out
}

func decodeAll(src map[string]string) (*deploycheck.GatewayPath, error) {
	m := &deploycheck.GatewayPath{}
	for _, f := range files {
		if err := deploycheck.DecodeGatewayPath([]byte(src[f]), m); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return m, nil
}

type meshInputs struct {
	pool   deploycheck.MeshPool
	role   *rbacv1.Role
	server string
}

func loadMesh(t *testing.T) meshInputs {
	t.Helper()
	var in meshInputs
	require.NoError(t, yaml.Unmarshal(readFile(t, "../istio/inferencepool.yaml"), &in.pool))
	require.NotZero(t, in.pool.Spec.TargetPortNumber)
	objs, err := deploycheck.K8sObjects(readFile(t, "../istio/picker-rbac.yaml"))
	require.NoError(t, err)
	for _, o := range objs {
		if r, ok := o.(*rbacv1.Role); ok {
			in.role = r
		}
	}
	require.NotNil(t, in.role, "istio/picker-rbac.yaml has no Role")
	in.server = string(readFile(t, "../picker-svc/internal/server/server.go"))
	return in
}

func TestGatewayManifests(t *testing.T) {
	m, err := decodeAll(sources(t))
	require.NoError(t, err)
	mesh := loadMesh(t)
	require.NoError(t, deploycheck.CheckGatewayPath(m, mesh.pool, mesh.role, mesh.server))

	// What the docs promise, spelled out.
	c := m.Deployment.Spec.Template.Spec.Containers[0]
	require.Contains(t, c.Args, "--ext-proc-listen=:9004")
	require.Contains(t, c.Args, "--listen=:9002")
	require.Equal(t, int32(9002), m.Pool.Spec.EndpointPickerRef.Port.Number)
	require.Equal(t, "FailClose", m.Pool.Spec.EndpointPickerRef.FailureMode)
	require.Equal(t, "LATENCY", m.Pool.Metadata.Annotations["inference.networking.x-k8s.io/routing-strategy"])
}

func TestGatewayManifestsReject(t *testing.T) {
	mesh := loadMesh(t)
	for _, tc := range []struct{ name, file, old, new, want string }{
		{"unknown Gateway field", "gateway.yaml", "  gatewayClassName: istio", "  gatewayClass: istio", "gatewayClass"},
		{"field name in the wrong case", "gateway.yaml", "  gatewayClassName: istio", "  gatewayclassname: istio", "gatewayclassname"},
		{"unknown HTTPRoute field", "gateway.yaml", "backendRefs:", "backendRef:", "backendRef"},
		{"wrong type", "gateway.yaml", "port: 80", "port: eighty", "port"},
		{"duplicate key", "gateway.yaml", "  name: llm-route\n", "  name: llm-route\n  name: other\n", "name"},
		{"route parent is another gateway", "gateway.yaml", "    name: inference-gateway\n    sectionName", "    name: other-gateway\n    sectionName", "parentRefs[0]"},
		{"route parent listener missing", "gateway.yaml", "sectionName: http", "sectionName: https", "sectionName"},
		{"backend is a Service", "gateway.yaml", "kind: InferencePool", "kind: Service", "kind"},
		{"backend is the alpha group", "gateway.yaml", "- group: inference.networking.k8s.io", "- group: inference.networking.x-k8s.io", "group"},
		{"backend is another pool", "gateway.yaml", "      name: vllm-llama2-7b-pool", "      name: other-pool", "backendRefs[0]"},
		{"pool: pre-release portNumber", "inferencepool.yaml", "port:\n      number: 9002", "portNumber: 9002", "portNumber"},
		{"pool: alpha field", "inferencepool.yaml", "  targetPorts:\n  - number: 8000", "  targetPortNumber: 8000", "targetPortNumber"},
		{"pool: picker port not on the Service", "inferencepool.yaml", "number: 9002", "number: 9004", "not a port of Service"},
		{"pool: other picker", "inferencepool.yaml", "name: picker-epp", "name: picker-svc", "endpointPickerRef.name"},
		{"pool: bad failure mode", "inferencepool.yaml", "failureMode: FailClose", "failureMode: Open", "failureMode"},
		{"pool: other vLLM port", "inferencepool.yaml", "- number: 8000", "- number: 8080", "targetPorts"},
		{"pool selects the picker", "inferencepool.yaml", "      app: vllm-llama2-7b-pool", "      app: picker-epp", "matches the picker"},
		{"ext_proc flag port differs", "picker-epp.yaml", "- --ext-proc-listen=:9004", "- --ext-proc-listen=:9005", "--ext-proc-listen"},
		{"ext_proc flag missing", "picker-epp.yaml", "        - --ext-proc-listen=:9004\n", "", "--ext-proc-listen"},
		{"Service targets the HTTP port", "picker-epp.yaml", "targetPort: ext-proc", "targetPort: http", "--ext-proc-listen"},
		{"Service targets no container port", "picker-epp.yaml", "targetPort: ext-proc", "targetPort: grpc", "not a container port"},
		{"ext_proc port not HTTP/2", "picker-epp.yaml", "appProtocol: http2", "appProtocol: http", "appProtocol"},
		{"no HTTP Service port", "picker-epp.yaml", "    targetPort: http\n", "    targetPort: ext-proc\n", "HTTP listener"},
		{"picker watches the alpha API", "picker-epp.yaml", "poolAPI: inference.networking.k8s.io/v1", "poolAPI: inference.networking.x-k8s.io/v1alpha2", "poolAPI"},
		{"config not mounted", "picker-epp.yaml", "--config=/etc/picker/config.yaml", "--config=/etc/other/config.yaml", "not in a mounted ConfigMap"},
		{"other pool", "picker-epp.yaml", "--pool=vllm-llama2-7b-pool", "--pool=other", "--pool"},
		{"probe path not served", "picker-epp.yaml", "path: /readyz", "path: /ready", "/ready"},
		{"probe on the ext_proc port", "picker-epp.yaml", "path: /healthz\n            port: http", "path: /healthz\n            port: ext-proc", "liveness probe port"},
		{"Service selects nothing", "picker-epp.yaml", "  selector:\n    app: picker-epp\n  ports:", "  selector:\n    app: picker\n  ports:", "Service selector"},
		{"privilege escalation", "picker-epp.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "privilege"},
		{"Role drifts from the mesh path's", "picker-rbac.yaml", `resources: ["pods"]`, `resources: ["pods", "services"]`, "istio/picker-rbac.yaml"},
		{"binding to another account", "picker-rbac.yaml", "- kind: ServiceAccount\n  name: picker-epp", "- kind: ServiceAccount\n  name: default", "RoleBinding"},
		{"other namespace", "picker-rbac.yaml", "kind: Role\nmetadata:\n  name: picker-epp\n  namespace: default", "kind: Role\nmetadata:\n  name: picker-epp\n  namespace: llm", "namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := sources(t)
			require.Contains(t, src[tc.file], tc.old, "mutation target missing")
			src[tc.file] = strings.Replace(src[tc.file], tc.old, tc.new, 1)
			m, err := decodeAll(src)
			if err == nil {
				err = deploycheck.CheckGatewayPath(m, mesh.pool, mesh.role, mesh.server)
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// A pool without endpointPickerRef.port is refused for a Service (the v1
// API's CEL rule), whatever the kind is spelled as.
func TestInferencePoolPortRequiredForService(t *testing.T) {
	src := sources(t)
	for _, kind := range []string{"    kind: Service\n", ""} {
		s := strings.Replace(src["inferencepool.yaml"], "    kind: Service\n", kind, 1)
		s = strings.Replace(s, "    port:\n      number: 9002\n", "", 1)
		m := &deploycheck.GatewayPath{}
		require.NoError(t, deploycheck.DecodeGatewayPath([]byte(s), m))
		require.ErrorContains(t, m.Pool.Validate(), "port is required")
	}
}
