package route

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
)

func TestEnds(t *testing.T) {
	var e Ends
	ids, toks := e.Take(nil, nil)
	require.Empty(t, ids)
	require.Empty(t, toks)
	e.Add(0, 5)
	require.Zero(t, e.Len(), "a pick without an id is not reported")
	e.Add(1, 7)
	e.Add(2, -1)
	e.Add(3, 1<<40)
	ids, toks = e.Take(nil, nil)
	require.Equal(t, []uint64{1, 2, 3}, ids)
	require.Equal(t, []int{7, -1, pickapi.MaxOutputTokens}, toks, "tokens travel with their ids, bounded")
	require.Zero(t, e.Len())

	// Full: the oldest go; a take is at most MaxDone, oldest first.
	for id := uint64(1); id <= EndsCapacity+10; id++ {
		e.Add(id, int64(id))
	}
	require.Equal(t, EndsCapacity, e.Len())
	got, toks := e.Take(nil, nil)
	require.Len(t, got, pickapi.MaxDone)
	require.Equal(t, uint64(11), got[0])
	require.Equal(t, 11, toks[0])
	require.Equal(t, uint64(10+pickapi.MaxDone), got[pickapi.MaxDone-1])
	var all []uint64
	var allToks []int
	for e.Len() > 0 {
		all, allToks = e.Take(all, allToks)
	}
	require.Len(t, all, EndsCapacity-pickapi.MaxDone)
	require.Len(t, allToks, len(all))
	require.Equal(t, uint64(EndsCapacity+10), all[len(all)-1])
	require.Equal(t, EndsCapacity+10, allToks[len(allToks)-1])
}
