package precise

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/kvevents"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

func view(strategy pickapi.Strategy, addrs ...string) *datastore.View {
	pv := &datastore.PoolView{Pool: inference.Pool{Name: "p", Strategy: strategy}}
	for _, a := range addrs {
		pv.Endpoints = append(pv.Endpoints, scrape.NewEndpoint(a, scrape.Config{}))
	}
	return &datastore.View{Pools: map[string]*datastore.PoolView{"p": pv}}
}

// An endpoint that leaves the precise pools leaves the index; pools with
// another strategy are not followed.
func TestFollowerForgetsDepartedEndpoints(t *testing.T) {
	ix := kvevents.New(kvevents.Config{})
	f := &Follower{Index: ix, Default: Publisher{Port: 5557}}
	stored := &kvevents.Batch{Events: []kvevents.Event{{Kind: kvevents.BlockStored, Hashes: []uint64{1},
		Tokens: make([]uint32, 16), BlockSize: 16}}}
	for _, a := range []string{"10.0.0.1:8000", "10.0.0.2:8000"} {
		require.NoError(t, ix.Apply(a, stored))
	}
	ctx := context.Background()
	f.reconcile(ctx, f.preciseAddrs(view(pickapi.StrategyPrecisePrefixCache, "10.0.0.1:8000", "10.0.0.2:8000")), false)
	assert.Equal(t, 2, ix.Stats().Pods)
	f.reconcile(ctx, f.preciseAddrs(view(pickapi.StrategyPrecisePrefixCache, "10.0.0.2:8000")), false)
	assert.Equal(t, 1, ix.Stats().Pods, "the departed endpoint's blocks are gone")
	f.reconcile(ctx, f.preciseAddrs(view(pickapi.StrategyPrefixCache, "10.0.0.2:8000")), false)
	assert.Equal(t, 0, ix.Stats().Pods, "a pool that stops routing precisely is not followed")

	// A strategy whose profile reads the events is followed too.
	f.Strategies = map[pickapi.Strategy]bool{pickapi.StrategyDefault: true}
	assert.Len(t, f.preciseAddrs(view(pickapi.StrategyDefault, "10.0.0.2:8000")), 1)
	assert.Empty(t, f.preciseAddrs(view(pickapi.StrategyPrecisePrefixCache, "10.0.0.2:8000")))
}

func TestPodOfTopic(t *testing.T) {
	v := view(pickapi.StrategyPrecisePrefixCache, "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.2:8001")
	f := &Follower{View: func() *datastore.View { return v }}
	for topic, want := range map[string]string{
		"kv@10.0.0.1:8000@m": "10.0.0.1:8000",
		"kv@10.0.0.1@m":      "10.0.0.1:8000", // the host names one endpoint
		"kv@10.0.0.2@m":      "10.0.0.2",      // two endpoints on that host: not guessed
		"kv@pod-a@m":         "pod-a",
	} {
		assert.Equal(t, want, f.PodOf(topic), topic)
	}
	assert.Equal(t, "tcp://10.0.0.1:5557", PublisherOf("10.0.0.1:8000", 5557))
	assert.Equal(t, "tcp://[fd00::1]:5557", PublisherOf("[fd00::1]:8000", 5557))
}
