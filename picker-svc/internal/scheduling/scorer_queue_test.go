package scheduling

import (
	"testing"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func TestQueueScorer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		waiting []float64
		want    []float64
	}{
		{"shortest wins; one request is not the whole range", []float64{0, 5, 10}, []float64{1, 1 - 5.0/11, 1 - 10.0/11}},
		{"one more request", []float64{0, 1}, []float64{1, 0.5}},
		{"all equal", []float64{3, 3}, []float64{1, 1}},
		{"one", []float64{7}, []float64{1}},
		{"none", nil, []float64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var snaps []scrape.Snapshot
			for _, w := range tc.waiting {
				snaps = append(snaps, scrape.Snapshot{Waiting: w})
			}
			require.InDeltaSlice(t, tc.want, score(QueueScorer{}, &Request{}, cands(snaps...)), 1e-9)
		})
	}
}
