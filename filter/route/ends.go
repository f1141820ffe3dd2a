package route

import "github.com/meshllm/meshllm/pickapi"

// EndsCapacity is how many ended requests' pick ids one VM holds for its
// next pick requests. A VM that picks rarely (an idle worker) drops the
// oldest: the picker's scrapes show those ends a little later anyway.
const EndsCapacity = 256

// Ends queues the pick ids of requests that have ended, with the
// completion tokens each generated, so that the next pick request tells
// the picker (pickapi.PickRequest.Done, DoneTokens). A dispatch_http_call
// of its own from a stream's end would be cancelled with the stream
// (Envoy's Context::onDestroy cancels a context's pending calls); riding
// on the next pick costs nothing.
type Ends struct {
	ids    [EndsCapacity]uint64
	tokens [EndsCapacity]int32
	head   int // oldest
	n      int
}

// Add queues id and the completion tokens its request generated (-1: not
// known). 0, a pick without an id, is not queued.
func (e *Ends) Add(id uint64, completionTokens int64) {
	if id == 0 {
		return
	}
	if e.n == EndsCapacity {
		e.head = (e.head + 1) % EndsCapacity
		e.n--
	}
	i := (e.head + e.n) % EndsCapacity
	e.ids[i] = id
	e.tokens[i] = int32(min(max(completionTokens, -1), pickapi.MaxOutputTokens))
	e.n++
}

// Take moves up to pickapi.MaxDone ids, oldest first, onto ids, and their
// completion tokens onto tokens.
func (e *Ends) Take(ids []uint64, tokens []int) ([]uint64, []int) {
	k := min(e.n, pickapi.MaxDone)
	for i := 0; i < k; i++ {
		j := (e.head + i) % EndsCapacity
		ids = append(ids, e.ids[j])
		tokens = append(tokens, int(e.tokens[j]))
	}
	e.head, e.n = (e.head+k)%EndsCapacity, e.n-k
	return ids, tokens
}

// Len is how many ids are queued.
func (e *Ends) Len() int { return e.n }
