package main

import (
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/filter/resolution"
	"github.com/meshllm/meshllm/filter/route"
	"github.com/meshllm/meshllm/pickapi"
)

// vmContext is the filter's VM; one per Envoy worker thread.
type vmContext struct {
	types.DefaultVMContext
}

// NewPluginContext implements types.VMContext.
func (*vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &pluginContext{}
}

// pluginContext holds one plugin configuration and the metrics it defined.
type pluginContext struct {
	types.DefaultPluginContext
	cfg     config.Config
	metrics *hostMetrics

	hashBuf []uint64   // reused for prefix hashes
	ends    route.Ends // ended requests' pick ids, for the next pick
	doneBuf []uint64   // reused for a pick request's done ids
	tokBuf  []int      // reused for their completion tokens
	// pickBuf is reused for the pick request's JSON: the host copies a
	// call's body before DispatchHttpCall returns (the ABI hands it a
	// pointer into guest memory, valid only during the call; Envoy's
	// Context::httpCall, source/extensions/common/wasm/context.cc, adds it
	// to the message's own buffer), and growing a fresh buffer cost more
	// in wasm than writing it.
	pickBuf []byte
	// pickerKnowsObjectives: the picker has answered with a pick_id, so
	// it is new enough to read the pick request's "objective".
	pickerKnowsObjectives bool
	// apiLevel is the contract level the picker last said it reads
	// (pickapi.APILevel); apiLevelKnown: read from shared data once.
	apiLevel      int
	apiLevelKnown bool
	rankedAt      time.Time               // last fallback-cache write
	rotation      int                     // round robin over cached endpoints
	waiting       map[uint32]*httpContext // paused for a body (watchdog)
	logged        map[string]bool         // logOnce

	ticks         int // ticks seen
	watchdogTicks int // ticks a paused request may wait for its body

	keeper resolution.Keeper // when to confirm or fetch the kept resolution table
	kept   keptCache         // this VM's decoding of it
}

// OnPluginStart implements types.PluginContext. A bad pluginConfig fails the
// start, so the operator sees the error instead of a silently defaulted filter.
func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	raw, err := proxywasm.GetPluginConfiguration()
	if err != nil && err != types.ErrorStatusNotFound {
		proxywasm.LogCriticalf("meshllm: reading pluginConfig: %v", err)
		return types.OnPluginStartStatusFailed
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		proxywasm.LogCriticalf("meshllm: invalid pluginConfig: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.cfg = cfg
	p.metrics = newHostMetrics(cfg)
	p.hashBuf = make([]uint64, 0, pickapi.MaxBlocks)
	p.doneBuf = make([]uint64, 0, pickapi.MaxDone)
	p.tokBuf = make([]int, 0, pickapi.MaxDone)
	period := 0
	switch {
	case cfg.RouteOn == config.RouteBody:
		// The watchdog's clock: a quarter of its limit, at most every 50 ms.
		period = max(min(cfg.WatchdogMillis/4, 50), 5)
		p.watchdogTicks = (cfg.WatchdogMillis + period - 1) / period
	case p.keepsResolution():
		period = resolutionTickMillis
	}
	if period > 0 {
		if err := proxywasm.SetTickPeriodMilliSeconds(uint32(period)); err != nil {
			proxywasm.LogCriticalf("meshllm: cannot set the tick: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	proxywasm.LogInfof("meshllm: started (route_on=%s, llm_paths=%v, inject_stream_usage=%v, model_label_limit=%d)",
		cfg.RouteOn, cfg.LLMPaths, cfg.InjectStreamUsage, cfg.ModelLabelLimit)
	return types.OnPluginStartStatusOK
}

// resolutionTickMillis is the tick without a watchdog (header-time
// routing): how soon a VM acts on a new table version a pick named.
const resolutionTickMillis = 250

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{plugin: p, id: contextID, completion: -1}
}

// pickerAPILevel is the contract level the picker last said it reads
// (this VM's answers, or another worker's: shared data).
func (p *pluginContext) pickerAPILevel() int {
	if !p.apiLevelKnown {
		if b, _, err := proxywasm.GetSharedData(route.APILevelKey); err == nil && len(b) == 1 {
			p.apiLevel = int(b[0])
		}
		p.apiLevelKnown = true
	}
	return p.apiLevel
}

// setPickerAPILevel records the level an answer carried (0 for a picker
// that predates levels, or one that refused a newer field: a rolled-back
// picker is then sent only what it reads).
func (p *pluginContext) setPickerAPILevel(level int) {
	level = min(max(level, 0), 255)
	if p.apiLevelKnown && p.apiLevel == level {
		return
	}
	p.apiLevel, p.apiLevelKnown = level, true
	_ = proxywasm.SetSharedData(route.APILevelKey, []byte{byte(level)}, 0)
}

// knowsObjectives reports whether the picker reads "objective": this VM
// saw a pick_id, or another worker's VM did.
func (p *pluginContext) knowsObjectives() bool {
	if !p.pickerKnowsObjectives {
		if b, _, err := proxywasm.GetSharedData(route.ObjectivesKey); err == nil && len(b) == 1 && b[0] == 1 {
			p.pickerKnowsObjectives = true
		}
	}
	return p.pickerKnowsObjectives
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
	if len(p.cfg.EndpointCIDRs) > 0 {
		// Shared data is writable by any plugin in the proxy.
		kept := eps[:0]
		for _, e := range eps {
			if route.Allowed(e, p.cfg.EndpointCIDRs) {
				kept = append(kept, e)
			}
		}
		if eps = kept; len(eps) == 0 {
			return "", false
		}
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

func (p *pluginContext) unwatch(id uint32) {
	if p.waiting != nil {
		delete(p.waiting, id)
	}
}

// OnTick implements types.PluginContext. The watchdog counts ticks rather
// than reading the clock: Envoy ticks at the period set in OnPluginStart,
// and counting makes the watchdog exact to test.
func (p *pluginContext) OnTick() {
	if p.keepsResolution() {
		p.stepResolution()
	}
	p.ticks++
	for id, h := range p.waiting {
		if p.ticks-h.pausedTick <= p.watchdogTicks {
			continue
		}
		delete(p.waiting, id)
		if h.phase != phaseHeld {
			continue
		}
		if err := proxywasm.SetEffectiveContext(id); err != nil {
			continue // the stream is gone
		}
		// The headers leave with their Content-Length: the body, when it
		// comes, is read but keeps its size (no injection).
		h.release(route.OutcomeWatchdog)
		h.resolveAtBody = true // unpicked: the body, if it comes, may still take its target
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
