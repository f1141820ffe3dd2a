// Package precise is the app's side of precise prefix-cache routing: the
// scheduling.EngineCache that precise_prefix reads (the KV-event index of
// what each engine holds, and the prompt's token ids from an engine's
// render endpoint), and the subscriptions that keep the index current as
// discovery adds and drops endpoints.
package precise

import (
	"context"
	"sync/atomic"

	"github.com/meshllm/meshllm/picker-svc/internal/kvevents"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
)

// defaultBlockSize is vLLM's KV block size when a pod's metrics do not say
// (cache_config_info block_size).
const defaultBlockSize = 16

// Source answers precise_prefix from the index and the tokenizer. Pods are
// named in the index by their endpoint address (host:port).
type Source struct {
	Index     *kvevents.Index
	Tokenizer *Tokenizer
	next      atomic.Uint64 // spreads tokenizer calls over the candidates
}

var _ scheduling.EngineCache = (*Source)(nil)

// Tokens implements scheduling.EngineCache: the engines render the body
// (a candidate, taken in turn, answers). Without a body (the filter's pick
// path) there are none.
func (s *Source) Tokens(req *scheduling.Request, cands []scheduling.Candidate) ([]uint32, bool) {
	if len(req.Body) == 0 || len(cands) == 0 || s.Tokenizer == nil {
		return nil, false
	}
	c := &cands[s.next.Add(1)%uint64(len(cands))]
	ids, err := s.Tokenizer.Tokens(context.Background(), c.EP.Addr, req.Body)
	return ids, err == nil
}

// adapter is the LoRA name the engine keys the request's blocks by: ""
// for the base model (as the lora scorer tells them apart).
func adapter(req *scheduling.Request, c *scheduling.Candidate) string {
	if s := c.S; s == nil || s.MaxLoRA == 0 || req.TargetModel == s.BaseModel {
		return ""
	}
	return req.TargetModel
}

// Held implements scheduling.EngineCache. Candidates for the same adapter
// (usually all of them) are scored in one pass over the prompt's blocks.
func (s *Source) Held(req *scheduling.Request, cands []scheduling.Candidate, out []scheduling.HeldPrefix) {
	pods := make([]string, 0, len(cands))
	idx := make([]int, 0, len(cands))
	var scores []kvevents.PodScore
	done := make([]bool, len(cands))
	for i := range cands {
		if done[i] {
			continue
		}
		lora := adapter(req, &cands[i])
		pods, idx = pods[:0], idx[:0]
		for j := i; j < len(cands); j++ {
			if !done[j] && adapter(req, &cands[j]) == lora {
				pods, idx = append(pods, cands[j].EP.Addr), append(idx, j)
				done[j] = true
			}
		}
		scores = s.Index.Score(req.Tokens, lora, pods, scores)
		for k, j := range idx {
			bs := blockSize(&cands[j])
			out[j] = scheduling.HeldPrefix{Ready: scores[k].Ready, Fraction: min(float64(scores[k].Blocks*bs)/float64(len(req.Tokens)), 1)}
		}
	}
}

// Picked implements scheduling.EngineCache: the pick's blocks count as
// held until the engine's own events confirm them.
func (s *Source) Picked(req *scheduling.Request, c *scheduling.Candidate) {
	s.Index.AddSpeculative(c.EP.Addr, req.Tokens, adapter(req, c), blockSize(c))
}

// blockSize is the pod's KV block size as its metrics say (vLLM's
// cache_config_info), else vLLM's default.
func blockSize(c *scheduling.Candidate) int {
	if c.S != nil && c.S.BlockSize > 0 {
		return c.S.BlockSize
	}
	return defaultBlockSize
}
