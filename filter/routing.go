package main

import (
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/filter/route"
	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/internal/llmapi"
	"github.com/meshllm/meshllm/pickapi"
)

// Routing: the host calls that ask picker-svc for an endpoint and apply its
// answer. What to do with an answer is decided by the pure package route.

// startPick dispatches a pick; the request is then phasePicking. model is ""
// for a pool-level pick at header time. It reports false if Envoy refused
// the call; the failure has then been handled (the request goes on, or was
// answered, and its phase says which).
func (h *httpContext) startPick(model string, req *llmapi.Request) bool {
	cfg := &h.plugin.cfg
	pr := pickapi.PickRequest{Pool: cfg.Pool, Model: model}
	var tokens []int
	pr.Done, tokens = h.plugin.ends.Take(h.plugin.doneBuf[:0], h.plugin.tokBuf[:0])
	if h.objective != "" && h.plugin.knowsObjectives() {
		pr.Objective = h.objective
	}
	level2 := h.plugin.pickerAPILevel() >= 2
	if level2 {
		// A picker that says it reads them: older ones refuse unknown fields.
		if len(pr.Done) > 0 {
			pr.DoneTokens = tokens
		}
		pr.Explain = h.explain
	}
	if req != nil {
		pr.PrefixHashes = pickapi.PrefixHashes(h.plugin.hashBuf[:0], model, req.Prompt)
		pr.PromptBytes = len(req.Prompt)
		if level2 && req.MaxTokens > 0 {
			pr.MaxTokens = int(min(req.MaxTokens, pickapi.MaxOutputTokens))
		}
	}
	headers := [][2]string{
		{":method", "POST"}, {":path", cfg.PickerPath}, {":authority", cfg.PickerAuthority},
		{"content-type", "application/json"},
	}
	h.plugin.pickBuf = pr.AppendJSON(h.plugin.pickBuf[:0])
	h.pickStart = time.Now()
	if _, err := proxywasm.DispatchHttpCall(cfg.PickerCluster, headers, h.plugin.pickBuf, nil,
		uint32(cfg.PickerTimeoutMillis), h.onPickResponse); err != nil {
		h.plugin.logOnce("dispatch", "meshllm: cannot call the picker through cluster %q: %v (is the cluster configured?)", cfg.PickerCluster, err)
		h.pickFailed(route.ReasonDispatch, false)
		return false
	}
	h.phase = phasePicking
	return true
}

// onPickResponse is the DispatchHttpCall callback. An answer for a request
// no longer waiting for it (answered, reset) changes nothing.
func (h *httpContext) onPickResponse(numHeaders, bodySize, _ int) {
	defer h.recoverTo(nil)
	if h.phase != phasePicking {
		return
	}
	ms := time.Since(h.pickStart).Milliseconds()
	h.plugin.metrics.pickMillis.Record(uint64(ms))
	h.setState(stats.StatePickMillis, strconv.FormatInt(ms, 10))
	a := route.Answer{Headers: numHeaders, BodySize: bodySize}
	if numHeaders > 0 {
		hs, _ := proxywasm.GetHttpCallResponseHeaders()
		for _, kv := range hs {
			if kv[0] == ":status" {
				a.Status, _ = strconv.Atoi(kv[1])
			}
		}
	}
	if route.ReadBody(bodySize) {
		// Never copy more than a pick can be into the VM.
		a.Body, _ = proxywasm.GetHttpCallResponseBody(0, bodySize)
	}
	d := route.Decide(a, h.plugin.cfg.EndpointCIDRs)
	switch d.Kind {
	case route.Pick:
		h.applyPick(d.Pick)
		h.resume()
	case route.Refuse:
		h.answer(route.OutcomeRefused, uint32(d.Status), d.Body)
	default:
		if a.Status == 400 {
			// Perhaps a picker older than the fields this filter sent (a
			// rollback): send it only what every picker reads from now on.
			h.plugin.setPickerAPILevel(0)
		}
		h.pickFailed(d.Reason, true)
	}
}

// applyPick sets the destination, rewrites the model when the picker chose
// another target, and refreshes the fallback cache.
func (h *httpContext) applyPick(p pickapi.PickResponse) {
	h.pickID = p.PickID
	h.plugin.setPickerAPILevel(p.APILevel)
	if p.Explain != "" && h.explain {
		h.setState(stats.StatePickExplain, p.Explain)
		if h.plugin.cfg.PickExplain == config.ExplainHeader && route.HeaderSafe(p.Explain) {
			h.explanation = p.Explain
		}
	}
	if p.PickID != 0 && !h.plugin.pickerKnowsObjectives {
		// A picker that numbers picks also reads "objective"; an older
		// one would refuse the field (400), so it is sent only from now,
		// by every worker's VM (shared data).
		h.plugin.pickerKnowsObjectives = true
		_ = proxywasm.SetSharedData(route.ObjectivesKey, []byte{1}, 0)
	}
	_ = proxywasm.ReplaceHttpRequestHeader(pickapi.HeaderDestinationEndpoint, p.Endpoint)
	if p.TargetModel != "" && p.TargetModel != h.model && h.reqBody != nil {
		if nb, ok := h.req.RewriteModel(h.reqBody, p.TargetModel); ok {
			_ = h.replaceRequestBody(nb)
		}
	}
	if p.TargetModel != "" {
		h.target = p.TargetModel
		h.setState(stats.StateTargetModel, p.TargetModel)
	}
	h.clearRouteCache()
	h.setState(stats.StateEndpoint, p.Endpoint)
	h.setState(stats.StateStrategy, string(p.Strategy))
	h.outcome(route.OutcomePicked)
	if h.plugin.cfg.FallbackCache {
		h.plugin.storeRanked(p)
	}
	if h.plugin.keepsResolution() {
		if p.Resolution != "" {
			h.plugin.keeper.Announce(p.Resolution)
		}
		if h.reqBody == nil {
			// A header-time pick, by load: no model was resolved. The
			// body, when read, takes its target from the kept table.
			h.resolveAtBody = true
		}
	}
}

// pickFailed handles a picker that did not answer usefully: fail closed,
// or open (with the cached ranked endpoints if there are fresh ones, and
// the model resolved by the kept resolution table).
// paused says the request waits for this decision and must be resumed.
func (h *httpContext) pickFailed(reason string, paused bool) {
	p := h.plugin
	p.metrics.count(stats.PickerErrors, stats.TagReason, reason)
	if p.cfg.FailClosed {
		h.answer(route.OutcomeFailClosed, 503, route.FailClosedBody())
		return
	}
	if ep, ok := p.cachedEndpoint(); ok {
		_ = proxywasm.ReplaceHttpRequestHeader(pickapi.HeaderDestinationEndpoint, ep)
		h.clearRouteCache()
		h.setState(stats.StateEndpoint, ep)
		h.outcome(route.OutcomeFallback)
	} else {
		h.outcome(route.OutcomeFailOpen)
	}
	// The endpoint is kept or left to the cluster; the model is resolved
	// as the picker would have, now (the body is held) or once it is read.
	if h.reqBody != nil {
		h.resolveLocally()
	} else {
		h.resolveAtBody = true
	}
	if paused {
		h.resume()
	} else {
		h.phase = phaseSent
		h.req, h.reqBody = llmapi.Request{}, nil
	}
}

// answer replies to the client in the filter's name; the request never
// goes upstream.
func (h *httpContext) answer(outcome string, status uint32, body []byte) {
	h.phase = phaseAnswered
	h.req, h.reqBody = llmapi.Request{}, nil
	h.outcome(outcome)
	_ = proxywasm.SendHttpResponse(status, [][2]string{{"content-type", "application/json"}}, body, -1)
}

func (h *httpContext) clearRouteCache() {
	if h.plugin.cfg.ClearRouteCache {
		// Since Envoy PR #36671 header changes no longer clear the route
		// cache by themselves.
		_, _ = proxywasm.CallForeignFunction("clear_route_cache", nil)
	}
}

func (h *httpContext) outcome(o string) {
	h.plugin.metrics.count(stats.Picks, stats.TagOutcome, o)
	h.setState(stats.StateRoute, o)
}

// resume sends on a request held for its pick, and drops the body copy.
func (h *httpContext) resume() {
	h.phase = phaseSent
	h.req, h.reqBody = llmapi.Request{}, nil
	_ = proxywasm.ResumeHttpRequest()
}

// replaceRequestBody swaps the buffered body and keeps Content-Length true.
// It refuses a change of size that the headers can no longer announce.
func (h *httpContext) replaceRequestBody(nb []byte) bool {
	resize := len(nb) != len(h.reqBody)
	if resize && !h.lengthFree && !h.headersHeld() {
		return false
	}
	if err := proxywasm.ReplaceHttpRequestBody(nb); err != nil {
		return false
	}
	h.reqBody = nb
	if resize && h.headersHeld() {
		if cl, err := proxywasm.GetHttpRequestHeader("content-length"); err == nil && cl != "" {
			_ = proxywasm.ReplaceHttpRequestHeader("content-length", strconv.Itoa(len(nb)))
		}
	}
	return true
}
