package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReplicaSettings(t *testing.T) {
	base := []string{"--endpoints", "10.0.0.1:8000"}
	c, err := Load(base, env(nil))
	require.NoError(t, err)
	rc, err := c.ReplicaConfig()
	require.NoError(t, err)
	require.False(t, rc.Enabled(), "off by default")

	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(key, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600))
	c, err = Load(append(base, "--replica-listen", ":7946", "--replica-peers", "picker-gossip.ns.svc:7946, 10.0.0.5:7946",
		"--replica-secret-key-file", key), env(map[string]string{"PICKER_REPLICA_ADVERTISE": "10.1.2.3"}))
	require.NoError(t, err)
	rc, err = c.ReplicaConfig()
	require.NoError(t, err)
	require.True(t, rc.Enabled())
	require.Equal(t, []string{"picker-gossip.ns.svc:7946", "10.0.0.5:7946"}, rc.Peers)
	require.Equal(t, "10.1.2.3:7946", rc.Advertise, "an IP alone takes the listen port")
	require.Len(t, rc.SecretKey, 32)
	require.Equal(t, 5*time.Millisecond, rc.FlushInterval, "defaults filled")

	f := filepath.Join(dir, "picker.yaml")
	require.NoError(t, os.WriteFile(f, []byte("replicas:\n  listen: \":7946\"\n  kubernetesService: picker-gossip\n  flushInterval: 2ms\n"), 0o600))
	c, err = Load(append(base, "--config", f), env(map[string]string{"POD_NAMESPACE": "llm"}))
	require.NoError(t, err)
	rc, err = c.ReplicaConfig()
	require.NoError(t, err)
	require.Equal(t, "picker-gossip", rc.KubernetesService)
	require.Equal(t, "llm", rc.Namespace)
	require.Equal(t, 2*time.Millisecond, rc.FlushInterval)

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--replica-peers", "10.0.0.5:7946"}, "set replicas.listen"},
		{[]string{"--replica-listen", "7946"}, "listen \"7946\""},
		{[]string{"--replica-listen", ":7946", "--replica-peers", "nohost"}, "peer \"nohost\""},
		{[]string{"--replica-listen", ":7946", "--replica-secret-key-file", filepath.Join(dir, "missing")}, "missing"},
	} {
		_, err := Load(append(base, bad.args...), env(nil))
		require.ErrorContains(t, err, bad.want, bad.args)
	}
	require.NoError(t, os.WriteFile(key, []byte("c2hvcnQ="), 0o600))
	_, err = Load(append(base, "--replica-listen", ":7946", "--replica-secret-key-file", key), env(nil))
	require.ErrorContains(t, err, "secret key is 5 bytes")
}
