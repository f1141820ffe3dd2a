package scheduling

import (
	"testing"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func TestRunningScorer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		running []float64
		want    []float64
	}{
		{"smaller batch wins", []float64{8, 4, 0}, []float64{0, 0.5, 1}},
		{"all equal", []float64{2, 2, 2}, []float64{1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var snaps []scrape.Snapshot
			for _, r := range tc.running {
				snaps = append(snaps, scrape.Snapshot{Running: r})
			}
			require.InDeltaSlice(t, tc.want, score(RunningScorer{}, &Request{}, cands(snaps...)), 1e-9)
		})
	}
}
