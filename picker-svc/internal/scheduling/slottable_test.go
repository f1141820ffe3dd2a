package scheduling

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// The prefix index's memory bound (16 bytes a block) holds only if a
// zero-size value adds no padding to a slot.
func TestSlotSize(t *testing.T) {
	require.Equal(t, uintptr(16), unsafe.Sizeof(slot[struct{}]{}))
}

func TestSlotTableTouchAndAge(t *testing.T) {
	tab := newSlotTable[int](8)
	s, isNew := tab.touch(42)
	require.True(t, isNew)
	s.val = 7
	s, isNew = tab.touch(42)
	require.False(t, isNew, "a touch of a live hash inserts nothing")
	require.Equal(t, 7, s.val)
	for h := uint64(100); h < 108; h++ { // len(slots) new hashes: 42 ages out
		tab.touch(h)
	}
	require.False(t, tab.contains(42))
	require.Equal(t, 8, tab.liveCount())
}
