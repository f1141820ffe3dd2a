package main

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/meshllm/meshllm/filter/config"
	"github.com/meshllm/meshllm/filter/resolution"
	"github.com/meshllm/meshllm/filter/route"
	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/pickapi"
)

// The kept resolution: the pool's resolution table, learned from the
// picker and kept in shared data, so that a request routed without a fresh
// pick (the picker slow, down or restarting; header-time picks, which
// carry no model) still gets its model resolved: the weighted draw and the
// body rewrite the picker would have made. What to do is decided by the
// pure package resolution; this file moves bytes between it and the host.

// keptCache is one VM's decoding of the shared value, valid while the
// value's CAS is unchanged (every write changes it).
type keptCache struct {
	cas  uint32
	have bool
	kept resolution.Kept
	err  error
}

// keepsResolution reports whether this filter keeps a resolution table.
func (p *pluginContext) keepsResolution() bool {
	return p.cfg.RouteOn != config.RouteNone && p.cfg.ResolutionMaxAgeMillis > 0
}

// fetchTimeoutMillis bounds a table fetch: off the request path, so more
// generous than a pick (a picker too slow to pick may still answer it).
func (p *pluginContext) fetchTimeoutMillis() int64 {
	return int64(max(p.cfg.PickerTimeoutMillis, 2000))
}

// stepResolution runs at every tick: when a pick named a version, confirm
// the kept table if it is that version (it was seen now), else fetch it.
func (p *pluginContext) stepResolution() {
	defer p.recoverTick()
	now := time.Now().UnixMilli()
	version := p.keeper.Take(now)
	if version == "" {
		return
	}
	if p.kept.have && p.kept.err == nil && p.kept.kept.Table.Version == version && !p.keeper.ConfirmDue(now) {
		return // as this VM last read it, and confirmed within a step: no copy out of shared data
	}
	key := resolution.Key(p.cfg.Pool)
	if cas, ok := p.readKept(key); ok && p.kept.err == nil && p.kept.kept.Table.Version == version {
		if p.keeper.MayConfirm(now) {
			// A concurrent writer's value wins (CAS); the next step
			// confirms again.
			_ = proxywasm.SetSharedData(key, resolution.Encode(now, &p.kept.kept.Table), cas)
		}
		return
	}
	if p.keeper.MayFetch(now) {
		p.fetchResolution(now)
	}
}

// readKept reads the shared value and decodes it unless this VM already
// has (same CAS). ok is false when there is no value at all.
func (p *pluginContext) readKept(key string) (uint32, bool) {
	b, cas, err := proxywasm.GetSharedData(key)
	if err != nil || len(b) == 0 {
		p.kept = keptCache{}
		return cas, false
	}
	if !p.kept.have || p.kept.cas != cas {
		k, derr := resolution.Decode(b, p.cfg.Pool)
		p.kept = keptCache{cas: cas, have: true, kept: k, err: derr}
		if derr != nil {
			p.logOnce("resolution-invalid", "meshllm: shared data %s holds no valid resolution table (%v): not used; "+
				"the next table fetched from the picker replaces it", key, derr)
		}
	}
	return cas, true
}

// fetchResolution asks the picker for the pool's table, from the root
// context: a stream's call would be cancelled with the stream.
func (p *pluginContext) fetchResolution(now int64) {
	cfg := &p.cfg
	headers := [][2]string{
		{":method", "GET"}, {":path", resolution.FetchPath(cfg.ResolutionPath, cfg.Pool)}, {":authority", cfg.PickerAuthority},
	}
	if _, err := proxywasm.DispatchHttpCall(cfg.PickerCluster, headers, nil, nil,
		uint32(p.fetchTimeoutMillis()), p.onResolution); err != nil {
		p.metrics.count(stats.ResolutionFetches, stats.TagOutcome, resolution.FetchDispatch)
		p.keeper.Fetched(now, false)
		return
	}
	p.keeper.Fetching(now, p.fetchTimeoutMillis())
}

// onResolution is the fetch's callback: keep a valid table, seen now.
func (p *pluginContext) onResolution(numHeaders, bodySize, _ int) {
	defer p.recoverTick()
	a := route.Answer{Headers: numHeaders, BodySize: bodySize}
	if numHeaders > 0 {
		hs, _ := proxywasm.GetHttpCallResponseHeaders()
		for _, kv := range hs {
			if kv[0] == ":status" {
				a.Status, _ = strconv.Atoi(kv[1])
			}
		}
	}
	if resolution.ReadBody(bodySize) {
		a.Body, _ = proxywasm.GetHttpCallResponseBody(0, bodySize)
	}
	t, outcome := resolution.DecideFetch(a, p.cfg.Pool)
	p.keeper.Fetched(time.Now().UnixMilli(), outcome == resolution.FetchOK)
	p.metrics.count(stats.ResolutionFetches, stats.TagOutcome, outcome)
	if outcome != resolution.FetchOK {
		return
	}
	key := resolution.Key(p.cfg.Pool)
	_, cas, _ := proxywasm.GetSharedData(key)
	err := proxywasm.SetSharedData(key, resolution.Encode(time.Now().UnixMilli(), &t), cas)
	if err != nil && !errors.Is(err, types.ErrorStatusCasMismatch) {
		p.logOnce("resolution-store", "meshllm: cannot keep the resolution table in shared data %s: %v", key, err)
		return
	}
	if err == nil {
		proxywasm.LogInfof("meshllm: keeping the resolution table of pool %q (version %s, %d models) for when no pick answers",
			p.cfg.Pool, t.Version, len(t.Models))
	}
}

// keptTable is the kept table if it may be used now, else nil and why.
func (p *pluginContext) keptTable() (*pickapi.Resolution, string) {
	if _, ok := p.readKept(resolution.Key(p.cfg.Pool)); !ok {
		return nil, resolution.OutcomeNoTable
	}
	if p.kept.err != nil {
		return nil, resolution.OutcomeInvalid
	}
	ok, why := resolution.Usable(p.kept.kept.SeenMillis, time.Now().UnixMilli(), int64(p.cfg.ResolutionMaxAgeMillis))
	if !ok {
		return nil, why
	}
	return &p.kept.kept.Table, ""
}

// recoverTick keeps a bug in root-context work from trapping the VM.
func (p *pluginContext) recoverTick() {
	if r := recover(); r != nil {
		proxywasm.LogErrorf("meshllm: recovered from a filter error in the resolution keeper: %v", r)
		if p.metrics != nil {
			p.metrics.count(stats.FilterErrors, stats.TagPhase, "tick")
		}
	}
}

// resolveLocally resolves the request's model with the kept table, no
// fresh pick having done it: the picker's weighted draw, and the body
// rewrite when the target differs. The request's body must be held
// (h.req, h.reqBody).
func (h *httpContext) resolveLocally() {
	p := h.plugin
	if !p.keepsResolution() || h.model == "" || h.reqBody == nil {
		return
	}
	table, outcome := p.keptTable()
	if table != nil {
		target, ok := table.Target(h.model, rand.Int64N)
		switch {
		case !ok || target == h.model:
			outcome = resolution.OutcomeUnchanged
		default:
			outcome = resolution.OutcomeNotRewritable
			if nb, ok := h.req.RewriteModel(h.reqBody, target); ok && h.replaceRequestBody(nb) {
				outcome = resolution.OutcomeRewritten
				h.target = target
				h.setState(stats.StateTargetModel, target)
			}
		}
	}
	p.metrics.count(stats.LocalResolutions, stats.TagOutcome, outcome)
}
