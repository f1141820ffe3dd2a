package deploycheck

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func k8sObjects(t *testing.T, rel string) []any {
	t.Helper()
	objs, err := K8sObjects(read(t, rel))
	require.NoError(t, err)
	return objs
}

func pickerObjects(t *testing.T, src string) ([]any, error) {
	t.Helper()
	objs, err := K8sObjects([]byte(src))
	if err != nil {
		return nil, err
	}
	rbac := k8sObjects(t, "istio/picker-rbac.yaml")
	return append(objs, rbac...), nil
}

func serverSource(t *testing.T) string {
	b, err := os.ReadFile("../../picker-svc/internal/server/server.go")
	require.NoError(t, err)
	return string(b)
}

func TestPickerManifests(t *testing.T) {
	objs, err := pickerObjects(t, string(read(t, "istio/picker-deployment.yaml")))
	require.NoError(t, err)
	require.NoError(t, CheckPicker(objs, samplePoolName(t), serverSource(t)))
}

func TestPickerManifestsReject(t *testing.T) {
	src := string(read(t, "istio/picker-deployment.yaml"))
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", "replicas: 3", "replica: 3", "replica"},
		{"wrong type", "replicas: 3", "replicas: one", "replicas"},
		{"one replica", "replicas: 3", "replicas: 1", "at least 2"},
		{"budget stops the rollout", "minAvailable: 2", "minAvailable: 3", "minAvailable 3"},
		{"budget selects nothing", "spec:\n  minAvailable: 2\n  selector:\n    matchLabels:\n      app: picker-svc", "spec:\n  minAvailable: 2\n  selector:\n    matchLabels:\n      app: picker", "PodDisruptionBudget selector"},
		{"not spread", "topologyKey: kubernetes.io/hostname", "topologyKey: topology.kubernetes.io/zone", "topologySpreadConstraint"},
		{"ready replicas only", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false", "publishNotReadyAddresses"},
		{"peers elsewhere", "--replica-peers=picker-svc-gossip:7946", "--replica-peers=picker-svc:7946", "--replica-peers"},
		{"no UDP", "    targetPort: udp-gossip\n    protocol: UDP", "    targetPort: udp-gossip\n    protocol: TCP", "over TCP and UDP"},
		{"surge only", "maxUnavailable: 0", "maxUnavailable: 1", "maxUnavailable 0"},
		{"probe path the picker does not serve", "path: /readyz", "path: /ready", "/ready"},
		{"port mismatch", "- --listen=:9002", "- --listen=:9003", "--listen"},
		{"other pool", "- --pool=vllm-llama2-7b-pool", "- --pool=other", "--pool"},
		{"service selects nothing", "  selector:\n    app: picker-svc\n  ports:", "  selector:\n    app: picker\n  ports:", "Service selector"},
		{"root allowed", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "privilege"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := pickerObjects(t, string(mutate(t, src, tc.old, tc.new)))
			if err == nil {
				err = CheckPicker(objs, samplePoolName(t), serverSource(t))
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
