package scheduling

import (
	"testing"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func TestKVCacheScorer(t *testing.T) {
	for _, tc := range []struct {
		name string
		kv   []float64
		want []float64
	}{
		{"absolute, not relative", []float64{0.2, 0.3}, []float64{0.8, 0.7}},
		{"full and empty", []float64{1, 0}, []float64{0, 1}},
		{"out of range clamped", []float64{1.5, -0.5}, []float64{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var snaps []scrape.Snapshot
			for _, kv := range tc.kv {
				snaps = append(snaps, scrape.Snapshot{KVCacheUsage: kv})
			}
			require.InDeltaSlice(t, tc.want, score(KVCacheScorer{}, &Request{}, cands(snaps...)), 1e-9)
		})
	}
}
