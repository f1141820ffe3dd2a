package scheduling

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// PredictedTTFTScorer prefers the pod where the request is predicted to get
// its first token soonest (predictor.go has the model). It knows each
// pod's trajectory, not only its fill: the KV its running requests hold
// and will still take (prompt plus what they generated, up to their
// expected output: max_tokens, or what recent requests of the model
// generated where they stop early), when they will free it, what is queued
// there (the in_flight plugin's picks before their first token, which
// count from the moment they are made: no herd between two scrapes), and
// the request's own prefill less the prefix the pod holds (the prefix
// plugin's guess, when the profile has it).
//
// It is a Prepare plugin, listed after in_flight (and prefix) because it
// reads what they write: Prepare predicts each candidate's TTFT
// (Candidate.PredictedTTFT), Score rates it min/predicted.
type PredictedTTFTScorer struct {
	params  predictedTTFTParams
	outputs *outputLengths

	mu   sync.Mutex
	pods map[*scrape.Endpoint]*podTrajectories
	byID map[uint64]*podTrajectories
}

type predictedTTFTParams struct {
	// DecodeStepMs is a decode step's duration, and PrefillTokenUs what a
	// prefill token adds to its step, until the pod's scrapes have shown
	// its own (vllm:iteration_tokens_total and vllm:prompt_tokens_total).
	DecodeStepMs   float64 `json:"decodeStepMs"`
	PrefillTokenUs float64 `json:"prefillTokenUs"`
	// DefaultOutputTokens is the output expected of a request without
	// max_tokens, until requests of its model have ended with their
	// completion tokens reported.
	DefaultOutputTokens int `json:"defaultOutputTokens"`
}

// The defaults: a 7-8B model on one mid-range GPU.
var defaultPredictedTTFT = predictedTTFTParams{DecodeStepMs: 30, PrefillTokenUs: 100, DefaultOutputTokens: 256}

func init() {
	Register("predicted_ttft", func(params json.RawMessage) (Plugin, error) {
		p := defaultPredictedTTFT
		if err := decodeParams(params, &p); err != nil {
			return nil, err
		}
		if !(p.DecodeStepMs > 0 && p.DecodeStepMs <= 10_000) {
			return nil, errors.New("decodeStepMs must be in (0, 10000]")
		}
		if !(p.PrefillTokenUs > 0 && p.PrefillTokenUs <= 1e6) {
			return nil, errors.New("prefillTokenUs must be in (0, 1000000]")
		}
		if p.DefaultOutputTokens < 1 || p.DefaultOutputTokens > 1<<24 {
			return nil, errors.New("defaultOutputTokens must be in [1, 16777216]")
		}
		return NewPredictedTTFTScorer(p.DecodeStepMs, p.PrefillTokenUs, p.DefaultOutputTokens), nil
	})
}

// NewPredictedTTFTScorer returns the scorer with its defaults for pods not
// measured yet: a decode step of decodeStepMs, prefillTokenUs a prefill
// token, defaultOutput tokens of output when a request names no limit.
func NewPredictedTTFTScorer(decodeStepMs, prefillTokenUs float64, defaultOutput int) *PredictedTTFTScorer {
	return &PredictedTTFTScorer{
		params:  predictedTTFTParams{DecodeStepMs: decodeStepMs, PrefillTokenUs: prefillTokenUs, DefaultOutputTokens: defaultOutput},
		outputs: newOutputLengths(defaultOutput),
		pods:    map[*scrape.Endpoint]*podTrajectories{},
		byID:    map[uint64]*podTrajectories{},
	}
}

// Name implements Plugin.
func (*PredictedTTFTScorer) Name() string { return "predicted_ttft" }

// podTrajectories is what the scorer follows of one pod: its step clock
// and this picker's requests there that have not ended.
type podTrajectories struct {
	mu    sync.Mutex
	clock stepClock
	// pending are picks before their first token, in pick order; running
	// the others, by the step they will finish at.
	pending, running []*openPick
	// freed is the KV tokens of requests reported ended since the last
	// snapshot (which still counts them).
	freed float64
	// prompt is a moving average of the prompts picked here: the size
	// guessed for waiting requests the picker did not send.
	prompt float64
	buf    []trajectory
}

// openPick is one request this picker sent a pod.
type openPick struct {
	id            uint64
	prompt, out   int
	maxTokens     int
	model         *outputModel
	first, finish float64 // the pod's step count at its first token, and at its last (running only)
}

// maxOpenPicks bounds the requests one pod's trajectories follow.
const maxOpenPicks = 4096

// reconcileSlack is how many more open picks than the pod shows (running,
// waiting, and picks its scrape cannot show yet) are kept before the ones
// due to finish first are taken as ended: an end nobody reported (an
// older filter, a failed-open request) must not hold KV in the forecast
// for ever.
const reconcileSlack = 2

func (s *PredictedTTFTScorer) pod(ep *scrape.Endpoint) *podTrajectories {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pods[ep]
	if p == nil {
		p = &podTrajectories{}
		s.pods[ep] = p
	}
	return p
}

// Prepare implements Preparer: each candidate's predicted TTFT.
func (s *PredictedTTFTScorer) Prepare(req *Request, cands []Candidate, now time.Time) {
	for i := range cands {
		c := &cands[i]
		p := s.pod(c.EP)
		p.mu.Lock()
		c.PredictedTTFT = s.predict(p, req, c, now)
		p.mu.Unlock()
	}
}

// predict brings p up to c's snapshot and now, and forecasts; p.mu held.
func (s *PredictedTTFTScorer) predict(p *podTrajectories, req *Request, c *Candidate, now time.Time) float64 {
	snap := c.S
	if p.clock.observe(snap) {
		p.freed = 0
	}
	decodeStep := p.clock.decode
	if decodeStep <= 0 {
		decodeStep = s.params.DecodeStepMs / 1e3
	}
	prefillToken := p.clock.perToken
	if prefillToken <= 0 {
		prefillToken = s.params.PrefillTokenUs / 1e6
	}
	steps := p.clock.steps(now, decodeStep)
	inf := &c.InFlight

	// The oldest picks past the ones still before their first token have
	// started: they run from now on, as far as the picker can tell.
	for len(p.pending) > inf.BeforeFirstToken {
		r := p.pending[0]
		p.pending = p.pending[1:]
		r.first, r.finish = steps, steps+float64(r.out)
		p.insertRunning(r)
	}
	visible := snap.Running + snap.Waiting + float64(inf.Requests)
	for len(p.running) > 0 && float64(len(p.pending)+len(p.running)) > visible+reconcileSlack {
		s.forget(p.running[0].id)
		p.running = p.running[1:]
	}

	f := podForecast{decodeStep: decodeStep, prefillToken: prefillToken, queued: float64(inf.BacklogTokens)}
	// Picks the pod holds before their first token: waiting, or being
	// prefilled (and counted running).
	scraped := float64(max(inf.BeforeFirstToken-inf.Requests, 0))
	if w := snap.Waiting - scraped; w > 0 {
		f.queued += w * p.prompt // waiting requests someone else sent
	}
	prefilling := max(scraped-snap.Waiting, 0)
	f.unknown = max(int(snap.Running-prefilling)-len(p.running), 0)
	f.own = float64(max(req.PromptTokens-c.PrefixBlocks*blockTokens, 0))
	if total := snap.NumGPUBlocks * snap.BlockSize; total > 0 {
		f.capacity = float64(total)
		since := max(now.Sub(scrapeTime(snap)).Seconds(), 0) / decodeStep
		f.used = max(snap.KVCacheUsage*f.capacity+snap.Running*since-p.freed, 0)
		p.buf = p.buf[:0]
		for _, r := range p.running {
			gen := min(max(steps-r.first, 0), float64(r.out-1))
			p.buf = append(p.buf, trajectory{left: max(r.finish-steps, 1), held: float64(r.prompt) + gen})
		}
		f.running = p.buf
	}
	return f.ttft()
}

// insertRunning puts r among the running picks by its finish; p.mu held.
func (p *podTrajectories) insertRunning(r *openPick) {
	i, _ := slices.BinarySearchFunc(p.running, r.finish, func(x *openPick, f float64) int {
		if x.finish <= f {
			return -1
		}
		return 1
	})
	p.running = slices.Insert(p.running, i, r)
}

// Score implements Scorer: the fastest candidate scores 1, one predicted
// twice as slow 0.5.
func (s *PredictedTTFTScorer) Score(_ *Request, cands []Candidate, scores []float64) {
	best := math.Inf(1)
	for i := range cands {
		best = min(best, cands[i].PredictedTTFT)
	}
	for i := range cands {
		t := cands[i].PredictedTTFT
		if t <= 0 || best <= 0 {
			scores[i] = 1
			continue
		}
		scores[i] = best / t
	}
}

// PostPick implements PostPicker: the request joins the chosen pod's
// queue.
func (s *PredictedTTFTScorer) PostPick(req *Request, c *Candidate, _ time.Time) {
	model := s.outputs.model(req.TargetModel)
	r := &openPick{id: req.PickID, prompt: max(req.PromptTokens, 1), maxTokens: req.MaxTokens, model: model,
		out: s.outputs.expect(model, req.MaxTokens)}
	p := s.pod(c.EP)
	p.mu.Lock()
	if len(p.pending)+len(p.running) >= maxOpenPicks {
		if len(p.running) > 0 {
			s.forget(p.running[0].id)
			p.running = p.running[1:]
		} else {
			s.forget(p.pending[0].id)
			p.pending = p.pending[1:]
		}
	}
	p.pending = append(p.pending, r)
	p.prompt = smoothPrompt(p.prompt, float64(r.prompt))
	p.mu.Unlock()
	if r.id != 0 {
		s.mu.Lock()
		s.byID[r.id] = p
		s.mu.Unlock()
	}
}

func smoothPrompt(avg, x float64) float64 {
	if avg == 0 {
		return x
	}
	return avg + 0.1*(x-avg)
}

// forget drops id from the index.
func (s *PredictedTTFTScorer) forget(id uint64) {
	s.mu.Lock()
	delete(s.byID, id)
	s.mu.Unlock()
}

// RequestsDone implements RequestEnder: an ended request frees its KV in
// the forecast at once, and its length teaches the model's output
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
		if r, i := find(p.running, e.ID); r != nil {
			p.running = slices.Delete(p.running, i, i+1)
			gen := float64(e.CompletionTokens)
			if gen < 0 {
				gen = min(max(p.clock.steps(now, s.decodeStep(p))-r.first, 0), float64(r.out))
			}
			p.freed += float64(r.prompt) + gen
			r.model.observe(e.CompletionTokens, r.maxTokens)
		} else if r, i := find(p.pending, e.ID); r != nil {
			p.pending = slices.Delete(p.pending, i, i+1)
			r.model.observe(e.CompletionTokens, r.maxTokens)
		}
		p.mu.Unlock()
	}
}

func (s *PredictedTTFTScorer) decodeStep(p *podTrajectories) float64 {
	if p.clock.decode > 0 {
		return p.clock.decode
	}
	return s.params.DecodeStepMs / 1e3
}

func find(rs []*openPick, id uint64) (*openPick, int) {
	for i, r := range rs {
		if r.id == id {
			return r, i
		}
	}
	return nil, -1
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
