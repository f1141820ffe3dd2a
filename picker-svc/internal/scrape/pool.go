package scrape

import "sync"

// Buffers for selected lines and page bodies, reused across scrapes: at 20
// scrapes a second per endpoint, fresh buffers would be most of the garbage.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 1<<20 { // do not keep an enormous page's buffer around
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
