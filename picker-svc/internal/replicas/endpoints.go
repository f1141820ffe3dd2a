package replicas

import (
	"sync/atomic"

	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// StoreLookup finds endpoints by address in store's current view (an index
// rebuilt once per view, which discovery replaces when endpoints change).
func StoreLookup(store *datastore.Store) func(addr string) *scrape.Endpoint {
	type index struct {
		view *datastore.View
		eps  map[string]*scrape.Endpoint
	}
	var cur atomic.Pointer[index]
	return func(addr string) *scrape.Endpoint {
		v := store.View()
		ix := cur.Load()
		if ix == nil || ix.view != v {
			ix = &index{view: v, eps: map[string]*scrape.Endpoint{}}
			for _, pv := range v.Pools {
				for _, ep := range pv.Endpoints {
					ix.eps[ep.Addr] = ep
				}
			}
			cur.Store(ix)
		}
		return ix.eps[addr]
	}
}
