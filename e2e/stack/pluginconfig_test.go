package stack

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/pickapi"
)

// TestPluginConfigParses: the gateway's filter accepts the configuration
// and asks the picker where it serves.
func TestPluginConfigParses(t *testing.T) {
	c, err := config.Parse([]byte(PluginConfig("bench-pool", 400)))
	require.NoError(t, err)
	require.Equal(t, pickapi.Path, c.PickerPath)
	require.Equal(t, config.RouteBody, c.RouteOn)
	require.Equal(t, "bench-pool", c.Pool)
	require.Equal(t, 400, c.PickerTimeoutMillis)
	require.Equal(t, 1000, c.WatchdogMillis)
	c, err = config.Parse([]byte(PluginConfig("p", 2000)))
	require.NoError(t, err)
	require.Equal(t, 4000, c.WatchdogMillis)
}
