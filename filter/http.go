package main

import (
	"errors"
	"runtime"
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/filter/route"
	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/internal/llmapi"
	"github.com/meshllm/meshllm/internal/metricnames"
	"github.com/meshllm/meshllm/pickapi"
)

// phase is where a request stands. It only moves forward, and every
// callback starts by asking it what is allowed.
type phase uint8

const (
	// phaseIgnored: not an LLM call, or given up after a recovered error.
	// Bytes pass; nothing is read.
	phaseIgnored phase = iota
	// phaseHeld: route_on body; the headers are held until the body is
	// read and picked for.
	phaseHeld
	// phasePicking: a pick is in flight. Headers and body stay held until
	// it answers, whatever the body callbacks see meanwhile.
	phasePicking
	// phaseSent: the request headers went (or may go) upstream. The body
	// is still read for observation.
	phaseSent
	// phaseAnswered: the filter answered the client itself (a refusal or
	// fail closed); the response callbacks see that reply.
	phaseAnswered
	// phaseFinished: metrics and log fields are written. Nothing more.
	phaseFinished
)

var phaseNames = [...]string{"ignored", "held", "picking", "sent", "answered", "finished"}

// String names the phase, for logs and test failures.
func (p phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase(" + strconv.Itoa(int(p)) + ")"
}

// bodyState says whether the request body was read.
type bodyState uint8

const (
	bodyUnread  bodyState = iota
	bodyRead              // parsed (or found unreadable): never again
	bodySkipped           // past a cap: passed on unread
)

// httpContext follows one request. Everything it decides is delegated to the
// pure packages; this file only moves bytes between them and the host.
type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
	id     uint32

	phase   phase
	body    bodyState
	start   time.Time
	firstAt time.Time

	model  string // what the client asked for
	target string // what the picker chose to serve it, if it did
	// req and reqBody are the parsed request and the bytes it points into,
	// kept while a pick may still rewrite the model.
	req     llmapi.Request
	reqBody []byte
	// lengthFree: Content-Length was removed before the headers left, so
	// the body may change size after they have.
	lengthFree bool
	injected   bool // include_usage was added by the filter

	pausedTick int // plugin tick count when the headers were held for the body
	pickStart  time.Time
	pickID     uint64 // the picker's id for this request's pick, reported at its end
	// resolveAtBody: the request was routed without a pick resolving its
	// model; the body, when read, takes its target from the kept table.
	resolveAtBody bool
	objective     string // the InferenceObjective the request names (pickapi.ObjectiveHeaders)
	// explain: the request asked for its pick's explanation
	// (pickapi.HeaderExplain); explanation is what the picker said, kept
	// for the response header when the configuration allows it.
	explain     bool
	explanation string
	// completion is the completion tokens the response reported (-1: not
	// known), for the end report.
	completion int64
	// copied counts body bytes this request copied into the VM.
	copied int

	status   int
	observer *llmapi.ResponseObserver
}

// observing reports whether the request is an LLM call still being read.
func (h *httpContext) observing() bool {
	return h.phase != phaseIgnored && h.phase != phaseFinished
}

// headersHeld reports whether the request headers have not left yet, so
// they (Content-Length, the destination) may still change.
func (h *httpContext) headersHeld() bool {
	return h.phase == phaseHeld || h.phase == phasePicking
}

// OnHttpRequestHeaders implements types.HttpContext.
func (h *httpContext) OnHttpRequestHeaders(_ int, endOfStream bool) (action types.Action) {
	defer h.recoverTo(&action)
	// Always, on every request: a client must never choose the upstream
	// address (Envoy does not sanitise this header). The deploy files strip
	// it again before any filter runs, for when this VM has failed.
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
	h.start = time.Now()
	cfg := &h.plugin.cfg
	if cfg.RouteOn != config.RouteNone {
		h.objective = objectiveHeader()
		if cfg.PickExplain != config.ExplainOff {
			v, err := proxywasm.GetHttpRequestHeader(pickapi.HeaderExplain)
			h.explain = err == nil && v != "" && v != "0" && v != "false"
		}
	}
	switch cfg.RouteOn {
	case config.RouteBody:
		// Hold the headers until the body is read and the pick is made.
		// Envoy >= 1.35 delivers the body meanwhile only with
		// allow_on_headers_stop_iteration; the watchdog covers its absence.
		h.phase = phaseHeld
		h.plugin.watch(h.id, h)
		return types.ActionPause
	case config.RouteHeaders:
		h.freeLength()
		// A pool-level pick by load: the model is in the body, not read yet.
		// Pausing headers for a callout works on every Envoy.
		if h.startPick("", nil) {
			return types.ActionPause
		}
		if h.phase == phaseAnswered {
			return types.ActionPause // failed closed: answered with a local reply
		}
		return types.ActionContinue
	default:
		h.freeLength()
		h.phase = phaseSent
		return types.ActionContinue
	}
}

// objectiveHeader is the first of pickapi.ObjectiveHeaders the request
// carries. A value longer than a Kubernetes name names no object: it
// counts as none (the picker would refuse the pick, and the request would
// lose its routing over a header).
func objectiveHeader() string {
	for _, name := range pickapi.ObjectiveHeaders {
		if v, err := proxywasm.GetHttpRequestHeader(name); err == nil && v != "" {
			if len(v) > pickapi.MaxNameLen {
				return ""
			}
			return v
		}
	}
	return ""
}

// freeLength drops Content-Length when the headers will leave before the
// body is read and the body may change size (the injected stream_options,
// the model the kept resolution table draws): Envoy then frames it
// (chunked) instead of announcing a length that would be wrong.
func (h *httpContext) freeLength() {
	if h.plugin.cfg.InjectStreamUsage || (h.plugin.cfg.RouteOn == config.RouteHeaders && h.plugin.keepsResolution()) {
		h.lengthFree = proxywasm.RemoveHttpRequestHeader("content-length") == nil
	}
}

// OnHttpRequestBody implements types.HttpContext.
func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) (action types.Action) {
	defer h.recoverTo(&action)
	if !h.observing() {
		return types.ActionContinue
	}
	if h.phase == phaseHeld {
		h.plugin.unwatch(h.id) // the body came: no watchdog needed
	}
	if h.body == bodyUnread {
		if bodySize > h.plugin.cfg.MaxRequestBodyBytes {
			// Stop buffering: what was held flows on, unparsed and unrouted.
			h.body = bodySkipped
			h.plugin.metrics.count(stats.OversizeBodies, stats.TagPhase, "request")
			h.setState(stats.StateRequestBody, "oversize")
			h.release(route.OutcomeSkipped)
		} else if !endOfStream {
			return types.ActionPause // buffer until the whole body is here
		} else {
			h.readRequestBody(bodySize)
		}
	}
	return h.requestAction()
}

// OnHttpRequestTrailers implements types.HttpContext: a body followed by
// trailers never sees endOfStream in the body callback.
func (h *httpContext) OnHttpRequestTrailers(int) (action types.Action) {
	defer h.recoverTo(&action)
	if !h.observing() {
		return types.ActionContinue
	}
	if h.body == bodyUnread {
		if h.phase == phaseHeld {
			h.plugin.unwatch(h.id)
		}
		h.readRequestBody(h.plugin.cfg.MaxRequestBodyBytes)
	}
	return h.requestAction()
}

// requestAction is what a request callback returns once the body was
// handled: held while a pick is (or could be) pending, else on its way.
func (h *httpContext) requestAction() types.Action {
	switch h.phase {
	case phasePicking, phaseAnswered:
		return types.ActionPause // the pick's answer resumes or answers it
	case phaseHeld:
		// Body mode, and no pick was started (body unreadable, skipped).
		h.release(route.OutcomeSkipped)
	}
	return types.ActionContinue
}

// release lets a request held for its body go on unrouted, saying why.
func (h *httpContext) release(outcome string) {
	if h.phase != phaseHeld {
		return
	}
	h.phase = phaseSent
	h.outcome(outcome)
}

// readRequestBody parses the buffered body, records what it says, adds
// include_usage if asked to, and in body mode starts the pick.
func (h *httpContext) readRequestBody(size int) {
	h.body = bodyRead
	body, err := proxywasm.GetHttpRequestBody(0, size)
	h.copied += len(body)
	if err != nil || len(body) == 0 {
		h.plugin.metrics.count(stats.ParseErrors, stats.TagPhase, "request")
		return
	}
	req, err := llmapi.ParseRequest(body, h.plugin.cfg.MaxJSONDepth)
	h.model = req.Model
	if req.Model != "" {
		h.setState(stats.StateModel, req.Model)
	}
	switch {
	case errors.Is(err, llmapi.ErrTooDeep):
		// Not read at all: passed on as it came, unrouted (vLLM's own
		// parser refuses such depths too).
		h.plugin.metrics.count(stats.DeepBodies, stats.TagPhase, "request")
		h.setState(stats.StateRequestBody, "too_deep")
		return
	case err != nil:
		h.plugin.metrics.count(stats.ParseErrors, stats.TagPhase, "request")
		h.setState(stats.StateRequestBody, "unparsable")
		return
	}
	h.req, h.reqBody = req, body
	h.setState(stats.StateStream, strconv.FormatBool(req.Stream))
	if req.MaxTokens >= 0 {
		h.setState(stats.StateMaxTokens, strconv.FormatInt(req.MaxTokens, 10))
	}
	if h.plugin.cfg.InjectStreamUsage && h.req.NeedsUsageInjection() {
		before := h.req
		if nb, ok := h.req.InjectIncludeUsage(body); ok {
			// h.req now describes nb, so a later model rewrite splices
			// the body as it is; unless the host kept the old one.
			if h.injected = h.replaceRequestBody(nb); !h.injected {
				h.req = before
			}
		}
	}
	if h.resolveAtBody {
		h.resolveLocally()
	}
	if h.phase == phaseHeld {
		h.startPick(req.Model, &req)
	}
	if h.phase != phasePicking {
		h.req, h.reqBody = llmapi.Request{}, nil
	}
}

// OnHttpResponseHeaders implements types.HttpContext.
func (h *httpContext) OnHttpResponseHeaders(_ int, endOfStream bool) (action types.Action) {
	defer h.recoverTo(&action)
	if !h.observing() {
		return types.ActionContinue
	}
	st, _ := proxywasm.GetHttpResponseHeader(":status")
	h.status, _ = strconv.Atoi(st)
	ctype, _ := proxywasm.GetHttpResponseHeader("content-type")
	enc, _ := proxywasm.GetHttpResponseHeader("content-encoding")
	cfg := &h.plugin.cfg
	h.observer = llmapi.NewResponseObserver(ctype, enc, h.injected, llmapi.ObserverLimits{
		MaxBody: cfg.MaxResponseBodyBytes, MaxEvent: cfg.MaxSSEEventBytes, DecodeGzip: cfg.DecodeGzip,
		MaxDepth: cfg.MaxJSONDepth,
	})
	if h.observer.StripActive() {
		_ = proxywasm.RemoveHttpResponseHeader("content-length")
	}
	if h.explanation != "" {
		_ = proxywasm.ReplaceHttpResponseHeader(pickapi.HeaderPickExplanation, h.explanation)
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
	if !h.observing() || h.observer == nil {
		return types.ActionContinue
	}
	var chunk []byte
	if bodySize > 0 {
		if h.firstAt.IsZero() {
			h.firstAt = time.Now()
		}
		chunk, _ = proxywasm.GetHttpResponseBody(0, bodySize)
		h.copied += len(chunk)
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
	h.plugin.unwatch(h.id)
	if h.observing() {
		h.finish()
	}
	h.plugin.ends.Add(h.pickID, h.completion)
	if h.copied >= gcAfterBytes {
		// Linear memory never shrinks, and the Go heap grows rather than
		// wait for a collection when the next large body comes: collect
		// now, so that large bodies reuse the same pages (the SDK's
		// doc/OVERVIEW.md suggests this).
		runtime.GC()
	}
}

// gcAfterBytes is the body volume after which a finished request collects
// garbage: rare (bodies that large are), and cheap against their cost.
const gcAfterBytes = 1 << 20

// finish writes the request's metrics and access-log fields, once.
func (h *httpContext) finish() {
	h.phase = phaseFinished
	h.req, h.reqBody = llmapi.Request{}, nil
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
	class := metricnames.ResponseClass(h.status)
	series.request(class)
	if oc.Usage.HasPrompt {
		series.prompt.Increment(uint64(oc.Usage.PromptTokens))
		h.setState(stats.StatePromptTokens, strconv.FormatInt(oc.Usage.PromptTokens, 10))
	}
	if oc.Usage.HasCompletion {
		h.completion = oc.Usage.CompletionTokens
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
	if oc.Missing == llmapi.MissingTooDeep {
		m.count(stats.DeepBodies, stats.TagPhase, "response")
	}
	if oc.Oversized > 0 {
		m.count(stats.OversizeBodies, stats.TagPhase, "response_event")
	}
	if oc.BadEvents > 0 {
		m.count(stats.ParseErrors, stats.TagPhase, "response")
	}
	if oc.DeepEvents > 0 {
		m.count(stats.DeepBodies, stats.TagPhase, "response_event")
	}
}

// setState writes filter state wasm.<key>, printed in access logs with
// %FILTER_STATE(wasm.<key>:PLAIN)%. Values are made printable and bounded
// first: several come from the client.
func (h *httpContext) setState(key, value string) {
	if value == "" {
		return
	}
	_ = proxywasm.SetProperty([]string{key}, []byte(stats.StateValue(value)))
}

// recoverTo keeps a bug from trapping the VM (which would take down every
// request on this worker): the request continues unobserved, and it is
// logged and counted.
func (h *httpContext) recoverTo(action *types.Action) {
	r := recover()
	if r == nil {
		return
	}
	wasHeld := h.headersHeld()
	h.phase = phaseIgnored
	h.req, h.reqBody, h.observer = llmapi.Request{}, nil, nil
	h.plugin.unwatch(h.id)
	if action != nil {
		*action = types.ActionContinue
	} else if wasHeld {
		// A callback with no action to return (a pick answer) held the
		// request: let it go, or it would hang.
		_ = proxywasm.ResumeHttpRequest()
	}
	proxywasm.LogErrorf("meshllm: recovered from a filter error, request continues unobserved: %v", r)
	if h.plugin.metrics != nil {
		h.plugin.metrics.count(stats.FilterErrors, stats.TagPhase, "callback")
	}
}
