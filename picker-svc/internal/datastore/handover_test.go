package datastore

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// fresh gives ep a snapshot taken now (its poller, scraping nothing once an
// hour, cannot take it away: MaxFailures is 3).
func fresh(ep *scrape.Endpoint) { ep.Store(&scrape.Snapshot{ScrapedAt: time.Now()}) }

func addrs(eps []*scrape.Endpoint) []string {
	out := make([]string, len(eps))
	for i, ep := range eps {
		out[i] = ep.Addr
	}
	return out
}

func TestHandoverWhenEveryAddressChanges(t *testing.T) {
	m := scrape.NewManager(scrape.Config{Interval: time.Hour, Logger: quiet()})
	t.Cleanup(m.Close)
	var removed []string
	s := New(m, quiet(), func(eps []*scrape.Endpoint) { removed = append(removed, addrs(eps)...) })
	s.SetPool(inference.Pool{Name: "p", TargetPort: 8000, Selector: map[string]string{"a": "b"}})

	s.SetEndpoints("p", []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"})
	old := s.View().Pools["p"].Endpoints
	fresh(old[0])
	fresh(old[1]) // :3 never scraped: not handed over

	// Every address changes (a targetPort change): the old ones with
	// metrics stay routable, still scraped, nothing removed yet.
	s.SetEndpoints("p", []string{"127.0.0.1:11", "127.0.0.1:12"})
	pv := s.View().Pools["p"]
	require.Equal(t, []string{"127.0.0.1:11", "127.0.0.1:12"}, addrs(pv.Endpoints))
	require.Equal(t, []string{"127.0.0.1:1", "127.0.0.1:2"}, addrs(pv.Handover))
	require.Same(t, old[0], pv.Handover[0], "the same endpoint, its snapshot and scraper kept")
	require.True(t, pv.HandoverUntil.After(time.Now()))
	require.Equal(t, []string{"127.0.0.1:3"}, removed)
	require.Len(t, m.All(), 4)

	// Another change before the new ones have metrics keeps the handover;
	// an address coming back keeps its endpoint.
	s.SetEndpoints("p", []string{"127.0.0.1:2", "127.0.0.1:12"})
	pv = s.View().Pools["p"]
	require.Same(t, old[1], pv.Endpoints[1])
	require.Empty(t, pv.Handover, ":2 is current again and has metrics: no handover")
	require.ElementsMatch(t, []string{"127.0.0.1:3", "127.0.0.1:11", "127.0.0.1:1"}, removed)
	require.Len(t, m.All(), 2)

	// A handover ends as soon as a new endpoint has metrics.
	s.SetEndpoints("p", []string{"127.0.0.1:21"})
	require.Equal(t, []string{"127.0.0.1:2"}, addrs(s.View().Pools["p"].Handover))
	fresh(s.View().Pools["p"].Endpoints[0])
	require.Eventually(t, func() bool { return len(s.View().Pools["p"].Handover) == 0 }, 10*time.Second, time.Millisecond)
	require.Contains(t, removed, "127.0.0.1:2")
	require.Equal(t, []string{"127.0.0.1:21"}, addrs(m.All()), "the old endpoint's scraper stopped")

	// Or when its time is up.
	s.SetHandoverFor(20 * time.Millisecond)
	s.SetEndpoints("p", []string{"127.0.0.1:31"})
	require.Len(t, s.View().Pools["p"].Handover, 1)
	require.Eventually(t, func() bool { return len(s.View().Pools["p"].Handover) == 0 }, 10*time.Second, time.Millisecond)
	require.Equal(t, []string{"127.0.0.1:31"}, addrs(m.All()))

	// Deleting the pool hands nothing over.
	fresh(s.View().Pools["p"].Endpoints[0])
	s.SetHandoverFor(time.Hour)
	s.SetEndpoints("p", []string{"127.0.0.1:41"})
	require.Len(t, s.View().Pools["p"].Handover, 1)
	s.DeletePool("p")
	require.Empty(t, m.All())
	require.Contains(t, removed, "127.0.0.1:31")
	require.Contains(t, removed, "127.0.0.1:41")
}

func TestUnchangedEndpointsDoNotRebuild(t *testing.T) {
	m := scrape.NewManager(scrape.Config{Interval: time.Hour, Logger: quiet()})
	t.Cleanup(m.Close)
	s := New(m, quiet(), nil)
	s.SetPool(inference.Pool{Name: "p", TargetPort: 8000, Selector: map[string]string{"a": "b"}})
	s.SetEndpoints("p", []string{"127.0.0.1:2", "127.0.0.1:1"})
	v := s.View()
	s.SetEndpoints("p", []string{"127.0.0.1:1", "127.0.0.1:2"})
	require.Same(t, v, s.View(), "the same endpoints in another order: nothing to do")
}
