package scenarios

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/loadgen"
	"github.com/meshllm/meshllm/e2e/stack"
)

// pickerMetric is one series' value on picker replica addr's /metrics.
func pickerMetric(t *testing.T, addr, series string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return counterValue(string(b), series)
}

// Three picker replicas behind the gateway's picker cluster, picks spread
// round robin: each applies its peers' picks and the ends the filter
// reports to whichever replica it reaches; one replica killed and
// restarted mid-run (it warms up from the others, and takes picks once
// ready) fails no request.
func TestReplicasShareAndSurviveARestart(t *testing.T) {
	s := start(t, stack.Config{Sims: sims(3, "base", 100), Objects: objects("PREFIX_CACHE"), Pool: "sim-pool", PluginConfig: routed(""),
		Pickers: 3, PickerSharing: true})
	addrs := s.PickerAddrs()
	require.Len(t, addrs, 3)
	send := func(n int) {
		for i := range n {
			r := client.Do(context.Background(), s.URL(stack.LLMListener), loadgen.Request{Body: loadgen.Completion("base", "q", 2, i%2 == 0)})
			require.True(t, r.OK(), "request %d: %d %s %v", i, r.Status, r.Body, r.Err)
		}
	}
	send(30)
	for _, a := range addrs {
		a := a
		eventually(t, 10*time.Second, "every replica applies its peers' picks and ends", func() bool {
			return pickerMetric(t, a, "meshllm_picker_replica_peer_picks_applied_total") >= 10 &&
				pickerMetric(t, a, "meshllm_picker_replica_peer_ends_applied_total") >= 10
		})
		require.Equal(t, 3.0, pickerMetric(t, a, "meshllm_picker_replica_members"))
	}

	require.NoError(t, s.KillReplica(1)) // the gateway still sends it picks: they fail over
	send(15)
	require.NoError(t, s.RestartReplica(1)) // ready only once warm
	require.Equal(t, 1.0, pickerMetric(t, addrs[1], "meshllm_picker_replica_warm"))
	require.Positive(t, pickerMetric(t, addrs[1], `meshllm_picker_replica_messages_received_total{kind="state"}`),
		"the restarted replica took a peer's state")
	send(15)
}
