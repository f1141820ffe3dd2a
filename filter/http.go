package main

import (
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/filter/llmapi"
	"github.com/meshllm/meshllm/filter/route"
	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
)

// httpContext follows one request. Everything it decides is delegated to the
// pure packages; this file only moves bytes between them and the host.
type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
	id     uint32

	llm      bool // an LLM API call being observed
	finished bool // metrics and log fields written
	start    time.Time
	firstAt  time.Time

	reqParsed bool
	oversize  bool
	model     string // what the client asked for
	target    string // what the picker chose to serve it, if it did
	injected  bool   // include_usage was added by the filter

	// Routing.
	body              []byte // the request body, held while its pick is in flight
	pausedTick        int    // plugin tick count when the headers were paused for the body
	pickStart         time.Time
	pickPending       bool
	headersSent       bool // the request headers went upstream: no more header or size changes
	resumedByWatchdog bool

	status   int
	observer *llmapi.ResponseObserver
}

// OnHttpRequestHeaders implements types.HttpContext.
func (h *httpContext) OnHttpRequestHeaders(_ int, endOfStream bool) (action types.Action) {
	defer h.recoverTo(&action)
	// Always, on every request: a client must never choose the upstream
	// address (Envoy does not sanitise this header).
	_ = proxywasm.RemoveHttpRequestHeader(pickapi.HeaderDestinationEndpoint)
	if endOfStream {
		return types.ActionContinue // no body: nothing to read
	}
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	ctype, _ := proxywasm.GetHttpRequestHeader("content-type")
	if !llmapi.IsLLMCall(method, path, ctype, h.plugin.cfg.LLMPaths) {
		return types.ActionContinue
	}
	h.llm = true
	h.start = time.Now()
	cfg := &h.plugin.cfg
	if cfg.RouteOn == config.RouteBody {
		// Hold the headers until the body is read and the pick is made.
		// Envoy >= 1.35 delivers the body meanwhile only with
		// allow_on_headers_stop_iteration; the watchdog covers its absence.
		h.plugin.watch(h.id, h)
		return types.ActionPause
	}
	h.headersSent = true
	if cfg.InjectStreamUsage {
		// Headers leave before the body is read, and the body may grow by
		// the injected stream_options: let Envoy frame it (chunked) instead
		// of announcing a length that would then be wrong.
		_ = proxywasm.RemoveHttpRequestHeader("content-length")
	}
	if cfg.RouteOn == config.RouteHeaders && h.startPick("", nil) {
		// A pool-level pick by load: the model is in the body, not read yet.
		// Pausing headers for a callout works on every Envoy.
		h.headersSent = false
		return types.ActionPause
	}
	return types.ActionContinue
}

// OnHttpRequestBody implements types.HttpContext.
func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) (action types.Action) {
	defer h.recoverTo(&action)
	if !h.llm || h.reqParsed || h.oversize {
		return types.ActionContinue
	}
	if h.plugin.waiting != nil {
		delete(h.plugin.waiting, h.id) // the body came: no watchdog needed
	}
	routing := h.plugin.cfg.RouteOn == config.RouteBody && !h.resumedByWatchdog
	if bodySize > h.plugin.cfg.MaxRequestBodyBytes {
		// Stop buffering: what was held flows on, unparsed and unrouted.
		h.oversize = true
		h.plugin.metrics.count(stats.OversizeBodies, stats.TagPhase, "request")
		h.setState(stats.StateRequestBody, "oversize")
		if routing {
			h.outcome(route.OutcomeSkipped)
		}
		h.headersSent = true
		return types.ActionContinue
	}
	if !endOfStream {
		return types.ActionPause // buffer until the whole body is here
	}
	req, ok := h.readRequestBody(bodySize)
	if routing {
		if !ok {
			h.outcome(route.OutcomeSkipped)
		} else if h.startPick(req.Model, &req) {
			return types.ActionPause // until the picker answers
		} else if h.plugin.cfg.FailClosed {
			return types.ActionPause // answered with a local reply
		}
	}
	h.body = nil
	h.headersSent = true
	return types.ActionContinue
}

// OnHttpRequestTrailers implements types.HttpContext: a body followed by
// trailers never sees endOfStream in the body callback.
func (h *httpContext) OnHttpRequestTrailers(int) (action types.Action) {
	defer h.recoverTo(&action)
	if h.llm && !h.reqParsed && !h.oversize {
		h.readRequestBody(h.plugin.cfg.MaxRequestBodyBytes)
		h.body = nil
	}
	return types.ActionContinue
}

// readRequestBody parses the buffered body, records what it says and adds
// include_usage if asked to. It reports whether the body was parsed.
func (h *httpContext) readRequestBody(size int) (llmapi.Request, bool) {
	h.reqParsed = true
	body, err := proxywasm.GetHttpRequestBody(0, size)
	if err != nil || len(body) == 0 {
		h.plugin.metrics.count(stats.ParseErrors, stats.TagPhase, "request")
		return llmapi.Request{}, false
	}
	req, err := llmapi.ParseRequest(body)
	h.model = req.Model
	if req.Model != "" {
		h.setState(stats.StateModel, req.Model)
	}
	if err != nil {
		h.plugin.metrics.count(stats.ParseErrors, stats.TagPhase, "request")
		h.setState(stats.StateRequestBody, "unparsable")
		return req, false
	}
	h.body = body
	h.setState(stats.StateStream, strconv.FormatBool(req.Stream))
	if req.MaxTokens >= 0 {
		h.setState(stats.StateMaxTokens, strconv.FormatInt(req.MaxTokens, 10))
	}
	// After the watchdog fired the headers left with their Content-Length:
	// the body must keep its size.
	if h.plugin.cfg.InjectStreamUsage && req.NeedsUsageInjection() && !h.resumedByWatchdog {
		if nb, ok := req.InjectIncludeUsage(body); ok {
			h.injected = h.replaceRequestBody(nb)
		}
	}
	return req, true
}

// OnHttpResponseHeaders implements types.HttpContext.
func (h *httpContext) OnHttpResponseHeaders(_ int, endOfStream bool) (action types.Action) {
	defer h.recoverTo(&action)
	if !h.llm {
		return types.ActionContinue
	}
	st, _ := proxywasm.GetHttpResponseHeader(":status")
	h.status, _ = strconv.Atoi(st)
	ctype, _ := proxywasm.GetHttpResponseHeader("content-type")
	enc, _ := proxywasm.GetHttpResponseHeader("content-encoding")
	cfg := &h.plugin.cfg
	h.observer = llmapi.NewResponseObserver(ctype, enc, h.injected, llmapi.ObserverLimits{
		MaxBody: cfg.MaxResponseBodyBytes, MaxEvent: cfg.MaxSSEEventBytes, DecodeGzip: cfg.DecodeGzip,
	})
	if h.observer.StripActive() {
		_ = proxywasm.RemoveHttpResponseHeader("content-length")
	}
	if endOfStream {
		h.finish()
	}
	return types.ActionContinue
}

// OnHttpResponseBody implements types.HttpContext. It never pauses: every
// chunk goes on at once (when stripping, an unfinished SSE event is held
// until its end arrives).
func (h *httpContext) OnHttpResponseBody(bodySize int, endOfStream bool) (action types.Action) {
	defer h.recoverTo(&action)
	if !h.llm || h.finished || h.observer == nil {
		return types.ActionContinue
	}
	var chunk []byte
	if bodySize > 0 {
		if h.firstAt.IsZero() {
			h.firstAt = time.Now()
		}
		chunk, _ = proxywasm.GetHttpResponseBody(0, bodySize)
	}
	if out, replace := h.observer.Chunk(chunk, endOfStream); replace {
		_ = proxywasm.ReplaceHttpResponseBody(out)
	}
	if endOfStream {
		h.finish()
	}
	return types.ActionContinue
}

// OnHttpStreamDone implements types.HttpContext. A request that ends without
// a complete response (reset, timeout) is still counted.
func (h *httpContext) OnHttpStreamDone() {
	defer h.recoverTo(nil)
	if h.plugin.waiting != nil {
		delete(h.plugin.waiting, h.id)
	}
	if h.llm && !h.finished {
		h.finish()
	}
}

// finish writes the request's metrics and access-log fields, once.
func (h *httpContext) finish() {
	h.finished = true
	m := h.plugin.metrics
	var oc llmapi.Outcome
	if h.observer != nil {
		oc = h.observer.Finish()
		h.observer = nil
	} else {
		oc.Missing = llmapi.MissingNoBody
	}
	target := h.target // the picker's choice
	if target == "" {
		target = oc.Model // else what the response says served it
	}
	if target == "" {
		target = h.model
	}
	series := m.forModel(h.model, target)
	class := stats.ResponseClass(h.status)
	series.request(class)
	if oc.Usage.HasPrompt {
		series.prompt.Increment(uint64(oc.Usage.PromptTokens))
		h.setState(stats.StatePromptTokens, strconv.FormatInt(oc.Usage.PromptTokens, 10))
	}
	if oc.Usage.HasCompletion {
		series.completion.Increment(uint64(oc.Usage.CompletionTokens))
		h.setState(stats.StateCompletionTokens, strconv.FormatInt(oc.Usage.CompletionTokens, 10))
	}
	now := time.Now()
	if !h.firstAt.IsZero() {
		ttfb := h.firstAt.Sub(h.start).Milliseconds()
		series.ttfb.Record(uint64(ttfb))
		h.setState(stats.StateTTFBMillis, strconv.FormatInt(ttfb, 10))
	}
	dur := now.Sub(h.start).Milliseconds()
	series.duration.Record(uint64(dur))
	h.setState(stats.StateDurationMillis, strconv.FormatInt(dur, 10))
	if target != "" && h.target == "" {
		h.setState(stats.StateTargetModel, target)
	}
	if oc.IsError {
		h.setState(stats.StateErrorType, oc.ErrorType)
	}
	switch {
	case oc.Source != "":
		h.setState(stats.StateUsageSource, oc.Source)
	case class == "2xx":
		// Only a successful response is expected to report usage.
		m.count(stats.UsageMissing, stats.TagReason, oc.Missing)
		h.setState(stats.StateUsageSource, "missing:"+oc.Missing)
	default:
		h.setState(stats.StateUsageSource, "none")
	}
	if oc.Oversized > 0 {
		m.count(stats.OversizeBodies, stats.TagPhase, "response_event")
	}
	if oc.BadEvents > 0 {
		m.count(stats.ParseErrors, stats.TagPhase, "response")
	}
}

// setState writes filter state wasm.<key>, printed in access logs with
// %FILTER_STATE(wasm.<key>:PLAIN)%.
func (h *httpContext) setState(key, value string) {
	if value == "" {
		return
	}
	_ = proxywasm.SetProperty([]string{key}, []byte(value))
}

// recoverTo keeps a bug from trapping the VM (which would take down every
// request on this worker): the request continues unobserved, and it is
// logged and counted.
func (h *httpContext) recoverTo(action *types.Action) {
	r := recover()
	if r == nil {
		return
	}
	h.llm = false
	if action != nil {
		*action = types.ActionContinue
	}
	proxywasm.LogErrorf("meshllm: recovered from a filter error, request continues unobserved: %v", r)
	if h.plugin.metrics != nil {
		h.plugin.metrics.count(stats.FilterErrors, stats.TagPhase, "callback")
	}
}
