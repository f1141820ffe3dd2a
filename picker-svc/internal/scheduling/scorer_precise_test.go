package scheduling

import (
	"testing"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeEngines answers for the engines from a table: per endpoint address,
// what it holds (absent: not ready).
type fakeEngines struct {
	tokens []uint32 // nil: no token ids
	held   map[string]float64
	picked []string
}

func (f *fakeEngines) Tokens(*Request, []Candidate) ([]uint32, bool) {
	return f.tokens, f.tokens != nil
}

func (f *fakeEngines) Held(_ *Request, cands []Candidate, out []HeldPrefix) {
	for i := range cands {
		v, ok := f.held[cands[i].EP.Addr]
		out[i] = HeldPrefix{Fraction: v, Ready: ok}
	}
}

func (f *fakeEngines) Picked(_ *Request, c *Candidate) { f.picked = append(f.picked, c.EP.Addr) }

func TestPrecisePrefixScorer(t *testing.T) {
	hashes := []uint64{1, 2, 3, 4} // four prefix blocks
	for _, c := range []struct {
		name     string
		src      *fakeEngines // nil: no source set
		guess    []int        // PrefixBlocks the approximate guess wrote
		want     []float64
		counts   PrecisePrefixCounts
		noHashes bool
	}{
		{name: "no source: the guess", guess: []int{4, 2, 0}, want: []float64{1, 0.5, 0}},
		{name: "engines' account replaces the guess", src: &fakeEngines{tokens: []uint32{7},
			held: map[string]float64{"10.0.0.1:8000": 0, "10.0.0.2:8000": 1, "10.0.0.3:8000": 0.5}},
			guess: []int{4, 0, 0}, want: []float64{0, 1, 0.5}, counts: PrecisePrefixCounts{Precise: 3}},
		{name: "a pod not ready keeps its guess", src: &fakeEngines{tokens: []uint32{7},
			held: map[string]float64{"10.0.0.1:8000": 0.25, "10.0.0.3:8000": 1}},
			guess: []int{0, 3, 0}, want: []float64{0.25, 0.75, 1}, counts: PrecisePrefixCounts{Precise: 2, NotReady: 1}},
		{name: "no token ids: the guess everywhere", src: &fakeEngines{held: map[string]float64{"10.0.0.1:8000": 1}},
			guess: []int{0, 2, 4}, want: []float64{0, 0.5, 1}, counts: PrecisePrefixCounts{NoTokens: 1}},
		{name: "fractions outside [0,1] are clamped", src: &fakeEngines{tokens: []uint32{7},
			held: map[string]float64{"10.0.0.1:8000": 2, "10.0.0.2:8000": -1, "10.0.0.3:8000": 0.1}},
			guess: []int{0, 4, 0}, want: []float64{1, 0, 0}, counts: PrecisePrefixCounts{Precise: 3}},
		{name: "held nowhere: the guess, which remembers where the prompt went", src: &fakeEngines{tokens: []uint32{7},
			held: map[string]float64{"10.0.0.1:8000": 0, "10.0.0.2:8000": 0, "10.0.0.3:8000": 0}},
			guess: []int{0, 4, 1}, want: []float64{0, 1, 0.25}, counts: PrecisePrefixCounts{NoneHeld: 1}},
		{name: "held nowhere a ready pod tells: the guess", src: &fakeEngines{tokens: []uint32{7},
			held: map[string]float64{"10.0.0.1:8000": 0}},
			guess: []int{0, 4, 0}, want: []float64{0, 1, 0}, counts: PrecisePrefixCounts{NoneHeld: 1}},
		{name: "no prefix hashes: no preference", src: &fakeEngines{tokens: []uint32{7},
			held: map[string]float64{"10.0.0.1:8000": 1, "10.0.0.2:8000": 1, "10.0.0.3:8000": 1}},
			guess: []int{0, 0, 0}, want: []float64{0, 0, 0}, counts: PrecisePrefixCounts{Precise: 3}, noHashes: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &PrecisePrefixScorer{}
			if c.src != nil {
				p.SetSource(c.src)
			}
			cs := cands(scrape.Snapshot{}, scrape.Snapshot{}, scrape.Snapshot{})
			for i := range cs {
				cs[i].PrefixBlocks = c.guess[i]
			}
			req := &Request{PrefixHashes: hashes}
			if c.noHashes {
				req.PrefixHashes = nil
			}
			p.Prepare(req, cs, t0)
			assert.InDeltaSlice(t, c.want, score(p, req, cs), 1e-9)
			assert.Equal(t, c.counts, p.Counts())
			p.PostPick(req, &cs[0], t0)
			if c.src != nil && c.src.tokens != nil {
				assert.Equal(t, []string{cs[0].EP.Addr}, c.src.picked, "the pick is reported once tokens are known")
			}
		})
	}
}

func TestPrecisePrefixProfile(t *testing.T) {
	s := mustNew(DefaultConfig())
	p, ok := s.Plugin(PrecisePrefixName).(*PrecisePrefixScorer)
	require.True(t, ok, "PRECISE_PREFIX_CACHE builds precise_prefix")
	// The engines say the second pod holds the whole prompt; the guess
	// (nothing picked yet) knows nothing: the pick follows the engines.
	eps := endpoints(scrape.Snapshot{}, scrape.Snapshot{}, scrape.Snapshot{})
	p.SetSource(&fakeEngines{tokens: []uint32{1, 2, 3}, held: map[string]float64{eps[0].Addr: 0, eps[1].Addr: 1, eps[2].Addr: 0}})
	res, err := s.Pick(eps, pickapi.StrategyPrecisePrefixCache, &Request{PrefixHashes: []uint64{9, 8, 7}}, t0)
	require.NoError(t, err)
	assert.Equal(t, eps[1], res.Endpoints[0])
	assert.Equal(t, []string{"in_flight", "prefix", PrecisePrefixName}, PrecisePrefixPrepare([]string{PrecisePrefixName, "in_flight"}))
}
