package wasmhost

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// --- calls out of the VM ---

// proxy_http_call(upstream_data, upstream_size, headers_data, headers_size,
// body_data, body_size, trailers_data, trailers_size, timeout_milliseconds,
// return_callout_id). Trailers are ignored.
func (vm *VM) proxyHTTPCall(_ context.Context, mod api.Module, s []uint64) uint32 {
	upstreamData, upstreamSize, headersData, headersSize := arg(s, 0), arg(s, 1), arg(s, 2), arg(s, 3)
	bodyData, bodySize, timeoutMs, retCalloutID := arg(s, 4), arg(s, 5), arg(s, 8), arg(s, 9)
	cluster := vm.readString(mod, upstreamData, upstreamSize)
	hs, ok := deserializeMap(vm.read(mod, headersData, headersSize))
	if !ok || !vm.cfg.Clusters[cluster] || vm.cfg.Call == nil {
		return statusBadArgument
	}
	for _, need := range []string{":method", ":path", ":authority"} {
		if !hasKey(hs, need) {
			return statusBadArgument
		}
	}
	vm.nextCall++
	id := vm.nextCall
	mod.Memory().WriteUint32Le(retCalloutID, id)
	vm.callouts[id] = &callout{stream: vm.effective}
	req := CallRequest{Cluster: cluster, Headers: hs, Body: vm.read(mod, bodyData, bodySize),
		Timeout: time.Duration(timeoutMs) * time.Millisecond}
	go vm.runCall(id, req)
	return statusOK
}

// proxy_call_foreign_function(name_data, name_size, param_data, param_size,
// return_data, return_size)
func (vm *VM) proxyCallForeignFunction(ctx context.Context, mod api.Module, s []uint64) uint32 {
	nameData, nameSize, paramData, paramSize, retData, retSize := arg(s, 0), arg(s, 1), arg(s, 2), arg(s, 3), arg(s, 4), arg(s, 5)
	f := vm.cfg.ForeignFunctions[vm.readString(mod, nameData, nameSize)]
	if f == nil {
		return statusNotFound
	}
	return vm.give(ctx, mod, f(vm.read(mod, paramData, paramSize)), retData, retSize)
}

// runCall performs a dispatched call and delivers its answer under the lock.
func (vm *VM) runCall(id uint32, req CallRequest) {
	resp := vm.cfg.Call(req)
	vm.mu.Lock()
	defer vm.mu.Unlock()
	co := vm.callouts[id]
	delete(vm.callouts, id)
	if vm.closed || co == nil {
		return
	}
	if st := vm.streams[co.stream]; co.stream != vm.root && st == nil {
		return // the stream ended first: Envoy cancels the call
	}
	vm.callResp = &resp
	defer func() { vm.callResp = nil }()
	vm.effective = vm.root
	if _, err := vm.call(vm.fns.callResponse, uint64(vm.root), uint64(id), uint64(len(resp.Headers)), uint64(len(resp.Body)), 0); err != nil {
		if st := vm.streams[co.stream]; st != nil {
			st.trap(err)
		}
	}
}
