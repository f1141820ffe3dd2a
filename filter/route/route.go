// Package route decides what the filter does with a picker's answer: plain Go
// over the answer's status and bytes, so every case is tested natively.
package route

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/internal/jsonscan"
	"github.com/meshllm/meshllm/pickapi"
)

// Outcomes of routing one request: the values of the access-log field
// llm_route and of the picks metric's outcome tag (a bounded set).
const (
	OutcomePicked     = "picked"     // the picker chose an endpoint
	OutcomeRefused    = "refused"    // the picker refused (404, 429, 503): local reply
	OutcomeFailOpen   = "failopen"   // picker failed: the cluster's own balancing serves it
	OutcomeFallback   = "fallback"   // picker failed: a cached ranked endpoint serves it
	OutcomeFailClosed = "failclosed" // picker failed and failure_mode is closed: 503
	OutcomeWatchdog   = "watchdog"   // the body never came (Envoy flag missing): resumed unrouted
	OutcomeSkipped    = "skipped"    // not routed: body unreadable or oversize
)

// Reasons a pick failed: the reason tag of the picker-errors metric.
const (
	ReasonTimeout    = "timeout"              // no answer within picker_timeout_ms (or connection failure)
	ReasonStatus     = "status"               // an unexpected HTTP status
	ReasonGarbage    = "garbage"              // a 200 whose body is not a valid pick
	ReasonDispatch   = "dispatch"             // Envoy refused the call (unknown cluster, bad headers)
	ReasonOversize   = "oversize"             // an answer larger than pickapi.MaxResponseSize: not read
	ReasonNotAllowed = "endpoint_not_allowed" // the endpoint is outside endpoint_cidrs
)

// Kind of a Decision.
type Kind int

// Decision kinds.
const (
	Pick Kind = iota
	Refuse
	Fail
)

// Decision is what to do with one picker answer.
type Decision struct {
	Kind Kind
	Pick pickapi.PickResponse // Kind == Pick
	// Refusal to send to the client (Kind == Refuse).
	Status int
	Body   []byte
	// Reason of a failure (Kind == Fail).
	Reason string
}

// maxRefusalBody bounds a refusal body passed through to the client.
const maxRefusalBody = 8 << 10

// Answer is a picker's answer as the host reports it. Headers == 0 is how
// Envoy reports a call that failed or timed out. Body is nil when the host
// did not read it: ReadBody says whether it is worth reading.
type Answer struct {
	Headers  int
	Status   int
	BodySize int
	Body     []byte
}

// ReadBody reports whether an answer body of size bytes should be copied
// into the VM at all: nothing larger than a pick or a refusal can be.
func ReadBody(size int) bool {
	return size > 0 && size <= max(pickapi.MaxResponseSize, maxRefusalBody)
}

// Decide classifies a picker answer. allow, if not empty, lists the only
// networks a chosen endpoint may be in; fallbacks outside it are dropped.
func Decide(a Answer, allow []netip.Prefix) Decision {
	if a.Headers == 0 {
		return Decision{Kind: Fail, Reason: ReasonTimeout}
	}
	readable := a.Body != nil && len(a.Body) == a.BodySize
	switch a.Status {
	case 200:
		if !readable || a.BodySize > pickapi.MaxResponseSize {
			return Decision{Kind: Fail, Reason: ReasonOversize}
		}
		p, err := pickapi.ParsePickResponse(a.Body)
		if err != nil {
			return Decision{Kind: Fail, Reason: ReasonGarbage}
		}
		if len(allow) > 0 {
			if !Allowed(p.Endpoint, allow) {
				return Decision{Kind: Fail, Reason: ReasonNotAllowed}
			}
			kept := p.Fallbacks[:0]
			for _, f := range p.Fallbacks {
				if Allowed(f, allow) {
					kept = append(kept, f)
				}
			}
			p.Fallbacks = kept
		}
		return Decision{Kind: Pick, Pick: p}
	case 404, 429, 503:
		// Deliberate refusals: pass the picker's OpenAI-style error on, or
		// say the same in our own words if its body is not one.
		if readable && a.BodySize <= maxRefusalBody && jsonscan.Check(a.Body, 8) == nil &&
			gjson.GetBytes(a.Body, "error").IsObject() {
			return Decision{Kind: Refuse, Status: a.Status, Body: append([]byte(nil), a.Body...)}
		}
		return Decision{Kind: Refuse, Status: a.Status, Body: pickapi.ErrorBody(a.Status, refusalType(a.Status), refusalMessage(a.Status))}
	}
	return Decision{Kind: Fail, Reason: ReasonStatus}
}

// Allowed reports whether endpoint ("ip:port") is inside one of allow.
func Allowed(endpoint string, allow []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(endpoint)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap() // ::ffff:10.0.0.1 is 10.0.0.1
	for _, p := range allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func refusalType(status int) string {
	switch status {
	case 404:
		return pickapi.ErrTypeNotFound
	case 429:
		return pickapi.ErrTypeRateLimited
	}
	return pickapi.ErrTypeUnavailable
}

func refusalMessage(status int) string {
	switch status {
	case 404:
		return "the model is not served by this gateway"
	case 429:
		return "the model's pool is saturated; retry later"
	}
	return "no endpoint is available for the model"
}

// FailClosedBody is the 503 answer when the picker fails and failure_mode
// is closed.
func FailClosedBody() []byte {
	return pickapi.ErrorBody(503, pickapi.ErrTypeUnavailable, "the endpoint picker is unavailable")
}

// Fallback cache: the last ranked endpoints of a pool, kept in Envoy shared
// data (shared by every worker's VM) as "unix_millis,ep1,ep2,...".

// ObjectivesKey is the shared-data key that says the picker reads the pick
// request's "objective" (it answered with a pick_id): set once by any VM.
const ObjectivesKey = "meshllm/picker_reads_objectives"

// APILevelKey is the shared-data key holding the contract level the
// picker last said it reads (pickapi.PickResponse.APILevel), one byte:
// the filter sends the newer pick-request fields only from level 2.
const APILevelKey = "meshllm/picker_api_level"

// CacheKey is the shared-data key of a pool's cache.
func CacheKey(pool string) string { return "meshllm/ranked/" + pool }

// EncodeCache encodes ranked endpoints stamped with nowMillis.
func EncodeCache(nowMillis int64, endpoints []string) []byte {
	b := strconv.AppendInt(nil, nowMillis, 10)
	for _, e := range endpoints {
		b = append(b, ',')
		b = append(b, e...)
	}
	return b
}

// DecodeCache decodes a cache entry, dropping any endpoint that is not a
// literal ip:port (shared data is writable by any plugin in the VM).
func DecodeCache(b []byte) (nowMillis int64, endpoints []string, ok bool) {
	parts := strings.Split(string(b), ",")
	ts, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return 0, nil, false
	}
	for _, p := range parts[1:] {
		if pickapi.ValidateEndpoint(p) == nil {
			endpoints = append(endpoints, p)
		}
	}
	return ts, endpoints, len(endpoints) > 0
}

// FallbackTTLMillis is how long cached endpoints stay usable: long enough to
// ride out a picker restart, short enough not to route to pods long gone.
const FallbackTTLMillis = 30_000

// HeaderSafe reports whether s can go into a response header as it is:
// printable ASCII only (an answer is the picker's, but a header is the
// client's to read, and a control byte would break it).
func HeaderSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}
