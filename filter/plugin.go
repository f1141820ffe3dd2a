package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshllm/meshllm/filter/config"
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
	proxywasm.LogInfof("meshllm: started (llm_paths=%v, inject_stream_usage=%v, model_label_limit=%d)",
		cfg.LLMPaths, cfg.InjectStreamUsage, cfg.ModelLabelLimit)
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{plugin: p}
}
