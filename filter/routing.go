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

// Routing: the host calls that ask picker-svc for an endpoint and apply its
// answer. What to do with an answer is decided by the pure package route.

// startPick dispatches a pick. model is "" for a pool-level pick at header
// time. It reports false if Envoy refused the call; the failure has then
// been handled (the request continues or was answered).
func (h *httpContext) startPick(model string, req *llmapi.Request) bool {
	cfg := &h.plugin.cfg
	pr := pickapi.PickRequest{Pool: cfg.Pool, Model: model}
	if req != nil {
		pr.Stream = req.Stream
		pr.PrefixHashes = pickapi.PrefixHashes(h.plugin.hashBuf[:0], model, req.Prompt)
	}
	headers := [][2]string{
		{":method", "POST"}, {":path", cfg.PickerPath}, {":authority", cfg.PickerAuthority},
		{"content-type", "application/json"},
	}
	h.pickStart = time.Now()
	if _, err := proxywasm.DispatchHttpCall(cfg.PickerCluster, headers, pr.AppendJSON(nil), nil,
		uint32(cfg.PickerTimeoutMillis), h.onPickResponse); err != nil {
		h.plugin.logOnce("dispatch", "meshllm: cannot call the picker through cluster %q: %v (is the cluster configured?)", cfg.PickerCluster, err)
		h.pickFailed(route.ReasonDispatch, false)
		return false
	}
	h.pickPending = true
	return true
}

// onPickResponse is the DispatchHttpCall callback.
func (h *httpContext) onPickResponse(numHeaders, bodySize, _ int) {
	defer h.recoverTo(nil)
	h.pickPending = false
	ms := time.Since(h.pickStart).Milliseconds()
	h.plugin.metrics.pickMillis.Record(uint64(ms))
	h.setState(stats.StatePickMillis, strconv.FormatInt(ms, 10))
	status := 0
	if numHeaders > 0 {
		hs, _ := proxywasm.GetHttpCallResponseHeaders()
		for _, kv := range hs {
			if kv[0] == ":status" {
				status, _ = strconv.Atoi(kv[1])
			}
		}
	}
	var body []byte
	if bodySize > 0 {
		body, _ = proxywasm.GetHttpCallResponseBody(0, bodySize)
	}
	d := route.Decide(numHeaders, status, body)
	switch d.Kind {
	case route.Pick:
		h.applyPick(d.Pick)
		h.resume()
	case route.Refuse:
		h.outcome(route.OutcomeRefused)
		_ = proxywasm.SendHttpResponse(uint32(d.Status), [][2]string{{"content-type", "application/json"}}, d.Body, -1)
	default:
		h.pickFailed(d.Reason, true)
	}
}

// applyPick sets the destination, rewrites the model when the picker chose
// another target, and refreshes the fallback cache.
func (h *httpContext) applyPick(p pickapi.PickResponse) {
	_ = proxywasm.ReplaceHttpRequestHeader(pickapi.HeaderDestinationEndpoint, p.Endpoint)
	if p.TargetModel != "" && p.TargetModel != h.model && h.body != nil {
		if nb, ok := llmapi.RewriteModel(h.body, p.TargetModel); ok {
			_ = h.replaceRequestBody(nb)
		}
	}
	if p.TargetModel != "" {
		h.target = p.TargetModel
		h.setState(stats.StateTargetModel, p.TargetModel)
	}
	if h.plugin.cfg.ClearRouteCache {
		// Since Envoy PR #36671 header changes no longer clear the route
		// cache by themselves.
		_, _ = proxywasm.CallForeignFunction("clear_route_cache", nil)
	}
	h.setState(stats.StateEndpoint, p.Endpoint)
	h.setState(stats.StateStrategy, string(p.Strategy))
	h.outcome(route.OutcomePicked)
	if h.plugin.cfg.FallbackCache {
		h.plugin.storeRanked(p)
	}
}

// pickFailed handles a picker that did not answer usefully: fail closed,
// or open (with the cached ranked endpoints if there are fresh ones).
func (h *httpContext) pickFailed(reason string, resume bool) {
	p := h.plugin
	p.metrics.count(stats.PickerErrors, stats.TagReason, reason)
	h.body = nil
	if p.cfg.FailClosed {
		h.outcome(route.OutcomeFailClosed)
		_ = proxywasm.SendHttpResponse(503, [][2]string{{"content-type", "application/json"}}, route.FailClosedBody(), -1)
		return
	}
	if ep, ok := p.cachedEndpoint(); ok {
		_ = proxywasm.ReplaceHttpRequestHeader(pickapi.HeaderDestinationEndpoint, ep)
		if p.cfg.ClearRouteCache {
			_, _ = proxywasm.CallForeignFunction("clear_route_cache", nil)
		}
		h.setState(stats.StateEndpoint, ep)
		h.outcome(route.OutcomeFallback)
	} else {
		h.outcome(route.OutcomeFailOpen)
	}
	if resume {
		h.resume()
	}
}

func (h *httpContext) outcome(o string) {
	h.plugin.metrics.count(stats.Picks, stats.TagOutcome, o)
	h.setState(stats.StateRoute, o)
}

// resume continues a request paused for its pick, and drops the body copy.
func (h *httpContext) resume() {
	h.body = nil
	_ = proxywasm.ResumeHttpRequest()
}

// replaceRequestBody swaps the buffered body and keeps Content-Length true
// (in body mode the headers are still held, so they can still change).
func (h *httpContext) replaceRequestBody(nb []byte) bool {
	if err := proxywasm.ReplaceHttpRequestBody(nb); err != nil {
		return false
	}
	h.body = nb
	if h.plugin.cfg.RouteOn == config.RouteBody && !h.headersSent {
		if cl, err := proxywasm.GetHttpRequestHeader("content-length"); err == nil && cl != "" {
			_ = proxywasm.ReplaceHttpRequestHeader("content-length", strconv.Itoa(len(nb)))
		}
	}
	return true
}

// storeRanked keeps the pick's ranked endpoints in shared data, at most
// every 100 ms per VM (it is a hint for when the picker fails, not state).
func (p *pluginContext) storeRanked(pick pickapi.PickResponse) {
	now := time.Now()
	if now.Sub(p.rankedAt) < 100*time.Millisecond {
		return
	}
	p.rankedAt = now
	ranked := append(append(make([]string, 0, 1+len(pick.Fallbacks)), pick.Endpoint), pick.Fallbacks...)
	_ = proxywasm.SetSharedData(route.CacheKey(p.cfg.Pool), route.EncodeCache(now.UnixMilli(), ranked), 0)
}

// cachedEndpoint returns a fresh cached endpoint, rotating over the ranked
// list so that a down picker does not send everything to one pod.
func (p *pluginContext) cachedEndpoint() (string, bool) {
	if !p.cfg.FallbackCache {
		return "", false
	}
	b, _, err := proxywasm.GetSharedData(route.CacheKey(p.cfg.Pool))
	if err != nil {
		return "", false
	}
	ts, eps, ok := route.DecodeCache(b)
	if !ok || time.Now().UnixMilli()-ts > route.FallbackTTLMillis {
		return "", false
	}
	p.rotation++
	return eps[p.rotation%len(eps)], true
}

// Watchdog. In body mode the headers are paused until the body is read;
// without allow_on_headers_stop_iteration Envoy withholds the body until
// the headers resume, and the request would hang. The tick resumes such
// requests and says why, once.

func (p *pluginContext) watch(id uint32, h *httpContext) {
	if p.waiting == nil {
		p.waiting = make(map[uint32]*httpContext)
	}
	h.pausedTick = p.ticks
	p.waiting[id] = h
}

// OnTick implements types.PluginContext. The watchdog counts ticks rather
// than reading the clock: Envoy ticks at the period set in OnPluginStart,
// and counting makes the watchdog exact to test.
func (p *pluginContext) OnTick() {
	p.ticks++
	if len(p.waiting) == 0 {
		return
	}
	for id, h := range p.waiting {
		if p.ticks-h.pausedTick <= p.watchdogTicks {
			continue
		}
		delete(p.waiting, id)
		if err := proxywasm.SetEffectiveContext(id); err != nil {
			continue // the stream is gone
		}
		h.resumedByWatchdog, h.headersSent = true, true
		h.outcome(route.OutcomeWatchdog)
		p.logOnce("watchdog", "meshllm: a request body did not arrive within %d ms of its paused headers; "+
			"resumed it unrouted. route_on \"body\" needs Envoy >= 1.35 with allow_on_headers_stop_iteration: true "+
			"in the Wasm filter's config (an Istio WasmPlugin cannot set it: use the EnvoyFilter, or route_on \"headers\")",
			p.cfg.WatchdogMillis)
		_ = proxywasm.ResumeHttpRequest()
	}
}

// logOnce logs a warning the first time key happens in this VM.
func (p *pluginContext) logOnce(key, format string, args ...any) {
	if p.logged == nil {
		p.logged = make(map[string]bool)
	}
	if p.logged[key] {
		return
	}
	p.logged[key] = true
	proxywasm.LogWarnf(format, args...)
}

var _ types.PluginContext = (*pluginContext)(nil)
