package stats

// Filter-state keys the filter writes for access logs. Envoy stores each as
// wasm.<key>; an access log prints it with %FILTER_STATE(wasm.<key>:PLAIN)%.
const (
	StateModel            = "llm_model"             // model the client asked for
	StateTargetModel      = "llm_target_model"      // model or adapter that served it
	StateStream           = "llm_stream"            // "true" / "false"
	StateMaxTokens        = "llm_max_tokens"        // requested output limit, if any
	StatePromptTokens     = "llm_prompt_tokens"     // absent when not reported
	StateCompletionTokens = "llm_completion_tokens" // absent when not reported
	StateUsageSource      = "llm_usage_source"      // json, sse, none, missing:<reason>
	StateTTFBMillis       = "llm_ttfb_ms"           // request start to first response body byte
	StateDurationMillis   = "llm_duration_ms"       // request start to end of response
	StateErrorType        = "llm_error_type"        // error "type" of an error response
	StateRequestBody      = "llm_request_body"      // oversize / unparsable, when so
	StateEndpoint         = "llm_endpoint"          // ip:port the request was routed to
	StateRoute            = "llm_route"             // routing outcome (filter/route Outcome*)
	StateStrategy         = "llm_strategy"          // the pool's strategy, as the picker says
	StatePickMillis       = "llm_pick_ms"           // time the pick took
	StatePickExplain      = "llm_pick_explain"      // why the picker chose, when the request asked (pickapi.HeaderExplain)
)

// StateKeys lists every filter-state key, in access-log order.
var StateKeys = []string{
	StateModel, StateTargetModel, StateStream, StateMaxTokens, StatePromptTokens, StateCompletionTokens,
	StateUsageSource, StateTTFBMillis, StateDurationMillis, StateErrorType, StateRequestBody,
	StateEndpoint, StateRoute, StateStrategy, StatePickMillis, StatePickExplain,
}
