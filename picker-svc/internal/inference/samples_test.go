package inference

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
)

// The Kubernetes samples in istio/ go through the same parser picker-svc
// uses for files and cluster objects (this check lives here because the
// package is internal to picker-svc; e2e/deploycheck checks the rest).
func readSamples(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"../../../istio/inferencepool.yaml", "../../../istio/inferencemodel.yaml"} {
		raw, err := os.ReadFile(p)
		require.NoError(t, err)
		b.WriteString("---\n")
		b.Write(raw)
		b.WriteString("\n")
	}
	return b.String()
}

func TestIstioSamples(t *testing.T) {
	src := readSamples(t)
	objs, err := ParseYAML([]byte(src))
	require.NoError(t, err)
	// ParseYAML skips other kinds: every document must have been one of ours.
	require.Equal(t, strings.Count(src, "\nkind: "), len(objs.Pools)+len(objs.Models))
	require.Len(t, objs.Pools, 1)
	pool := objs.Pools[0]
	require.Equal(t, "vllm-llama2-7b-pool", pool.Name)
	require.Equal(t, int32(8000), pool.TargetPort)
	require.Equal(t, "picker-svc", pool.ExtensionRef)
	byName := map[string]Model{}
	for _, m := range objs.Models {
		require.Equal(t, pool.Name, m.PoolName, m.Name)
		byName[m.ModelName] = m
	}
	require.Equal(t, pickapi.Criticality("Critical"), byName["sql-lora"].Criticality)
	require.Equal(t, pickapi.Criticality("Sheddable"), byName["batch"].Criticality)
	require.Equal(t, []Target{{Name: "tweet-summary-1", Weight: 90}, {Name: "tweet-summary-2", Weight: 10}}, byName["tweet-summary"].Targets)

	// The same parser refuses a broken sample.
	_, err = ParseYAML([]byte(strings.Replace(src, "weight: 90", "weight: -90", 1)))
	require.ErrorContains(t, err, "weight")
	_, err = ParseYAML([]byte(strings.Replace(src, "criticality: Critical", "criticality: Urgent", 1)))
	require.ErrorContains(t, err, "criticality")
}

// The gateway path's pool (gateway/inferencepool.yaml, InferencePool v1)
// through the same parser: the picker reads the pods, port, strategy and
// picker reference the gateway is told about.
func TestGatewaySample(t *testing.T) {
	raw, err := os.ReadFile("../../../gateway/inferencepool.yaml")
	require.NoError(t, err)
	objs, err := ParseYAML(raw)
	require.NoError(t, err)
	require.Len(t, objs.Pools, 1)
	pool := objs.Pools[0]
	require.Equal(t, "inference.networking.k8s.io/v1", pool.APIVersion)
	require.Equal(t, "vllm-llama2-7b-pool", pool.Name)
	require.Equal(t, int32(8000), pool.TargetPort)
	require.Equal(t, map[string]string{"app": "vllm-llama2-7b-pool"}, pool.Selector)
	require.Equal(t, pickapi.DefaultStrategy, pool.Strategy)
	require.Equal(t, "picker-epp", pool.ExtensionRef)

	_, err = ParseYAML([]byte(strings.Replace(string(raw), "routing-strategy: LATENCY", "routing-strategy: FASTEST", 1)))
	require.ErrorContains(t, err, "routing strategy")
}
