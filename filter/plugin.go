package main

import (
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/filter/route"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
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
	rankedAt              time.Time               // last fallback-cache write
	rotation              int                     // round robin over cached endpoints
	waiting               map[uint32]*httpContext // paused for a body (watchdog)
	logged                map[string]bool         // logOnce

	ticks         int // ticks seen
	watchdogTicks int // ticks a paused request may wait for its body
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
	if cfg.RouteOn == config.RouteBody {
		// The watchdog's clock: a quarter of its limit, at most every 50 ms.
		period := max(min(cfg.WatchdogMillis/4, 50), 5)
		p.watchdogTicks = (cfg.WatchdogMillis + period - 1) / period
		if err := proxywasm.SetTickPeriodMilliSeconds(uint32(period)); err != nil {
			proxywasm.LogCriticalf("meshllm: cannot set the watchdog tick: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	proxywasm.LogInfof("meshllm: started (route_on=%s, llm_paths=%v, inject_stream_usage=%v, model_label_limit=%d)",
		cfg.RouteOn, cfg.LLMPaths, cfg.InjectStreamUsage, cfg.ModelLabelLimit)
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{plugin: p, id: contextID}
}
