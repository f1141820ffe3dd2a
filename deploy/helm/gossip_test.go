package helm

import (
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/meshllm/meshllm/e2e/deploycheck"
)

// picker.gossipSecret mounts the key and passes its file to both pickers;
// without it (the default) nothing mounts it.
func TestChartGossipSecret(t *testing.T) {
	for _, secret := range []string{"", "picker-gossip-key"} {
		docs, err := render("default", set("gateway.enabled", true, "picker.gossipSecret", secret))
		require.NoError(t, err)
		deployments := 0
		for _, d := range docs {
			if d.kind != "Deployment" {
				continue
			}
			o, err := deploycheck.K8sObject(d.raw)
			require.NoError(t, err)
			dep := o.(*appsv1.Deployment)
			deployments++
			pod := dep.Spec.Template.Spec
			c := pod.Containers[0]
			var mounted, volume bool
			for _, m := range c.VolumeMounts {
				mounted = mounted || (m.Name == "gossip-key" && m.MountPath == "/etc/picker-gossip" && m.ReadOnly)
			}
			for _, v := range pod.Volumes {
				volume = volume || (v.Name == "gossip-key" && v.Secret != nil && v.Secret.SecretName == secret)
			}
			if secret == "" {
				require.NotContains(t, c.Args, "--replica-secret-key-file=/etc/picker-gossip/key", d.name)
				require.False(t, mounted || volume, d.name)
				continue
			}
			require.Contains(t, c.Args, "--replica-secret-key-file=/etc/picker-gossip/key", d.name)
			require.True(t, mounted && volume, d.name)
		}
		require.Equal(t, 2, deployments)
	}
}
