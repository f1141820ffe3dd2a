package route

import "github.com/meshllm/meshllm/pickapi"

// EndsCapacity is how many ended requests' pick ids one VM holds for its
// next pick requests. A VM that picks rarely (an idle worker) drops the
// oldest: the picker's scrapes show those ends a little later anyway.
const EndsCapacity = 256

// Ends queues the pick ids of requests that have ended, so that the next
// pick request tells the picker (pickapi.PickRequest.Done). A
// dispatch_http_call of its own from a stream's end would be cancelled
// with the stream (Envoy's Context::onDestroy cancels a context's pending
// calls); riding on the next pick costs nothing.
type Ends struct {
	ids  [EndsCapacity]uint64
	head int // oldest
	n    int
}

// Add queues id (0, a pick without an id, is not queued).
func (e *Ends) Add(id uint64) {
	if id == 0 {
		return
	}
	if e.n == EndsCapacity {
		e.head = (e.head + 1) % EndsCapacity
		e.n--
	}
	e.ids[(e.head+e.n)%EndsCapacity] = id
	e.n++
}

// Take moves up to pickapi.MaxDone ids, oldest first, onto dst.
func (e *Ends) Take(dst []uint64) []uint64 {
	k := min(e.n, pickapi.MaxDone)
	for i := 0; i < k; i++ {
		dst = append(dst, e.ids[(e.head+i)%EndsCapacity])
	}
	e.head, e.n = (e.head+k)%EndsCapacity, e.n-k
	return dst
}

// Len is how many ids are queued.
func (e *Ends) Len() int { return e.n }
