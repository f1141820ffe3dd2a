package scheduling

import (
	"encoding/json"
	"slices"
	"sync/atomic"
	"time"
)

// PrecisePrefixScorer scores, like prefix, the fraction of the request's
// prompt each pod holds in its prefix cache, but from what the engines
// report holding (vLLM's KV-cache events) rather than from this picker's
// past picks. It needs the prompt's token ids; where it cannot have them
// (no body on this path, the tokenizer failed) it keeps the approximate
// guess for every pod, and where a pod's events are incomplete (not caught
// up, never connected) it keeps the guess for that pod. Both are counted.
//
// It runs after prefix in a profile's prepare list: Prepare overwrites the
// PrefixBlocks prefix wrote with the engines' answer, in the same units
// (the request's prefix hash blocks), so that every plugin weighing the
// prefill work a pod would do (prefill, in_flight) sees the engines' answer
// too. Without an EngineCache (SetSource) it is the approximate guess.
type PrecisePrefixScorer struct {
	src atomic.Pointer[engineCacheBox]

	noTokens atomic.Uint64 // picks scored by the guess: no token ids
	noneHeld atomic.Uint64 // picks scored by the guess: no engine holds any of the prompt
	notReady atomic.Uint64 // pods scored by the guess: their events incomplete
	precise  atomic.Uint64 // pods scored from the engines' events
}

type engineCacheBox struct{ EngineCache }

// HeldPrefix is what the engines report of one pod for a request.
type HeldPrefix struct {
	// Fraction of the request's prompt tokens the pod holds as a cached
	// prefix, in [0,1].
	Fraction float64
	// Ready is false when the source cannot tell for this pod.
	Ready bool
}

// EngineCache is the engines' own account of their prefix caches, provided
// by the app (from KV events; scheduling does no network I/O itself).
type EngineCache interface {
	// Tokens returns the prompt's token ids for req (ok false when it
	// cannot: no body, a tokenizer error or timeout). It may call a
	// tokenizer and must bound how long it takes.
	Tokens(req *Request, cands []Candidate) (tokens []uint32, ok bool)
	// Held writes, for each candidate, what its engine holds of
	// req.Tokens into out (len(out) == len(cands)).
	Held(req *Request, cands []Candidate, out []HeldPrefix)
	// Picked says the pick went to c: its engine will hold the prompt
	// soon, before its events say so.
	Picked(req *Request, c *Candidate)
}

// PrecisePrefixName is the plugin's name in profiles.
const PrecisePrefixName = "precise_prefix"

func init() {
	Register(PrecisePrefixName, func(params json.RawMessage) (Plugin, error) {
		if err := decodeParams(params, &struct{}{}); err != nil {
			return nil, err
		}
		return &PrecisePrefixScorer{}, nil
	})
}

// Name implements Plugin.
func (*PrecisePrefixScorer) Name() string { return PrecisePrefixName }

// SetSource gives the scorer the engines' account (nil: none, the guess).
func (p *PrecisePrefixScorer) SetSource(src EngineCache) {
	if src == nil {
		p.src.Store(nil)
		return
	}
	p.src.Store(&engineCacheBox{src})
}

// PrecisePrefixCounts are the scorer's fallbacks, for metrics.
type PrecisePrefixCounts struct {
	// NoTokens: picks scored by the approximate guess for want of token ids.
	NoTokens uint64
	// NotReady: candidate pods scored by the guess because their events
	// were incomplete.
	NotReady uint64
	// NoneHeld: picks scored by the guess because no engine that could
	// tell held any of the prompt (evicted everywhere, or never served).
	NoneHeld uint64
	// Precise: candidate pods scored from their engines' events.
	Precise uint64
}

// Counts reports the fallbacks so far.
func (p *PrecisePrefixScorer) Counts() PrecisePrefixCounts {
	return PrecisePrefixCounts{NoTokens: p.noTokens.Load(), NoneHeld: p.noneHeld.Load(), NotReady: p.notReady.Load(), Precise: p.precise.Load()}
}

// Fetch implements Fetcher: the prompt's token ids, before prefix reads
// its guess (a tokenizer call takes milliseconds; see Fetcher).
func (p *PrecisePrefixScorer) Fetch(req *Request, cands []Candidate) {
	box := p.src.Load()
	if box == nil || len(cands) == 0 {
		return
	}
	if tokens, ok := box.Tokens(req, cands); ok && len(tokens) > 0 {
		req.Tokens = tokens
	}
}

// Prepare implements Preparer: PrefixBlocks from the engines' events where
// they can tell, the guess (already written by prefix) elsewhere.
func (p *PrecisePrefixScorer) Prepare(req *Request, cands []Candidate, _ time.Time) {
	box := p.src.Load()
	if box == nil || len(cands) == 0 {
		return
	}
	if len(req.Tokens) == 0 {
		p.noTokens.Add(1)
		return
	}
	var small [16]HeldPrefix
	var held []HeldPrefix
	if len(cands) <= len(small) {
		held = small[:len(cands)]
	} else {
		held = make([]HeldPrefix, len(cands))
	}
	box.Held(req, cands, held)
	// Where no engine holds any of the prompt, all of them would prefill
	// it alike, and the engines' zeros would place it by load alone:
	// under cache pressure a customer whose context was evicted then
	// lands on a new pod each time, and the fleet stores the same context
	// several times over, evicting more. The guess remembers where this
	// prompt went last, so it is prefilled and kept once.
	if !heldAnywhere(held) {
		p.noneHeld.Add(1)
		return
	}
	n := len(req.PrefixHashes)
	for i := range cands {
		if !held[i].Ready {
			p.notReady.Add(1)
			continue
		}
		p.precise.Add(1)
		f := min(max(held[i].Fraction, 0), 1)
		cands[i].PrefixBlocks = int(f*float64(n) + 0.5)
	}
}

// heldAnywhere says whether an engine that can tell holds part of the
// prompt.
func heldAnywhere(held []HeldPrefix) bool {
	for _, h := range held {
		if h.Ready && h.Fraction > 0 {
			return true
		}
	}
	return false
}

// Score implements Scorer: the fraction of the request's blocks held.
func (p *PrecisePrefixScorer) Score(req *Request, cands []Candidate, scores []float64) {
	n := len(req.PrefixHashes)
	for i := range cands {
		if n == 0 {
			scores[i] = 0
			continue
		}
		scores[i] = min(float64(cands[i].PrefixBlocks)/float64(n), 1)
	}
}

// PostPick implements PostPicker: the picked engine will hold the prompt.
func (p *PrecisePrefixScorer) PostPick(req *Request, c *Candidate, _ time.Time) {
	if box := p.src.Load(); box != nil && req.Tokens != nil {
		box.Picked(req, c)
	}
}

// PrecisePrefixPrepare returns prepare with what precise_prefix needs
// before it: prefix (the guess it falls back to) ahead of precise_prefix.
func PrecisePrefixPrepare(prepare []string) []string {
	out := slices.DeleteFunc(slices.Clone(prepare), func(n string) bool { return n == PrecisePrefixName })
	if !slices.Contains(out, "prefix") {
		out = append(out, "prefix")
	}
	return append(out, PrecisePrefixName)
}

// precisePrefixProfile is PRECISE_PREFIX_CACHE's default: PREFIX_CACHE's
// weights with the engines' account in place of the guess.
func precisePrefixProfile(filters []string) ProfileSpec {
	return ProfileSpec{Prepare: PrecisePrefixPrepare([]string{"in_flight"}), Filters: filters, Scorers: []WeightedScorer{
		{PrecisePrefixName, 5}, {"queue", 2}, {"outstanding", 1}, {"kv_cache", 3}, {"lora", 6}}}
}
