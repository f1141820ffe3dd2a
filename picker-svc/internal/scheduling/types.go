// Package scheduling decides which endpoint serves a request. A profile is
// data: filters narrow the candidates, weighted scorers rate each in [0,1],
// a picker takes the best (ties at random) and ranks fallbacks. Plugins are
// built by name from a registry each one registers itself in; stateful ones
// (the prefix index, in-flight accounting) own their state and keep it
// current from hooks: Prepare before a pick, PostPick after it, and
// EndpointsRemoved when an endpoint leaves every pool.
package scheduling

import (
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// Candidate is an endpoint judged for one pick: the snapshot it is judged
// on, and what Prepare plugins added for this pick.
type Candidate struct {
	EP *scrape.Endpoint
	S  *scrape.Snapshot
	// InFlight is what this picker sent the endpoint that its snapshot does
	// not show yet (written by the in_flight plugin; zero without it).
	InFlight InFlight
	// PrefixBlocks is how many of the request's leading prefix blocks the
	// endpoint likely holds (written by the prefix plugin; 0 without it).
	PrefixBlocks int
	// PredictedTTFT is the request's predicted time to first token on the
	// endpoint, in seconds (written by the predicted_ttft scorer; 0
	// without it), for the pick's explanation.
	PredictedTTFT float64
	// PredictedRecompute is the seconds of prefill the endpoint is
	// predicted to spend redoing requests it preempts, for lack of KV
	// cache, if this one is placed there (the predicted_ttft scorer).
	PredictedRecompute float64
	// KVDemand is the KV cache, in tokens, that the requests on the
	// endpoint (running, waiting, and on their way) need at
	// their mean footprint over their lives (prompt plus half the
	// output); KVCapacity is its cache (0: not known); LastPicked is when
	// this picker last sent it a request. Written by the predicted_ttft
	// scorer, which places by them once the fleet is saturated.
	KVDemand, KVCapacity float64
	LastPicked           time.Time
	// KVPeak is the KV cache those requests need at their end (prompt
	// plus the whole expected output): what they would hold together if
	// they had started together.
	KVPeak float64
}

// InFlight is what the in_flight plugin knows beyond an endpoint's last
// scrape.
type InFlight struct {
	// Requests and PromptTokens: picks the last scrape cannot have seen.
	Requests     int
	PromptTokens int
	// BeforeFirstToken: this picker's picks for the endpoint that have no
	// first token yet (waiting, prefilling, or on their way), at least
	// Requests. A request being prefilled shows as running, not waiting;
	// this counts it until the pod's TTFT count says its prefill is done.
	BeforeFirstToken int
	// BacklogTokens is the prefill work of those picks (each one's prompt
	// less the prefix the pod likely held when it was picked): the work
	// queued at the pod ahead of this request (the newest BeforeFirstToken
	// picks; the oldest get their first token first).
	BacklogTokens int
}

// Request is what plugins know about the request being placed.
type Request struct {
	// TargetModel is the model or adapter that will serve the request.
	TargetModel  string
	Criticality  pickapi.Criticality
	PrefixHashes []uint64
	// PromptTokens estimates the prompt's length (0: unknown).
	PromptTokens int
	// MaxTokens is the request's output limit (0: none given).
	MaxTokens int
	// Explain asks Pick for the pick's explanation (Result.Explanation).
	Explain bool
	// PickID is the pick's id, set once the pick is made (for PostPick).
	PickID uint64
	// Body is the request's body when the picker has it (the ext_proc
	// path), for plugins that need the prompt itself (precise_prefix
	// tokenizes it); nil otherwise.
	Body []byte
	// Tokens are the prompt's token ids once a plugin has them (written by
	// precise_prefix's Fetch); nil otherwise.
	Tokens []uint32
}

// Plugin is anything a profile is built from.
type Plugin interface {
	Name() string
}

// Filter drops candidates that should not serve req. It may reorder or
// reuse cands' backing array; returning none is allowed (the scheduler then
// keeps the unfiltered set: filters express preferences strong enough to
// override scores, never a reason to fail a request).
type Filter interface {
	Plugin
	Filter(req *Request, cands []Candidate) []Candidate
}

// Scorer writes into scores[i] (len(scores) == len(cands)) how well cands[i]
// suits req, in [0,1], higher is better. Score must not allocate.
type Scorer interface {
	Plugin
	Score(req *Request, cands []Candidate, scores []float64)
}

// Picker chooses among scored candidates: out[0] is the pick, the rest are
// ranked fallbacks (at most len(out)). It returns how many it wrote.
type Picker interface {
	Plugin
	Pick(cands []Candidate, totals []float64, out []int) int
}

// Preparer adds per-pick data to every candidate before filters run.
type Preparer interface {
	Plugin
	Prepare(req *Request, cands []Candidate, now time.Time)
}

// Fetcher gathers what a pick needs from outside the picker (a prompt's
// token ids from a tokenizer) before any Preparer reads the state that
// PostPickers write. Picks run concurrently, and a pick that reads that
// state, then waits on I/O, then records its choice misses every pick made
// meanwhile: concurrent requests sharing a prefix would each find it held
// nowhere and spread over the pods. Fetching first keeps read and record
// microseconds apart, as they are for plugins that do no I/O.
type Fetcher interface {
	Plugin
	Fetch(req *Request, cands []Candidate)
}

// PostPicker learns which candidate a pick chose (with what Prepare wrote
// for it).
type PostPicker interface {
	Plugin
	PostPick(req *Request, picked *Candidate, now time.Time)
}

// RequestEnd is one ended request, as its sender reported it.
type RequestEnd struct {
	// ID is the pick's id (Result.PickID).
	ID uint64
	// CompletionTokens is the output it generated; -1 when not known.
	CompletionTokens int
}

// RequestEnder learns that the requests of earlier picks have ended (the
// filter reports them on its next pick): sooner than a scrape shows it.
type RequestEnder interface {
	Plugin
	RequestsDone(ends []RequestEnd, now time.Time)
}

// EndpointRemover forgets state about endpoints that left every pool.
type EndpointRemover interface {
	Plugin
	EndpointsRemoved(eps []*scrape.Endpoint)
}
