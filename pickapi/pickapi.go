package pickapi

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/internal/jsonenc"
	"github.com/meshllm/meshllm/internal/jsonscan"
)

// Path is where picker-svc serves picks.
const Path = "/v1/pick"

// HeaderDestinationEndpoint carries the chosen "ip:port" to Envoy's
// override_host / ORIGINAL_DST load balancing (the Gateway API Inference
// Extension endpoint-picker protocol).
const HeaderDestinationEndpoint = "x-gateway-destination-endpoint"

// HeaderExplain, on a client's request, asks the gateway for the pick's
// explanation (PickRequest.Explain): it lands in the access log
// (wasm.llm_pick_explain) and, where the operator allows it, in the
// response header HeaderPickExplanation.
const HeaderExplain = "x-meshllm-explain"

// HeaderPickExplanation carries the pick's explanation on the response.
const HeaderPickExplanation = "x-meshllm-pick-explanation"

// MaxFallbacks bounds the ranked fallback list an answer may carry.
const MaxFallbacks = 8

// Criticality of a request, as an InferenceModel declares it.
type Criticality string

// The criticality classes, most important first. Under saturation the picker
// sheds Sheddable first, then Standard, never Critical.
const (
	Critical  Criticality = "Critical"
	Standard  Criticality = "Standard"
	Sheddable Criticality = "Sheddable"
)

// ParseCriticality maps a wire value to a Criticality; "" means Standard.
func ParseCriticality(s string) (Criticality, error) {
	switch Criticality(s) {
	case "":
		return Standard, nil
	case Critical, Standard, Sheddable:
		return Criticality(s), nil
	}
	return "", fmt.Errorf("unknown criticality %q (want Critical, Standard or Sheddable)", s)
}

// Strategy names a pool's routing strategy, as set by the InferencePool
// annotation inference.networking.x-k8s.io/routing-strategy.
type Strategy string

// The routing strategies.
const (
	StrategyDefault     Strategy = "DEFAULT"
	StrategyPrefixCache Strategy = "PREFIX_CACHE"
	// StrategyPrecisePrefixCache routes on the prefixes the engines report
	// holding (vLLM's KV-cache events), PREFIX_CACHE's guess where they
	// cannot tell.
	StrategyPrecisePrefixCache Strategy = "PRECISE_PREFIX_CACHE"
	// StrategyLatency places each request where it is predicted to get
	// its first token soonest (the predicted_ttft scorer).
	StrategyLatency Strategy = "LATENCY"
)

// DefaultStrategy is the strategy of a pool without the annotation, and of
// a pick naming none: LATENCY, which won the regime grid
// (docs/scheduling.md). DEFAULT keeps the name the annotation gives the
// queue-and-KV balancing policy.
const DefaultStrategy = StrategyLatency

// Strategies lists the routing strategies, in the order errors name them.
var Strategies = []Strategy{StrategyDefault, StrategyPrefixCache, StrategyPrecisePrefixCache, StrategyLatency}

// Known reports whether s is one of Strategies.
func (s Strategy) Known() bool {
	_, err := ParseStrategy(string(s))
	return err == nil
}

// ParseStrategy maps an annotation value to a Strategy.
func ParseStrategy(s string) (Strategy, error) {
	for _, st := range Strategies {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("%q is not a routing strategy (want %s)", s, StrategyList())
}

// StrategyList names the strategies for messages: "DEFAULT, PREFIX_CACHE or LATENCY".
func StrategyList() string {
	out := ""
	for i, st := range Strategies {
		switch {
		case i == 0:
		case i == len(Strategies)-1:
			out += " or "
		default:
			out += ", "
		}
		out += string(st)
	}
	return out
}

// RoutingStrategyAnnotation selects a pool's Strategy.
const RoutingStrategyAnnotation = "inference.networking.x-k8s.io/routing-strategy"

// ObjectiveHeaders are the request headers that name an InferenceObjective
// (by its metadata.name), in the order a filter should read them: the
// first present wins. The upstream endpoint picker reads its current name
// first, then the deprecated aliases (llm-d/llm-d-router
// pkg/epp/metadata/consts.go ObjectiveKey / OldObjectiveKey; PR #1161
// named it x-llm-d-inference-objective before the x-llm-d-router- prefix).
// x-gateway-inference-objective is the Gateway API Inference Extension's
// original name (site-src/api-types/inferenceobjective.md) and what most
// clients still send.
var ObjectiveHeaders = []string{
	"x-llm-d-router-inference-objective",
	"x-llm-d-inference-objective",
	"x-gateway-inference-objective",
}

// PickRequest asks which endpoint should serve one LLM request.
type PickRequest struct {
	// Pool names the InferencePool; empty lets the picker resolve it by Model.
	Pool string `json:"pool,omitempty"`
	// Model is what the client asked for (an InferenceModel's modelName, an
	// adapter or a base model). Empty with a Pool asks for a pool-level pick
	// by load alone (the filter's header-time routing).
	Model string `json:"model"`
	// Criticality applies to a model no InferenceModel names (one that
	// does carries its own). The filter never sends it: criticality is the
	// operator's to declare, not the client's to claim. Empty is Standard.
	Criticality Criticality `json:"criticality,omitempty"`
	// Objective names an InferenceObjective of the pool (the value of the
	// first ObjectiveHeaders header the request carries); its priority
	// then decides whether the request is shed. Empty, or naming no
	// objective of the pool: no objective (the InferenceModel's
	// criticality, else Criticality, applies).
	Objective string `json:"objective,omitempty"`
	// PrefixHashes is the hash chain of the prompt's blocks (see PrefixHashes).
	PrefixHashes []uint64 `json:"prefix_hashes,omitempty"`
	// PromptBytes is the length of the prompt text the hashes were taken
	// from (all of it, not only the hashed blocks); 0 is unknown. The
	// picker estimates the prompt's tokens from it (BytesPerToken).
	PromptBytes int `json:"prompt_bytes,omitempty"`
	// Done holds pick ids (PickResponse.PickID) of requests that have
	// ended since the sender's last pick: the picker stops counting them
	// as in flight before a scrape can show it. At most MaxDone; a sender
	// only reports ids a picker gave it, so a picker that predates the
	// field never receives it.
	Done []uint64 `json:"done,omitempty"`
	// Body is the request's body where the picker has it (Envoy's
	// ext_proc), for a strategy that tokenizes the prompt
	// (PRECISE_PREFIX_CACHE). Never on the wire: the filter's pick path
	// sends prefix hashes only, and such a pick falls back to them.
	Body []byte `json:"-"`
	// DoneTokens, when present, holds one entry per Done id: the
	// completion tokens that request generated (-1: not known). The
	// picker learns from them how long outputs run against max_tokens.
	// Sent only to a picker whose answers carry APILevel 2 or more.
	DoneTokens []int `json:"done_tokens,omitempty"`
	// MaxTokens is the request's output limit (max_completion_tokens,
	// else max_tokens); 0 is none given. Sent only to a picker whose
	// answers carry APILevel 2 or more.
	MaxTokens int `json:"max_tokens,omitempty"`
	// Explain asks the picker to say why it chose (PickResponse.Explain).
	// Sent only to a picker whose answers carry APILevel 2 or more.
	Explain bool `json:"explain,omitempty"`
}

// MaxDone bounds the ids one pick request reports done.
const MaxDone = 64

// APILevel is the level of this contract a picker reads and says it reads
// in every answer (PickResponse.APILevel). Level 2 adds max_tokens,
// done_tokens and explain to the pick request. A filter sends those fields
// only once an answer said 2: a picker refuses fields it does not know,
// so a filter upgraded before its picker keeps working.
const APILevel = 2

// MaxOutputTokens bounds max_tokens and done_tokens (16M tokens: far past
// any model's context).
const MaxOutputTokens = 1 << 24

// MaxPickID is the largest pick id (63 bits: exact in any JSON reader that
// parses integers as int64).
const MaxPickID = 1<<63 - 1

// BytesPerToken is the picker's estimate of prompt bytes per token: about
// what BPE tokenizers give on English text, and exactly vllmsim's.
const BytesPerToken = 4

// AppendJSON appends the request's JSON encoding to dst without reflection.
func (r *PickRequest) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	if r.Pool != "" {
		dst = append(dst, `"pool":`...)
		dst = jsonenc.AppendString(dst, r.Pool)
		dst = append(dst, ',')
	}
	dst = append(dst, `"model":`...)
	dst = jsonenc.AppendString(dst, r.Model)
	if r.Criticality != "" {
		dst = append(dst, `,"criticality":`...)
		dst = jsonenc.AppendString(dst, string(r.Criticality))
	}
	if r.Objective != "" {
		dst = append(dst, `,"objective":`...)
		dst = jsonenc.AppendString(dst, r.Objective)
	}
	if len(r.PrefixHashes) > 0 {
		dst = append(dst, `,"prefix_hashes":[`...)
		for i, h := range r.PrefixHashes {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendUint(dst, h, 10)
		}
		dst = append(dst, ']')
	}
	if r.PromptBytes > 0 {
		dst = append(dst, `,"prompt_bytes":`...)
		dst = strconv.AppendInt(dst, int64(r.PromptBytes), 10)
	}
	if len(r.Done) > 0 {
		dst = append(dst, `,"done":[`...)
		for i, id := range r.Done {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendUint(dst, id, 10)
		}
		dst = append(dst, ']')
	}
	if len(r.DoneTokens) > 0 {
		dst = append(dst, `,"done_tokens":[`...)
		for i, n := range r.DoneTokens {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, int64(n), 10)
		}
		dst = append(dst, ']')
	}
	if r.MaxTokens > 0 {
		dst = append(dst, `,"max_tokens":`...)
		dst = strconv.AppendInt(dst, int64(r.MaxTokens), 10)
	}
	if r.Explain {
		dst = append(dst, `,"explain":true`...)
	}
	return append(dst, '}')
}

// Limits on the wire; larger values are refused, not truncated.
const (
	MaxNameLen     = 253
	MaxRequestSize = 64 << 10
	// MaxResponseSize bounds a pick answer. A real one (an endpoint, a
	// model, MaxFallbacks fallbacks) is well under 2 KiB; the filter does
	// not even copy a larger one into its VM.
	MaxResponseSize = 16 << 10
	// MaxPromptBytes bounds prompt_bytes (1 GiB: far past any body a
	// gateway buffers).
	MaxPromptBytes = 1 << 30
	// Both messages are flat objects holding one array at most.
	maxDepth = 4
)

// ParsePickRequest decodes and validates a PickRequest.
func ParsePickRequest(b []byte) (PickRequest, error) {
	var r PickRequest
	if len(b) > MaxRequestSize {
		return r, fmt.Errorf("pick request of %d bytes exceeds %d", len(b), MaxRequestSize)
	}
	if err := jsonscan.Check(b, maxDepth); err != nil {
		return r, fmt.Errorf("pick request: %w", err)
	}
	root := gjson.ParseBytes(b)
	if !root.IsObject() {
		return r, errors.New("pick request must be a JSON object")
	}
	var err error
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "pool":
			r.Pool, err = nameField("pool", v)
		case "model":
			r.Model, err = nameField("model", v)
		case "objective":
			// An object name: the same bound as pool and model.
			r.Objective, err = nameField("objective", v)
		case "criticality":
			if v.Type != gjson.String {
				err = fmt.Errorf("criticality must be a string, got %s", v.Raw)
				break
			}
			r.Criticality, err = ParseCriticality(v.Str)
		case "stream":
			// Sent by filters before 2026-12 and never used: accepted and
			// ignored, so an older gateway keeps working with this picker.
		case "prefix_hashes":
			r.PrefixHashes, err = hashesField(v)
		case "done":
			r.Done, err = doneField(v)
		case "prompt_bytes":
			n, perr := strconv.ParseInt(v.Raw, 10, 64)
			if v.Type != gjson.Number || perr != nil || n < 0 || n > MaxPromptBytes {
				err = fmt.Errorf("prompt_bytes is %s, want an integer in 0..%d", v.Raw, MaxPromptBytes)
				break
			}
			r.PromptBytes = int(n)
		case "done_tokens":
			r.DoneTokens, err = doneTokensField(v)
		case "max_tokens":
			n, perr := strconv.ParseInt(v.Raw, 10, 64)
			if v.Type != gjson.Number || perr != nil || n < 0 || n > MaxOutputTokens {
				err = fmt.Errorf("max_tokens is %s, want an integer in 0..%d", v.Raw, MaxOutputTokens)
				break
			}
			r.MaxTokens = int(n)
		case "explain":
			if v.Type != gjson.True && v.Type != gjson.False {
				err = fmt.Errorf("explain must be true or false, got %s", v.Raw)
				break
			}
			r.Explain = v.Type == gjson.True
		default:
			err = fmt.Errorf("unknown field %q", k.Str)
		}
		return err == nil
	})
	if err != nil {
		return r, err
	}
	if r.Model == "" && r.Pool == "" {
		return r, errors.New("model or pool is required")
	}
	if r.DoneTokens != nil && len(r.DoneTokens) != len(r.Done) {
		return r, fmt.Errorf("done_tokens holds %d entries for %d done ids, want one each", len(r.DoneTokens), len(r.Done))
	}
	if r.Criticality == "" {
		r.Criticality = Standard
	}
	return r, nil
}

func nameField(name string, v gjson.Result) (string, error) {
	if v.Type != gjson.String {
		return "", fmt.Errorf("%s must be a string, got %s", name, v.Raw)
	}
	if len(v.Str) > MaxNameLen {
		return "", fmt.Errorf("%s is %d bytes long, the limit is %d", name, len(v.Str), MaxNameLen)
	}
	return v.Str, nil
}

func hashesField(v gjson.Result) ([]uint64, error) {
	if !v.IsArray() {
		return nil, fmt.Errorf("prefix_hashes must be an array, got %s", v.Raw)
	}
	var out []uint64
	var err error
	v.ForEach(func(_, h gjson.Result) bool {
		if len(out) == MaxBlocks {
			err = fmt.Errorf("prefix_hashes holds more than %d hashes", MaxBlocks)
			return false
		}
		n, perr := strconv.ParseUint(h.Raw, 10, 64)
		if h.Type != gjson.Number || perr != nil {
			err = fmt.Errorf("prefix_hashes holds %s, want unsigned 64-bit integers", h.Raw)
			return false
		}
		out = append(out, n)
		return true
	})
	return out, err
}

func doneField(v gjson.Result) ([]uint64, error) {
	if !v.IsArray() {
		return nil, fmt.Errorf("done must be an array, got %s", v.Raw)
	}
	var out []uint64
	var err error
	v.ForEach(func(_, h gjson.Result) bool {
		if len(out) == MaxDone {
			err = fmt.Errorf("done holds more than %d ids", MaxDone)
			return false
		}
		id, ok := pickID(h)
		if !ok {
			err = fmt.Errorf("done holds %s, want pick ids in 1..%d", h.Raw, uint64(MaxPickID))
			return false
		}
		out = append(out, id)
		return true
	})
	return out, err
}

func doneTokensField(v gjson.Result) ([]int, error) {
	if !v.IsArray() {
		return nil, fmt.Errorf("done_tokens must be an array, got %s", v.Raw)
	}
	out := []int{}
	var err error
	v.ForEach(func(_, h gjson.Result) bool {
		if len(out) == MaxDone {
			err = fmt.Errorf("done_tokens holds more than %d entries", MaxDone)
			return false
		}
		n, perr := strconv.ParseInt(h.Raw, 10, 32)
		if h.Type != gjson.Number || perr != nil || n < -1 || n > MaxOutputTokens {
			err = fmt.Errorf("done_tokens holds %s, want integers in -1..%d", h.Raw, MaxOutputTokens)
			return false
		}
		out = append(out, int(n))
		return true
	})
	return out, err
}

// pickID reads an integer in 1..MaxPickID.
func pickID(v gjson.Result) (uint64, bool) {
	n, err := strconv.ParseUint(v.Raw, 10, 63)
	if v.Type != gjson.Number || err != nil || n == 0 {
		return 0, false
	}
	return n, true
}

// PickResponse is a successful pick.
type PickResponse struct {
	// Endpoint is "ip:port" of the chosen pod.
	Endpoint string `json:"endpoint"`
	// TargetModel is the model or adapter that should serve the request; the
	// filter rewrites the body's model when it differs from the request's.
	TargetModel string   `json:"target_model"`
	Strategy    Strategy `json:"strategy"`
	Pool        string   `json:"pool"`
	// Fallbacks are further endpoints, best first, for retries and for the
	// filter's fail-open cache.
	Fallbacks []string `json:"fallbacks,omitempty"`
	// PickID names this pick for the sender's report that its request
	// ended (PickRequest.Done); 0: the picker wants no report.
	PickID uint64 `json:"pick_id,omitempty"`
	// Resolution is the version of the resolution table (see Resolution)
	// of the pool the request named: a sender that holds another version
	// fetches the table, to resolve models itself when no pick answers.
	// "": the picker offers none.
	Resolution string `json:"resolution,omitempty"`
	// APILevel is the contract level the picker reads (APILevel); 0 from
	// pickers that predate it.
	APILevel int `json:"api,omitempty"`
	// Explain says why the endpoint was chosen, when the request asked
	// (PickRequest.Explain): one line, at most MaxExplainLen bytes, fit
	// for a response header or an access-log field.
	Explain string `json:"explain,omitempty"`
}

// MaxExplainLen bounds PickResponse.Explain.
const MaxExplainLen = 2048

// AppendJSON appends the response's JSON encoding to dst without reflection.
func (p *PickResponse) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"endpoint":`...)
	dst = jsonenc.AppendString(dst, p.Endpoint)
	dst = append(dst, `,"target_model":`...)
	dst = jsonenc.AppendString(dst, p.TargetModel)
	dst = append(dst, `,"strategy":`...)
	dst = jsonenc.AppendString(dst, string(p.Strategy))
	dst = append(dst, `,"pool":`...)
	dst = jsonenc.AppendString(dst, p.Pool)
	if len(p.Fallbacks) > 0 {
		dst = append(dst, `,"fallbacks":[`...)
		for i, f := range p.Fallbacks {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonenc.AppendString(dst, f)
		}
		dst = append(dst, ']')
	}
	if p.PickID != 0 {
		dst = append(dst, `,"pick_id":`...)
		dst = strconv.AppendUint(dst, p.PickID, 10)
	}
	if p.Resolution != "" {
		dst = append(dst, `,"resolution":`...)
		dst = jsonenc.AppendString(dst, p.Resolution)
	}
	if p.APILevel != 0 {
		dst = append(dst, `,"api":`...)
		dst = strconv.AppendInt(dst, int64(p.APILevel), 10)
	}
	if p.Explain != "" {
		dst = append(dst, `,"explain":`...)
		dst = jsonenc.AppendString(dst, p.Explain)
	}
	return append(dst, '}')
}

// ParsePickResponse decodes a 200 answer. The endpoint must be a literal
// "ip:port" (never a host name: the filter hands it to Envoy as an address).
func ParsePickResponse(b []byte) (PickResponse, error) {
	var p PickResponse
	if len(b) > MaxResponseSize {
		return p, fmt.Errorf("pick response of %d bytes exceeds %d", len(b), MaxResponseSize)
	}
	if err := jsonscan.Check(b, maxDepth); err != nil {
		return p, fmt.Errorf("pick response: %w", err)
	}
	root := gjson.ParseBytes(b)
	p.Endpoint = root.Get("endpoint").Str
	if err := ValidateEndpoint(p.Endpoint); err != nil {
		return p, err
	}
	p.TargetModel = root.Get("target_model").Str
	p.Strategy = Strategy(root.Get("strategy").Str)
	p.Pool = root.Get("pool").Str
	// A bad id costs only the early end report, never the pick.
	p.PickID, _ = pickID(root.Get("pick_id"))
	// Likewise a bad version costs only the table's refresh.
	if v := root.Get("resolution"); v.Type == gjson.String && ValidVersion(v.Str) {
		p.Resolution = v.Str
	}
	// A bad level or explanation costs only the newer fields.
	if lv := root.Get("api"); lv.Type == gjson.Number && lv.Int() > 0 && lv.Int() < 1<<16 {
		p.APILevel = int(lv.Int())
	}
	if ex := root.Get("explain"); ex.Type == gjson.String && len(ex.Str) <= MaxExplainLen {
		p.Explain = ex.Str
	}
	root.Get("fallbacks").ForEach(func(_, f gjson.Result) bool {
		if len(p.Fallbacks) == MaxFallbacks {
			return false
		}
		if ValidateEndpoint(f.Str) == nil {
			p.Fallbacks = append(p.Fallbacks, f.Str)
		}
		return true
	})
	return p, nil
}

// ValidateEndpoint accepts "a.b.c.d:port" and "[v6]:port" with a port in
// 1..65535, and nothing else.
func ValidateEndpoint(ep string) error {
	colon := -1
	for i := len(ep) - 1; i >= 0; i-- {
		if ep[i] == ':' {
			colon = i
			break
		}
	}
	if colon <= 0 || colon == len(ep)-1 {
		return fmt.Errorf("endpoint %q is not ip:port", ep)
	}
	port, err := strconv.ParseUint(ep[colon+1:], 10, 16)
	if err != nil || port == 0 {
		return fmt.Errorf("endpoint %q has a bad port", ep)
	}
	host := ep[:colon]
	if host[0] == '[' {
		if host[len(host)-1] != ']' || !isIPv6(host[1:len(host)-1]) {
			return fmt.Errorf("endpoint %q has a bad IPv6 address", ep)
		}
		return nil
	}
	if !isIPv4(host) {
		return fmt.Errorf("endpoint %q is not an IPv4 address and port", ep)
	}
	return nil
}

func isIPv4(s string) bool {
	parts, n, digits := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 || n > 255 || (digits > 1 && s[i-digits] == '0') {
				return false
			}
			parts++
			n, digits = 0, 0
			continue
		}
		c := s[i]
		if c < '0' || c > '9' || digits == 3 {
			return false
		}
		n = n*10 + int(c-'0')
		digits++
	}
	return parts == 4
}

func isIPv6(s string) bool {
	if len(s) < 2 || len(s) > 39 {
		return false
	}
	colons := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':':
			colons++
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return colons >= 2 && colons <= 7
}

// ErrorBody builds an OpenAI-style error body, as vLLM >= 0.10.1 answers:
// {"error":{"message":...,"type":...,"param":null,"code":status}}.
func ErrorBody(status int, errType, message string) []byte {
	b := make([]byte, 0, 64+len(message))
	b = append(b, `{"error":{"message":`...)
	b = jsonenc.AppendString(b, message)
	b = append(b, `,"type":`...)
	b = jsonenc.AppendString(b, errType)
	b = append(b, `,"param":null,"code":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	return append(b, `}}`...)
}

// Error types the picker uses in refusals.
const (
	ErrTypeNotFound    = "NotFoundError"       // 404: unknown model or pool
	ErrTypeRateLimited = "RateLimitError"      // 429: shed under saturation
	ErrTypeUnavailable = "ServiceUnavailable"  // 503: no endpoint at all
	ErrTypeBadRequest  = "BadRequestError"     // 400: malformed pick request
	ErrTypeInternal    = "InternalServerError" // 500
)
