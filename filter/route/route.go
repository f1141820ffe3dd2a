// Package route decides what the filter does with a picker's answer: plain Go
// over the answer's status and bytes, so every case is tested natively.
package route

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/picker-svc/pickapi"
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
	ReasonTimeout  = "timeout"  // no answer within picker_timeout_ms (or connection failure)
	ReasonStatus   = "status"   // an unexpected HTTP status
	ReasonGarbage  = "garbage"  // a 200 whose body is not a valid pick
	ReasonDispatch = "dispatch" // Envoy refused the call (unknown cluster, bad headers)
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

// Decide classifies a picker answer. numHeaders == 0 is how Envoy reports a
// call that failed or timed out.
func Decide(numHeaders int, status int, body []byte) Decision {
	if numHeaders == 0 {
		return Decision{Kind: Fail, Reason: ReasonTimeout}
	}
	switch status {
	case 200:
		p, err := pickapi.ParsePickResponse(body)
		if err != nil {
			return Decision{Kind: Fail, Reason: ReasonGarbage}
		}
		return Decision{Kind: Pick, Pick: p}
	case 404, 429, 503:
		// Deliberate refusals: pass the picker's OpenAI-style error on, or
		// say the same in our own words if its body is not one.
		if len(body) <= maxRefusalBody && gjson.ValidBytes(body) && gjson.GetBytes(body, "error").IsObject() {
			return Decision{Kind: Refuse, Status: status, Body: append([]byte(nil), body...)}
		}
		return Decision{Kind: Refuse, Status: status, Body: pickapi.ErrorBody(status, refusalType(status), refusalMessage(status))}
	}
	return Decision{Kind: Fail, Reason: ReasonStatus}
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
