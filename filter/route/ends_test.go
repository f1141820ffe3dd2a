package route

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
)

func TestEnds(t *testing.T) {
	var e Ends
	require.Empty(t, e.Take(nil))
	e.Add(0)
	require.Zero(t, e.Len(), "a pick without an id is not reported")
	for id := uint64(1); id <= 3; id++ {
		e.Add(id)
	}
	require.Equal(t, []uint64{1, 2, 3}, e.Take(nil))
	require.Zero(t, e.Len())

	// Full: the oldest go; a take is at most MaxDone, oldest first.
	for id := uint64(1); id <= EndsCapacity+10; id++ {
		e.Add(id)
	}
	require.Equal(t, EndsCapacity, e.Len())
	got := e.Take(nil)
	require.Len(t, got, pickapi.MaxDone)
	require.Equal(t, uint64(11), got[0])
	require.Equal(t, uint64(10+pickapi.MaxDone), got[pickapi.MaxDone-1])
	var all []uint64
	for e.Len() > 0 {
		all = e.Take(all)
	}
	require.Len(t, all, EndsCapacity-pickapi.MaxDone)
	require.Equal(t, uint64(EndsCapacity+10), all[len(all)-1])
}
