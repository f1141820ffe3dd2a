package scheduling

import (
	"strconv"
	"sync"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// Explanation says why a pick chose its endpoint: the candidates the
// profile scored, best first, each with its score from every scorer, its
// total and, with the predicted_ttft scorer, its predicted time to first
// token.
type Explanation struct {
	At       time.Time
	PickID   uint64
	Strategy pickapi.Strategy
	Model    string
	// PromptTokens and MaxTokens are what the pick knew of the request.
	PromptTokens, MaxTokens int
	// Scorers are the profile's, in the order of each candidate's Scores.
	Scorers []WeightedScorer
	// Eligible is how many endpoints the pick could choose from, Judged
	// how many of them the profile's filters kept and its scorers rated;
	// Candidates holds the best MaxExplained of those.
	Eligible, Judged int
	Candidates       []ExplainedCandidate
	// Regime is the placement regime the scores were made in
	// (RegimeSaturated or RegimeUnsaturated; "" for profiles with one),
	// and KVDemand the share of the fleet's KV cache its requests need at
	// their mean footprint, which decides it. Staggered: the pods' costs
	// were weighed by plan, a burst filling the fleet
	// (predicted_placement.go).
	Regime    string
	KVDemand  float64
	Staggered bool
}

// The placement regimes of predicted_ttft (predicted_placement.go).
const (
	RegimeSaturated   = "saturated"
	RegimeUnsaturated = "unsaturated"
)

// regimeTeller is a scorer that scores in regimes: Regime says which one
// a pick was in.
type regimeTeller interface {
	Regime(cands []Candidate) (regime string, kvDemand float64, staggered bool)
}

// ExplainedCandidate is one candidate of an Explanation.
type ExplainedCandidate struct {
	EP     *scrape.Endpoint
	Total  float64
	Scores []float64
	// PredictedTTFT in seconds (0: the profile does not predict), and
	// PredictedRecompute, the seconds of prefill it risks redoing there.
	PredictedTTFT, PredictedRecompute float64
	// The snapshot it was judged on, and this picker's picks it could not
	// show yet.
	Waiting, Running, KVCacheUsage float64
	Unscraped                      int
}

// MaxExplained bounds the candidates an Explanation keeps.
const MaxExplained = 16

// explain builds the Explanation of a pick; ranked holds the candidates'
// indices best first as the picker ranked them (the pick first).
func explain(st pickapi.Strategy, req *Request, prof *profile, eligible int, cands []Candidate, totals, perScorer []float64, ranked []int, now time.Time) *Explanation {
	e := &Explanation{At: now, PickID: req.PickID, Strategy: st, Model: req.TargetModel, PromptTokens: req.PromptTokens,
		MaxTokens: req.MaxTokens, Scorers: prof.specScorers, Eligible: eligible, Judged: len(cands)}
	for _, ws := range prof.scorers {
		if rt, ok := ws.s.(regimeTeller); ok && e.Regime == "" {
			e.Regime, e.KVDemand, e.Staggered = rt.Regime(cands)
		}
	}
	n := len(cands)
	k := min(n, MaxExplained)
	// The pick first, then the best of the others by total: one pass
	// keeping the top k in order.
	var top [MaxExplained]int
	top[0] = ranked[0]
	m := 1
	for i := range cands {
		if i == ranked[0] || (m == k && totals[i] <= totals[top[m-1]]) {
			continue
		}
		pos := m
		if m == k {
			pos = m - 1
		} else {
			m++
		}
		for pos > 1 && totals[i] > totals[top[pos-1]] {
			top[pos] = top[pos-1]
			pos--
		}
		top[pos] = i
	}
	order := top[:m]
	ns := len(prof.scorers)
	scores := make([]float64, k*ns)
	e.Candidates = make([]ExplainedCandidate, k)
	for j, i := range order {
		c := &cands[i]
		ec := &e.Candidates[j]
		ec.EP, ec.Total, ec.PredictedTTFT, ec.PredictedRecompute = c.EP, totals[i], c.PredictedTTFT, c.PredictedRecompute
		ec.Waiting, ec.Running, ec.KVCacheUsage, ec.Unscraped = c.S.Waiting, c.S.Running, c.S.KVCacheUsage, c.InFlight.Requests
		ec.Scores = scores[j*ns : (j+1)*ns : (j+1)*ns]
		for s := 0; s < ns; s++ {
			ec.Scores[s] = perScorer[s*n+i]
		}
	}
	return e
}

// Line is the explanation on one line of at most maxLen bytes, for a
// response header or an access-log field: the strategy, the regime where
// the profile has regimes ("saturated kv_demand=0.97"), then candidates
// best first as "endpoint ttft=412ms recompute=30ms total=9.81
// predicted_ttft=1.00 lora=1.00" (the times only where predicted),
// separated by "; ". Candidates that do not fit are left out.
func (e *Explanation) Line(maxLen int) string {
	b := make([]byte, 0, min(maxLen, 512))
	b = append(b, string(e.Strategy)...)
	if e.Regime != "" {
		b = append(b, ' ')
		b = append(b, e.Regime...)
		b = append(b, " kv_demand="...)
		b = strconv.AppendFloat(b, e.KVDemand, 'f', 2, 64)
		if e.Staggered {
			b = append(b, " staggered"...)
		}
	}
	for j := range e.Candidates {
		c := &e.Candidates[j]
		mark := len(b)
		if j == 0 {
			b = append(b, ' ')
		} else {
			b = append(b, "; "...)
		}
		b = append(b, c.EP.Addr...)
		if c.PredictedTTFT > 0 {
			b = append(b, " ttft="...)
			b = strconv.AppendFloat(b, c.PredictedTTFT*1e3, 'f', 0, 64)
			b = append(b, "ms"...)
		}
		if c.PredictedRecompute > 0 {
			b = append(b, " recompute="...)
			b = strconv.AppendFloat(b, c.PredictedRecompute*1e3, 'f', 0, 64)
			b = append(b, "ms"...)
		}
		b = append(b, " total="...)
		b = strconv.AppendFloat(b, c.Total, 'f', 2, 64)
		for s, ws := range e.Scorers {
			b = append(b, ' ')
			b = append(b, ws.Name...)
			b = append(b, '=')
			b = strconv.AppendFloat(b, c.Scores[s], 'f', 2, 64)
		}
		if len(b) > maxLen {
			b = b[:mark]
			break
		}
	}
	return string(b)
}

// pickLog keeps the explanations of the last picks, for /debug/picks.
type pickLog struct {
	mu   sync.Mutex
	ring []*Explanation
	next int
	n    int
}

func newPickLog(size int) *pickLog {
	if size <= 0 {
		return nil
	}
	return &pickLog{ring: make([]*Explanation, size)}
}

func (l *pickLog) add(e *Explanation) {
	l.mu.Lock()
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
	l.n = min(l.n+1, len(l.ring))
	l.mu.Unlock()
}

// recent returns the logged explanations, newest first.
func (l *pickLog) recent() []*Explanation {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Explanation, 0, l.n)
	for i := 1; i <= l.n; i++ {
		out = append(out, l.ring[(l.next-i+len(l.ring))%len(l.ring)])
	}
	return out
}
