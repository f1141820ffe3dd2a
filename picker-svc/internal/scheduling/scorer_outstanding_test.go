package scheduling

import (
	"testing"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func TestOutstandingScorer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		snaps    []scrape.Snapshot
		inFlight []int
		want     []float64
	}{
		{"waiting and running both count", []scrape.Snapshot{{Waiting: 2, Running: 38}, {Running: 39}, {Waiting: 1, Running: 40}},
			[]int{0, 0, 0}, []float64{1 - 1.0/3, 1, 1 - 2.0/3}},
		{"unscraped picks count", []scrape.Snapshot{{Running: 39}, {Running: 40}}, []int{2, 0}, []float64{0.5, 1}},
		{"all equal", []scrape.Snapshot{{Running: 4}, {Running: 4}}, []int{0, 0}, []float64{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cands(tc.snaps...)
			for i, n := range tc.inFlight {
				c[i].InFlight.Requests = n
			}
			require.InDeltaSlice(t, tc.want, score(OutstandingScorer{}, &Request{}, c), 1e-9)
		})
	}
}
