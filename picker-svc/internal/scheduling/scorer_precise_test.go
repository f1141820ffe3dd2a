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
			p.Fetch(req, cs)
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

// slowTokenizer's Tokens, on its first call, lets another pick of the same
// prompt run to its end, as a concurrent request would while this one
// waits on the tokenizer. No engine has reported anything yet (the fleet's
// first wave): every pod is scored by the guess.
type slowTokenizer struct {
	during func()
	calls  int
}

func (f *slowTokenizer) Tokens(*Request, []Candidate) ([]uint32, bool) {
	if f.calls++; f.calls == 1 {
		f.during()
	}
	return []uint32{1, 2, 3}, true
}
func (f *slowTokenizer) Held(_ *Request, cands []Candidate, out []HeldPrefix) {
	for i := range out {
		out[i] = HeldPrefix{}
	}
}
func (f *slowTokenizer) Picked(*Request, *Candidate) {}

// TestPrecisePrefixTokenizesBeforeReadingTheGuess: a request that waits on
// the tokenizer must still see the picks made meanwhile. If the guess were
// read before tokenizing, two concurrent requests with one prefix would
// both find it held nowhere and land on different pods (the second placed
// by load, away from the first's pod), and the fleet would prefill and
// store the prefix twice.
func TestPrecisePrefixTokenizesBeforeReadingTheGuess(t *testing.T) {
	s := mustNew(DefaultConfig())
	p := s.Plugin(PrecisePrefixName).(*PrecisePrefixScorer)
	eps := endpoints(scrape.Snapshot{}, scrape.Snapshot{}, scrape.Snapshot{})
	hashes := []uint64{11, 12, 13, 14, 15, 16, 17, 18}
	var other Result
	src := &slowTokenizer{}
	src.during = func() {
		// Another prompt first, so that the one sharing the prefix goes
		// where load alone would not send it.
		first, err := s.Pick(eps, pickapi.StrategyPrecisePrefixCache, &Request{PrefixHashes: []uint64{21, 22}, Body: []byte("c")}, t0)
		require.NoError(t, err)
		other, err = s.Pick(eps, pickapi.StrategyPrecisePrefixCache, &Request{PrefixHashes: hashes, Body: []byte("b")}, t0)
		require.NoError(t, err)
		require.NotEqual(t, first.Endpoints[0], other.Endpoints[0], "the test needs the shared prefix away from where load sends it")
	}
	p.SetSource(src)
	res, err := s.Pick(eps, pickapi.StrategyPrecisePrefixCache, &Request{PrefixHashes: hashes, Body: []byte("a")}, t0)
	require.NoError(t, err)
	require.NotNil(t, other.Endpoints)
	assert.Equal(t, other.Endpoints[0], res.Endpoints[0], "the request that waited on the tokenizer follows the pick made meanwhile")
}
