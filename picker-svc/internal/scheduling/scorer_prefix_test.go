package scheduling

import (
	"testing"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func TestPrefixScorer(t *testing.T) {
	prompt := make([]byte, 8*pickapi.BlockSize)
	for i := range prompt {
		prompt[i] = byte(i % 251)
	}
	full := pickapi.PrefixHashes(nil, "m", prompt)
	require.Len(t, full, 8)
	for _, tc := range []struct {
		name   string
		served [][]uint64 // per candidate
		req    []uint64
		want   []float64
	}{
		{"longest match wins", [][]uint64{full[:2], full, nil}, full, []float64{0.25, 1, 0}},
		{"request shorter than what was served", [][]uint64{full}, full[:4], []float64{1}},
		{"other model's chain never matches", [][]uint64{pickapi.PrefixHashes(nil, "other", prompt)}, full, []float64{0}},
		{"no hashes: no preference", [][]uint64{full}, nil, []float64{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cands(make([]scrape.Snapshot, len(tc.served))...)
			ps := NewPrefixScorer(1024)
			for i, s := range tc.served {
				ps.PostPick(&Request{PrefixHashes: s}, &Candidate{EP: c[i].EP}, t0)
			}
			req := &Request{PrefixHashes: tc.req}
			ps.Prepare(req, c, t0)
			require.InDeltaSlice(t, tc.want, score(ps, req, c), 1e-9)
		})
	}
}
