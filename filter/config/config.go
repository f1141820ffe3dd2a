// Package config parses the filter's pluginConfig (JSON, as Istio's
// WasmPlugin pluginConfig and Envoy's configuration.value deliver it). It is
// a pure function: no host calls, errors that quote the bad key or value, and
// no silent defaults for values that are present but wrong.
package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/internal/jsonscan"
	"github.com/meshllm/meshllm/pickapi"
)

// Config is the parsed pluginConfig.
type Config struct {
	// LLMPaths are the request paths (query string ignored) treated as LLM
	// API calls when the method is POST and the content type is JSON.
	LLMPaths []string
	// MaxRequestBodyBytes caps the request body the filter buffers and
	// parses; larger bodies pass through unparsed and are counted.
	MaxRequestBodyBytes int
	// MaxResponseBodyBytes caps the copy of a JSON response kept to read
	// its usage (also the cap on a decompressed gzip body).
	MaxResponseBodyBytes int
	// MaxSSEEventBytes caps one server-sent event; larger events pass
	// through unobserved.
	MaxSSEEventBytes int
	// InjectStreamUsage adds stream_options.include_usage to streaming
	// requests that lack it, and removes the extra usage-only chunk from the
	// response so the client sees what it asked for.
	InjectStreamUsage bool
	// ModelLabelLimit bounds the distinct (model, target_model) label pairs.
	ModelLabelLimit int
	// ModelAllowlist, if set, lists the only label values kept; others
	// become "other".
	ModelAllowlist []string
	// DecodeGzip lets the filter read usage from gzip-encoded JSON bodies.
	DecodeGzip bool
	// MaxJSONDepth bounds the nesting of every JSON body the filter reads
	// (requests, responses, stream events, pick answers). A deeper body is
	// passed on untouched and unread, and counted.
	MaxJSONDepth int

	// RouteOn says when the filter asks the picker: RouteBody (after the
	// body, the full pick; needs Envoy >= 1.35 with
	// allow_on_headers_stop_iteration), RouteHeaders (at header time, a
	// pool-level pick that works on every Envoy) or RouteNone.
	RouteOn string
	// PickerCluster, PickerAuthority and PickerPath address picker-svc
	// through Envoy (DispatchHttpCall needs a configured cluster).
	PickerCluster   string
	PickerAuthority string
	PickerPath      string
	// PickerTimeoutMillis bounds a pick; the request then fails open or
	// closed as FailureMode says.
	PickerTimeoutMillis int
	// Pool names the InferencePool; empty lets the picker resolve it.
	Pool string
	// FailClosed answers 503 when the picker fails; otherwise the request
	// continues without a chosen endpoint (the cluster balances it).
	FailClosed bool
	// WatchdogMillis resumes a request whose body did not arrive this long
	// after its headers were paused (body mode without the Envoy flag).
	WatchdogMillis int
	// FallbackCache keeps the last ranked endpoints of the pool in shared
	// data and uses them while the picker is failing.
	FallbackCache bool
	// ClearRouteCache calls Envoy's clear_route_cache foreign function
	// after setting the destination header.
	ClearRouteCache bool
	// ResolutionMaxAgeMillis bounds the age of the resolution table the
	// filter keeps (the picker's model-to-targets mapping, learned from
	// picks) to resolve models when no pick answers: a table no picker has
	// named for longer is not used. 0 keeps none.
	ResolutionMaxAgeMillis int
	// ResolutionPath is where picker-svc serves resolution tables.
	ResolutionPath string
	// EndpointCIDRs, if set, are the only networks an endpoint the picker
	// names may be in; any other answer counts as a failed pick. A guard for
	// clusters that connect wherever the header says (ORIGINAL_DST).
	EndpointCIDRs []netip.Prefix
	// PickExplain says what a request carrying pickapi.HeaderExplain
	// gets: ExplainOff nothing, ExplainLog the pick's explanation in the
	// access log (wasm.llm_pick_explain), ExplainHeader that and the
	// response header pickapi.HeaderPickExplanation (which shows the
	// client the pool's endpoints and their load).
	PickExplain string
}

// Values of pick_explain.
const (
	ExplainOff    = "off"
	ExplainLog    = "log"
	ExplainHeader = "header"
)

// Values of route_on.
const (
	RouteBody    = "body"
	RouteHeaders = "headers"
	RouteNone    = "none"
)

// Default returns the configuration used for keys the pluginConfig omits.
func Default() Config {
	return Config{
		LLMPaths:             []string{"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/responses"},
		MaxRequestBodyBytes:  4 << 20,
		MaxResponseBodyBytes: 4 << 20,
		MaxSSEEventBytes:     1 << 20,
		InjectStreamUsage:    true,
		ModelLabelLimit:      100,
		DecodeGzip:           true,
		MaxJSONDepth:         jsonscan.DefaultMaxDepth,
		RouteOn:              RouteNone,
		PickerPath:           pickapi.Path,
		PickerTimeoutMillis:  50,
		WatchdogMillis:       1000,
		FallbackCache:        true,
		ClearRouteCache:      true,
		// Long enough to ride out a picker upgrade or outage; short enough
		// that a canary weight changed meanwhile is not applied for long.
		ResolutionMaxAgeMillis: 300_000,
		ResolutionPath:         pickapi.ResolutionPath,
		PickExplain:            ExplainLog,
	}
}

// Limits on values, so that a typo cannot ask for absurd buffers.
const (
	maxBodyLimit  = 64 << 20
	maxLabelLimit = 10000
	maxPaths      = 64
	// Python's json, which vLLM reads bodies with, gives up near 1000
	// levels (the interpreter's recursion limit): deeper is never useful.
	maxDepthLimit = 1000
	maxCIDRs      = 256
	// A day: a table older than that describes objects long gone.
	maxResolutionAge = 86_400_000
)

// Parse reads a pluginConfig. Empty input means all defaults.
func Parse(raw []byte) (Config, error) {
	c := Default()
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return c, nil
	}
	if err := jsonscan.Check(raw, 32); err != nil {
		return c, fmt.Errorf("pluginConfig is not valid JSON: %q (%v)", clip(raw), err)
	}
	root := gjson.ParseBytes(raw)
	if !root.IsObject() {
		return c, fmt.Errorf("pluginConfig must be a JSON object, got %s", clip([]byte(root.Raw)))
	}
	var err error
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "llm_paths":
			c.LLMPaths, err = paths(k.Str, v)
		case "max_request_body_bytes":
			c.MaxRequestBodyBytes, err = intIn(k.Str, v, 1, maxBodyLimit)
		case "max_response_body_bytes":
			c.MaxResponseBodyBytes, err = intIn(k.Str, v, 1, maxBodyLimit)
		case "max_sse_event_bytes":
			c.MaxSSEEventBytes, err = intIn(k.Str, v, 256, maxBodyLimit)
		case "inject_stream_usage":
			c.InjectStreamUsage, err = boolean(k.Str, v)
		case "model_label_limit":
			c.ModelLabelLimit, err = intIn(k.Str, v, 1, maxLabelLimit)
		case "model_allowlist":
			c.ModelAllowlist, err = strings_(k.Str, v, maxLabelLimit)
		case "decode_gzip":
			c.DecodeGzip, err = boolean(k.Str, v)
		case "route_on":
			c.RouteOn, err = oneOf(k.Str, v, RouteBody, RouteHeaders, RouteNone)
		case "picker_cluster":
			c.PickerCluster, err = nonEmpty(k.Str, v)
		case "picker_authority":
			c.PickerAuthority, err = nonEmpty(k.Str, v)
		case "picker_path":
			c.PickerPath, err = nonEmpty(k.Str, v)
			if err == nil && !strings.HasPrefix(c.PickerPath, "/") {
				err = fmt.Errorf("%s: %q is not a path (want /...)", k.Str, c.PickerPath)
			}
		case "picker_timeout_ms":
			c.PickerTimeoutMillis, err = intIn(k.Str, v, 1, 60000)
		case "pool":
			c.Pool, err = nonEmpty(k.Str, v)
		case "failure_mode":
			var mode string
			mode, err = oneOf(k.Str, v, "open", "closed")
			c.FailClosed = mode == "closed"
		case "watchdog_ms":
			c.WatchdogMillis, err = intIn(k.Str, v, 10, 600000)
		case "fallback_cache":
			c.FallbackCache, err = boolean(k.Str, v)
		case "clear_route_cache":
			c.ClearRouteCache, err = boolean(k.Str, v)
		case "max_json_depth":
			c.MaxJSONDepth, err = intIn(k.Str, v, 1, maxDepthLimit)
		case "resolution_max_age_ms":
			c.ResolutionMaxAgeMillis, err = intIn(k.Str, v, 0, maxResolutionAge)
		case "resolution_path":
			c.ResolutionPath, err = nonEmpty(k.Str, v)
			if err == nil && (!strings.HasPrefix(c.ResolutionPath, "/") || strings.ContainsAny(c.ResolutionPath, "?# ")) {
				err = fmt.Errorf("%s: %q is not a path (want /..., no query)", k.Str, c.ResolutionPath)
			}
		case "endpoint_cidrs":
			c.EndpointCIDRs, err = prefixes(k.Str, v)
		case "pick_explain":
			c.PickExplain, err = oneOf(k.Str, v, ExplainOff, ExplainLog, ExplainHeader)
		default:
			err = fmt.Errorf("unknown key %q in pluginConfig", k.Str)
		}
		return err == nil
	})
	if err != nil {
		return c, err
	}
	if c.RouteOn != RouteNone {
		if c.PickerCluster == "" {
			return c, fmt.Errorf("route_on %q needs picker_cluster (the Envoy cluster of picker-svc)", c.RouteOn)
		}
		if c.PickerAuthority == "" {
			return c, fmt.Errorf("route_on %q needs picker_authority (the :authority of pick calls)", c.RouteOn)
		}
	}
	return c, nil
}

func nonEmpty(key string, v gjson.Result) (string, error) {
	if v.Type != gjson.String || v.Str == "" {
		return "", fmt.Errorf("%s: want a non-empty string, got %s", key, clip([]byte(v.Raw)))
	}
	return v.Str, nil
}

func oneOf(key string, v gjson.Result, allowed ...string) (string, error) {
	if v.Type == gjson.String {
		for _, a := range allowed {
			if v.Str == a {
				return a, nil
			}
		}
	}
	return "", fmt.Errorf("%s: want one of %s, got %s", key, strings.Join(allowed, ", "), clip([]byte(v.Raw)))
}

func clip(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

func intIn(key string, v gjson.Result, lo, hi int) (int, error) {
	if v.Type != gjson.Number || v.Num != float64(int64(v.Num)) {
		return 0, fmt.Errorf("%s: want an integer, got %s", key, clip([]byte(v.Raw)))
	}
	n := int(v.Num)
	if n < lo || n > hi {
		return 0, fmt.Errorf("%s: %s is out of range [%d, %d]", key, v.Raw, lo, hi)
	}
	return n, nil
}

func boolean(key string, v gjson.Result) (bool, error) {
	if !v.IsBool() {
		return false, fmt.Errorf("%s: want true or false, got %s", key, clip([]byte(v.Raw)))
	}
	return v.Bool(), nil
}

func strings_(key string, v gjson.Result, max int) ([]string, error) {
	if !v.IsArray() {
		return nil, fmt.Errorf("%s: want an array of strings, got %s", key, clip([]byte(v.Raw)))
	}
	var out []string
	var err error
	v.ForEach(func(_, s gjson.Result) bool {
		switch {
		case s.Type != gjson.String:
			err = fmt.Errorf("%s: want strings, got %s", key, clip([]byte(s.Raw)))
		case s.Str == "":
			err = fmt.Errorf("%s: empty string", key)
		case len(out) == max:
			err = fmt.Errorf("%s: more than %d entries", key, max)
		default:
			out = append(out, s.Str)
		}
		return err == nil
	})
	return out, err
}

func paths(key string, v gjson.Result) ([]string, error) {
	ps, err := strings_(key, v, maxPaths)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%s: empty list (the filter would do nothing)", key)
	}
	for _, p := range ps {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# ") {
			return nil, fmt.Errorf("%s: %q is not a path (want /..., no query)", key, p)
		}
	}
	return ps, nil
}

func prefixes(key string, v gjson.Result) ([]netip.Prefix, error) {
	ss, err := strings_(key, v, maxCIDRs)
	if err != nil {
		return nil, err
	}
	if len(ss) == 0 {
		return nil, fmt.Errorf("%s: empty list (no endpoint would be allowed; omit the key to allow any)", key)
	}
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR (want e.g. 10.0.0.0/8 or fd00::/8)", key, s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
