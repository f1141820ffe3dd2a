package scheduling

import (
	"encoding/json"
	"errors"
	"sync"
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
	// SaturatedDemand is the share of the fleet's KV cache past which the
	// requests on it (at their mean footprint) saturate it: placement then
	// drops the recompute term and staggers (0: never).
	SaturatedDemand float64 `json:"saturatedDemand"`
	// BalanceWithin and StaggerWithin are how close to the best cost, as a
	// fraction of it, a candidate ties: below saturation the tie goes to
	// the least KV demand, saturated to the pod picked last (0: no tie).
	BalanceWithin float64 `json:"balanceWithin"`
	StaggerWithin float64 `json:"staggerWithin"`
	// StaggerSkew is the planned unevenness of a burst into a filling
	// fleet: pods' predicted costs are divided by weights from
	// 1-StaggerSkew to 1+StaggerSkew by address, while the requests on the
	// fleet would need more than SaturatedDemand of its KV cache at their
	// ends and less than StaggerBelowUse of it is in use (0: never).
	StaggerSkew     float64 `json:"staggerSkew"`
	StaggerBelowUse float64 `json:"staggerBelowUse"`
}

// The defaults: a 7-8B model on one mid-range GPU, vLLM's default budget.
// The placement's, from BenchmarkFleet (docs/scheduling.md).
var defaultPredictedTTFT = predictedTTFTParams{DecodeStepMs: 30, PrefillTokenUs: 100, DefaultOutputTokens: 256, MaxBatchedTokens: 2048,
	SaturatedDemand: 0.95, BalanceWithin: 0.03, StaggerWithin: 0.05, StaggerSkew: 0.25, StaggerBelowUse: 0.5}

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
		case !(p.SaturatedDemand >= 0 && p.SaturatedDemand <= 100):
			return nil, errors.New("saturatedDemand must be in [0, 100]")
		case !(p.BalanceWithin >= 0 && p.BalanceWithin <= 1):
			return nil, errors.New("balanceWithin must be in [0, 1]")
		case !(p.StaggerWithin >= 0 && p.StaggerWithin <= 1):
			return nil, errors.New("staggerWithin must be in [0, 1]")
		case !(p.StaggerSkew >= 0 && p.StaggerSkew <= 0.9):
			return nil, errors.New("staggerSkew must be in [0, 0.9]")
		case !(p.StaggerBelowUse >= 0 && p.StaggerBelowUse <= 1):
			return nil, errors.New("staggerBelowUse must be in [0, 1]")
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
	for i := range cands {
		c := &cands[i]
		own := float64(max(req.PromptTokens-c.PrefixBlocks*blockTokens, 0))
		p := s.pod(c.EP)
		p.mu.Lock()
		p.observe(c.S, &s.prefill)
		f := p.forecast(c, now, s.estimates(p), own, out, float64(s.params.DefaultOutputTokens), s.forget)
		c.PredictedTTFT, c.PredictedRecompute = f.predict()
		// The requests on the pod, at the picks' average prompt and
		// output, or this request's before the first.
		prompt, output := float64(req.PromptTokens), out
		if p.output > 0 {
			prompt, output = p.prompt, p.output
		}
		n := c.S.Running + c.S.Waiting + float64(c.InFlight.Requests)
		c.KVCapacity, c.KVDemand, c.KVPeak, c.LastPicked = f.capacity, n*(prompt+output/2), n*(prompt+output), p.lastPick
		p.mu.Unlock()
	}
}

// Score implements Scorer: the candidate with the least predicted cost
// (time to first token, plus the recompute it risks there unless the
// fleet is saturated) scores 1, one twice as costly 0.5; a near tie goes
// to the preferred pod (predicted_placement.go).
func (s *PredictedTTFTScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	sat := saturated(cands, s.params.SaturatedDemand)
	within := s.params.BalanceWithin
	if sat {
		within = s.params.StaggerWithin
	}
	skew := 0.0
	if s.staggered(cands) {
		skew = s.params.StaggerSkew
	}
	placementScores(cands, scores, sat, within, skew)
}

// staggered reports whether a pick among cands is staggered by plan.
func (s *PredictedTTFTScorer) staggered(cands []Candidate) bool {
	return s.params.StaggerSkew > 0 && staggering(cands, s.params.SaturatedDemand, s.params.StaggerBelowUse)
}

// Regime implements regimeTeller: which regime the scores were made in,
// the share of the fleet's KV its requests need ("" and 0 when the scorer
// has one regime: SaturatedDemand 0), and whether they were staggered.
func (s *PredictedTTFTScorer) Regime(cands []Candidate) (string, float64, bool) {
	if s.params.SaturatedDemand == 0 {
		return "", 0, false
	}
	stag := s.staggered(cands)
	if saturated(cands, s.params.SaturatedDemand) {
		return RegimeSaturated, demandShare(cands), stag
	}
	return RegimeUnsaturated, demandShare(cands), stag
}

// PostPick implements PostPicker: the request joins the chosen pod's
// queue.
func (s *PredictedTTFTScorer) PostPick(req *Request, c *Candidate, now time.Time) {
	model := s.outputs.model(req.TargetModel)
	r := &openPick{id: req.PickID, at: now, prompt: max(req.PromptTokens, 1), maxTokens: req.MaxTokens, model: model,
		out: s.outputs.expect(model, req.MaxTokens), work: max(req.PromptTokens-c.PrefixBlocks*blockTokens, 0)}
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
