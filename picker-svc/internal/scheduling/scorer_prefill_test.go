package scheduling

import (
	"testing"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func TestPrefillScorer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backlog []int // BacklogTokens per candidate
		blocks  []int // PrefixBlocks per candidate
		prompt  int
		want    []float64
	}{
		{"shortest queue when nothing is cached", []int{0, 3000, 1500}, []int{0, 0, 0}, 1500, []float64{1, 0, 0.5}},
		// 6,400-token prompt, 4,096 of it cached on pod 1 (256 blocks): a
		// 1,500-token queue there still beats recomputing it all on pod 0.
		{"a cached prefix outweighs a short queue", []int{0, 1500}, []int{0, 256}, 6400, []float64{0, 1}},
		{"a long queue outweighs a cached prefix", []int{0, 8000}, []int{0, 256}, 6400, []float64{1, 0}},
		{"a cache longer than the estimate never goes negative", []int{0, 0}, []int{0, 256}, 100, []float64{0, 1}},
		{"all equal", []int{10, 10}, []int{1, 1}, 50, []float64{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cands(make([]scrape.Snapshot, len(tc.backlog))...)
			for i := range c {
				c[i].InFlight.BacklogTokens, c[i].PrefixBlocks = tc.backlog[i], tc.blocks[i]
			}
			require.InDeltaSlice(t, tc.want, score(PrefillScorer{}, &Request{PromptTokens: tc.prompt}, c), 1e-9)
		})
	}
}
