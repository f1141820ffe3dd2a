package scheduling

import (
	"encoding/json"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// PredictedTTFTScorer prefers the pod where the request is predicted to get
// its first token soonest (predictor.go has the model), and where it is
// least likely to be preempted before it ends. It follows each pod's
// trajectory, not only its fill: the KV its running requests hold and
// will still take (prompt plus what they generated, up to their expected
// output: max_tokens, or what recent requests of the model generated where
// they stop early), when they will free it, what is queued there (the
// in_flight plugin's picks before their first token, which count from the
// moment they are made: no herd between two scrapes), and the request's
// own prefill less the prefix the pod holds (the prefix plugin's guess,
// when the profile has it).
//
// It is a Prepare plugin listed after in_flight (and prefix), whose data
// it reads: Prepare predicts each candidate (Candidate.PredictedTTFT and
// .PredictedRecompute), Score rates their sum least/predicted.
type PredictedTTFTScorer struct {
	params  predictedTTFTParams
	outputs *outputLengths
	prefill prefillCost

	mu   sync.Mutex // guards pods and byID; a pod's own mu may be held while taking it
	pods map[*scrape.Endpoint]*podState
	byID map[uint64]*podState
	last atomic.Pointer[scrape.Endpoint]
	// footprint is a moving average of the picked requests' mean KV
	// footprint over their lives (prompt plus half the expected output).
	footprint atomic.Uint64 // float64 bits
}

type podState struct {
	mu sync.Mutex
	podTrajectories
}

type predictedTTFTParams struct {
	// DecodeStepMs is a step's duration, and PrefillTokenUs what a prefill
	// token adds to its step, until scrapes have shown the pods' own
	// (vllm:iteration_tokens_total and vllm:prompt_tokens_total).
	DecodeStepMs   float64 `json:"decodeStepMs"`
	PrefillTokenUs float64 `json:"prefillTokenUs"`
	// DefaultOutputTokens is the output expected of a request without
	// max_tokens, until requests of its model have ended with their
	// completion tokens reported; and of requests someone else sent.
	DefaultOutputTokens int `json:"defaultOutputTokens"`
	// MaxBatchedTokens is the pods' per-step token budget (vLLM's
	// --max-num-batched-tokens), which /metrics do not show.
	MaxBatchedTokens int `json:"maxBatchedTokens"`
	// Experimental.
	Gate      string  `json:"gate"`
	Alpha     float64 `json:"alpha"`
	GateFrac  float64 `json:"gateFrac"`
	Sticky    float64 `json:"sticky"`
	Theta     float64 `json:"theta"`
	StickySat bool    `json:"stickySat"`
	Balance   float64 `json:"balance"`
	BalanceSat bool   `json:"balanceSat"`
	StickyAbs float64 `json:"stickyAbs"`
}

// The defaults: a 7-8B model on one mid-range GPU, vLLM's default budget.
var defaultPredictedTTFT = predictedTTFTParams{DecodeStepMs: 30, PrefillTokenUs: 100, DefaultOutputTokens: 256, MaxBatchedTokens: 2048}

func init() {
	Register("predicted_ttft", func(params json.RawMessage) (Plugin, error) {
		p := defaultPredictedTTFT
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		switch {
		case !(p.DecodeStepMs > 0 && p.DecodeStepMs <= 10_000):
			return nil, errors.New("decodeStepMs must be in (0, 10000]")
		case !(p.PrefillTokenUs > 0 && p.PrefillTokenUs <= 1e6):
			return nil, errors.New("prefillTokenUs must be in (0, 1000000]")
		case p.DefaultOutputTokens < 1 || p.DefaultOutputTokens > 1<<24:
			return nil, errors.New("defaultOutputTokens must be in [1, 16777216]")
		case p.MaxBatchedTokens < 1 || p.MaxBatchedTokens > 1<<24:
			return nil, errors.New("maxBatchedTokens must be in [1, 16777216]")
		}
		return newPredictedTTFT(p), nil
	})
}

// NewPredictedTTFTScorer returns the scorer with its defaults.
func NewPredictedTTFTScorer() *PredictedTTFTScorer { return newPredictedTTFT(defaultPredictedTTFT) }

func newPredictedTTFT(p predictedTTFTParams) *PredictedTTFTScorer {
	return &PredictedTTFTScorer{params: p, outputs: newOutputLengths(p.DefaultOutputTokens),
		pods: map[*scrape.Endpoint]*podState{}, byID: map[uint64]*podState{}}
}

// Name implements Plugin.
func (*PredictedTTFTScorer) Name() string { return "predicted_ttft" }

// After names the Prepare plugin whose data it reads (this picker's picks
// the pods have not shown, and those before their first token).
func (*PredictedTTFTScorer) After() []string { return []string{"in_flight"} }

func (s *PredictedTTFTScorer) pod(ep *scrape.Endpoint) *podState {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pods[ep]
	if p == nil {
		p = &podState{}
		s.pods[ep] = p
	}
	return p
}

// estimates are p's step costs; p.mu held.
func (s *PredictedTTFTScorer) estimates(p *podState) podEstimates {
	e := podEstimates{decodeStep: p.clock.decode, prefillToken: s.prefill.perToken(), chunk: float64(s.params.MaxBatchedTokens)}
	if e.decodeStep <= 0 {
		e.decodeStep = s.prefill.stepTime() // the pool's, for a pod not measured yet
	}
	if e.decodeStep <= 0 {
		e.decodeStep = s.params.DecodeStepMs / 1e3
	}
	if e.prefillToken <= 0 {
		e.prefillToken = s.params.PrefillTokenUs / 1e6
	}
	return e
}

// Prepare implements Preparer: each candidate's prediction.
func (s *PredictedTTFTScorer) Prepare(req *Request, cands []Candidate, now time.Time) {
	out := float64(s.outputs.expect(s.outputs.model(req.TargetModel), req.MaxTokens))
	foot := math.Float64frombits(s.footprint.Load())
	if foot == 0 {
		foot = float64(req.PromptTokens) + out/2
	}
	for i := range cands {
		c := &cands[i]
		own := float64(max(req.PromptTokens-c.PrefixBlocks*blockTokens, 0))
		p := s.pod(c.EP)
		p.mu.Lock()
		p.observe(c.S, &s.prefill)
		f := p.forecast(c, now, s.estimates(p), own, out, float64(s.params.DefaultOutputTokens), s.forget)
		c.PredictedTTFT, c.PredictedRecompute, c.PredictedWait = f.predict()
		c.KVCapacity = f.capacity
		c.KVDemand = (c.S.Running + c.S.Waiting + float64(c.InFlight.Requests) + 1) * foot
		p.mu.Unlock()
	}
}

// Score implements Scorer: the candidate with the least predicted cost
// (time to first token plus the recompute it risks there) scores 1, one
// twice as costly 0.5.
func (s *PredictedTTFTScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	withRecompute := true
	switch s.params.Gate {
	case "wait":
		withRecompute = false
		for i := range cands {
			if cands[i].PredictedWait == 0 {
				withRecompute = true
			}
		}
	case "never":
		withRecompute = false
	case "demand":
		d, k := 0.0, 0.0
		for i := range cands {
			d += cands[i].KVDemand
			k += cands[i].KVCapacity
		}
		withRecompute = k == 0 || d < s.params.Theta*k
	case "anywait":
		n := 0
		for i := range cands {
			if cands[i].PredictedWait > 0 {
				n++
			}
		}
		withRecompute = float64(n) < s.params.GateFrac*float64(len(cands))
	case "short":
		withRecompute = false
		for i := range cands {
			if cands[i].PredictedRecompute <= s.params.GateFrac*cands[i].PredictedTTFT {
				withRecompute = true
			}
		}
	}
	alpha := 1.0
	if s.params.Alpha > 0 {
		alpha = s.params.Alpha
	}
	cost := func(c *Candidate) float64 {
		if withRecompute {
			return c.PredictedTTFT + alpha*c.PredictedRecompute
		}
		return c.PredictedTTFT
	}
	best := math.Inf(1)
	for i := range cands {
		best = min(best, cost(&cands[i]))
	}
	last := s.last.Load()
	if s.params.Balance > 0 && (withRecompute || s.params.BalanceSat) {
		// Among near-ties, the least demand.
		bi := -1
		for i := range cands {
			if cost(&cands[i]) <= best*(1+s.params.Balance) && (bi < 0 || cands[i].KVDemand < cands[bi].KVDemand) {
				bi = i
			}
		}
		for i := range cands {
			t := cost(&cands[i])
			scores[i] = best / t
			if i == bi {
				scores[i] = 1
			} else if t <= best*(1+s.params.Balance) {
				scores[i] = min(scores[i], 0.999)
			}
		}
		return
	}
	for i := range cands {
		t := cost(&cands[i])
		if t > 0 && best > 0 {
			scores[i] = best / t
		} else {
			scores[i] = 1
		}
		if s.params.Sticky > 0 && (!s.params.StickySat || !withRecompute) && cands[i].EP == last && t <= best*(1+s.params.Sticky)+s.params.StickyAbs {
			scores[i] = 1
		}
	}
}

func predictedCost(c *Candidate) float64 { return c.PredictedTTFT + c.PredictedRecompute }

// PostPick implements PostPicker: the request joins the chosen pod's
// queue.
func (s *PredictedTTFTScorer) PostPick(req *Request, c *Candidate, now time.Time) {
	model := s.outputs.model(req.TargetModel)
	r := &openPick{id: req.PickID, at: now, prompt: max(req.PromptTokens, 1), maxTokens: req.MaxTokens, model: model,
		out: s.outputs.expect(model, req.MaxTokens), work: max(req.PromptTokens-c.PrefixBlocks*blockTokens, 0)}
	s.last.Store(c.EP)
	foot := float64(r.prompt) + float64(r.out)/2
	old := math.Float64frombits(s.footprint.Load())
	if old == 0 {
		old = foot
	}
	s.footprint.Store(math.Float64bits(old + 0.05*(foot-old)))
	p := s.pod(c.EP)
	p.mu.Lock()
	r.first = p.clock.steps(now, s.estimates(p).decodeStep)
	p.add(r, s.forget)
	p.mu.Unlock()
	if r.id != 0 {
		s.mu.Lock()
		s.byID[r.id] = p
		s.mu.Unlock()
	}
}

// forget drops id from the index.
func (s *PredictedTTFTScorer) forget(id uint64) {
	s.mu.Lock()
	delete(s.byID, id)
	s.mu.Unlock()
}

// RequestsDone implements RequestEnder: an ended request frees its KV in
// the forecast at once, and its length teaches its model's output
// estimate.
func (s *PredictedTTFTScorer) RequestsDone(ends []RequestEnd, now time.Time) {
	for _, e := range ends {
		s.mu.Lock()
		p := s.byID[e.ID]
		delete(s.byID, e.ID)
		s.mu.Unlock()
		if p == nil {
			continue
		}
		p.mu.Lock()
		r, held := p.end(e.ID, e.CompletionTokens, p.clock.steps(now, s.estimates(p).decodeStep))
		p.freed += held
		p.mu.Unlock()
		if r != nil {
			r.model.observe(e.CompletionTokens, r.maxTokens)
		}
	}
}

// EndpointsRemoved implements EndpointRemover.
func (s *PredictedTTFTScorer) EndpointsRemoved(eps []*scrape.Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ep := range eps {
		if p := s.pods[ep]; p != nil {
			for id, q := range s.byID {
				if q == p {
					delete(s.byID, id)
				}
			}
		}
		delete(s.pods, ep)
	}
}
