package scheduling

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func chain(start, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(start + i)
	}
	return out
}

func TestPrefixLRUBoundedAndRecent(t *testing.T) {
	p := NewPrefixLRU(1024)
	a := chain(1000, 300)
	p.Add(a)
	require.Equal(t, 300, p.Match(a))
	require.Equal(t, 30, p.Match(append(chain(1000, 30), 1, 2, 3)), "match stops at the first unknown block")
	b := chain(50000, 300)
	p.Add(b)
	require.Equal(t, 300, p.Match(b))
	require.Equal(t, 300, p.Match(a))

	// 600 newer blocks age out a's oldest blocks (1200 insertions > 1024),
	// so a no longer matches whole; b is younger and survives.
	p.Add(chain(90000, 600))
	require.Less(t, p.Match(a), 300)
	require.Equal(t, 300, p.Match(b))

	// Touching keeps a chain alive.
	p.Add(b)
	p.Add(chain(200000, 700))
	require.Equal(t, 300, p.Match(b))
	require.LessOrEqual(t, p.Len(), 1024)

	for i := 0; i < 1000; i++ {
		p.Add(chain(i*7919, 50))
	}
	require.LessOrEqual(t, p.Len(), 1024, "never more than capacity")
	require.Equal(t, 50, p.Match(chain(999*7919, 50)), "the newest chain is held")
}

func TestPrefixLRUCapacityRoundsUp(t *testing.T) {
	p := NewPrefixLRU(100)
	p.Add(chain(1, 1000))
	require.LessOrEqual(t, p.Len(), 128, "capacity rounds up to a power of two")
	require.GreaterOrEqual(t, p.Len(), 115, "bounded probing loses only a few slots")
	require.Equal(t, 0, NewPrefixLRU(0).Match(chain(1, 3)))
}

func TestPrefixLRUConcurrent(t *testing.T) {
	p := NewPrefixLRU(512)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				c := chain(g*100000+i, 32)
				p.Add(c)
				p.Match(c)
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, p.Len(), 512)
}

// A block served again takes no room: a pod that serves one long prefix
// over and over still holds the other prefixes it cached, as a real LRU
// cache does. (When touches counted as insertions, twenty hits on one
// 400-block prefix aged out everything else in an 8,192-block index.)
func TestPrefixLRUHitsDoNotAgeOthers(t *testing.T) {
	p := NewPrefixLRU(1024)
	other := chain(1, 300)
	hot := chain(10000, 400)
	p.Add(other)
	p.Add(hot)
	for range 100 {
		p.Add(hot)
	}
	require.Equal(t, 300, p.Match(other), "hits on hot must not push other out")
	require.Equal(t, 400, p.Match(hot))

	require.Equal(t, 700, p.Len(), "100 hits took no room")

	// New blocks still age the least recently used: 400 of them push part
	// of other out (its chain no longer matches whole) and keep hot.
	p.Add(chain(50000, 400))
	require.Less(t, p.Match(other), 300)
	require.Equal(t, 400, p.Match(hot))
}

// A chain ages from its tail, as in vLLM, which frees a request's blocks
// in reverse order: a prompt that has lost its end still matches its
// start (when the head went in first and aged first, the whole chain
// stopped matching as soon as its first block was evicted).
func TestPrefixLRUForgetsTailsFirst(t *testing.T) {
	p := NewPrefixLRU(4096)
	old := chain(1, 200)
	p.Add(old)
	p.Add(chain(100000, 3946)) // 4146 blocks in all: 50 too many
	got := p.Match(old)
	require.Greater(t, got, 100, "the chain's start is still held")
	require.Less(t, got, 200, "its end was forgotten")
}
