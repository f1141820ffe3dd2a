package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/picker-svc/internal/config"
	"github.com/meshllm/meshllm/picker-svc/internal/discovery"
)

func TestKubeResources(t *testing.T) {
	cfg := config.Defaults()
	var k discovery.Kubernetes
	require.NoError(t, kubeResources(&cfg, &k))
	require.Equal(t, discovery.PoolsV1alpha2, k.PoolGVR)
	require.Equal(t, discovery.ModelsV1alpha2, *k.ModelGVR)
	require.Equal(t, discovery.ObjectivesV1alpha2, *k.ObjectiveGVR)
	require.Equal(t, discovery.RewritesV1alpha2, *k.RewriteGVR)

	cfg.Discovery.ObjectiveAPI, cfg.Discovery.RewriteAPI, cfg.Discovery.ModelAPI = "llm-d.ai/v1alpha2", "none", ""
	k = discovery.Kubernetes{}
	require.NoError(t, kubeResources(&cfg, &k))
	require.Equal(t, discovery.ObjectivesLLMDV1alpha2, *k.ObjectiveGVR)
	require.Nil(t, k.RewriteGVR)
	require.Nil(t, k.ModelGVR)

	for _, bad := range []string{"v1alpha2", "llm-d.ai/", "/v1", "a/b/c"} {
		cfg.Discovery.RewriteAPI = bad
		require.ErrorContains(t, kubeResources(&cfg, &discovery.Kubernetes{}), `rewriteAPI: api version "`+bad+`"`)
	}
}
