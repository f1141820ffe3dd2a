package wasmhost

import (
	"context"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// hostFunc is one ABI call: it reads its arguments from the wazero stack and
// returns the proxy-wasm status the guest sees.
type hostFunc func(ctx context.Context, mod api.Module, s []uint64) uint32

// hostImport is one "env" function the guest imports: its name, its
// parameter types and the method that implements it.
type hostImport struct {
	name   string
	params []api.ValueType
	fn     hostFunc
}

// exportABI defines the "env" host functions the guest imports, one method
// a proxy_* call, as the SDK's proxytest does (proxywasm/proxytest
// wasmwrapper.go exports the hostEmulator's Proxy* methods). The argument
// names follow the SDK's declarations in proxywasm/internal/abi_hostcalls.go.
func (vm *VM) exportABI(ctx context.Context) error {
	b := vm.rt.NewHostModuleBuilder("env")
	for _, imp := range vm.hostImports() {
		fn := imp.fn
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			stack[0] = uint64(fn(ctx, mod, stack))
		}), imp.params, []api.ValueType{api.ValueTypeI32}).Export(imp.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// hostImports lists every ABI call the host provides.
func (vm *VM) hostImports() []hostImport {
	i32s := func(k int) []api.ValueType {
		p := make([]api.ValueType, k)
		for i := range p {
			p[i] = api.ValueTypeI32
		}
		return p
	}
	idAndI64 := []api.ValueType{api.ValueTypeI32, api.ValueTypeI64}
	return []hostImport{
		{"proxy_log", i32s(3), vm.proxyLog},
		{"proxy_set_tick_period_milliseconds", i32s(1), vm.proxySetTickPeriodMilliseconds},
		{"proxy_set_effective_context", i32s(1), vm.proxySetEffectiveContext},
		{"proxy_done", nil, vm.proxyDone},

		{"proxy_set_property", i32s(4), vm.proxySetProperty},
		{"proxy_get_property", i32s(4), vm.proxyGetProperty},

		{"proxy_send_local_response", i32s(8), vm.proxySendLocalResponse},

		{"proxy_get_shared_data", i32s(5), vm.proxyGetSharedData},
		{"proxy_set_shared_data", i32s(5), vm.proxySetSharedData},
		{"proxy_register_shared_queue", i32s(3), vm.proxyRegisterSharedQueue},
		{"proxy_resolve_shared_queue", i32s(5), vm.proxyResolveSharedQueue},
		{"proxy_dequeue_shared_queue", i32s(3), vm.proxyDequeueSharedQueue},
		{"proxy_enqueue_shared_queue", i32s(3), vm.proxyEnqueueSharedQueue},

		{"proxy_get_header_map_value", i32s(5), vm.proxyGetHeaderMapValue},
		{"proxy_get_header_map_pairs", i32s(3), vm.proxyGetHeaderMapPairs},
		{"proxy_add_header_map_value", i32s(5), vm.proxyAddHeaderMapValue},
		{"proxy_replace_header_map_value", i32s(5), vm.proxyReplaceHeaderMapValue},
		{"proxy_remove_header_map_value", i32s(3), vm.proxyRemoveHeaderMapValue},
		{"proxy_set_header_map_pairs", i32s(3), vm.proxySetHeaderMapPairs},

		{"proxy_get_buffer_bytes", i32s(5), vm.proxyGetBufferBytes},
		{"proxy_set_buffer_bytes", i32s(5), vm.proxySetBufferBytes},

		{"proxy_continue_stream", i32s(1), vm.proxyContinueStream},
		{"proxy_close_stream", i32s(1), vm.proxyCloseStream},

		{"proxy_http_call", i32s(10), vm.proxyHTTPCall},
		{"proxy_call_foreign_function", i32s(6), vm.proxyCallForeignFunction},

		{"proxy_define_metric", i32s(4), vm.proxyDefineMetric},
		{"proxy_increment_metric", idAndI64, vm.proxyIncrementMetric},
		{"proxy_record_metric", idAndI64, vm.proxyRecordMetric},
		{"proxy_get_metric", i32s(2), vm.proxyGetMetric},
	}
}

// arg is the i-th i32 argument of an ABI call.
func arg(s []uint64, i int) uint32 { return uint32(s[i]) }

// --- logging, timers, contexts ---

// proxy_log(log_level, message_data, message_size)
func (vm *VM) proxyLog(_ context.Context, mod api.Module, s []uint64) uint32 {
	level, msgData, msgSize := arg(s, 0), arg(s, 1), arg(s, 2)
	if vm.cfg.Log != nil {
		vm.cfg.Log(int(level), vm.readString(mod, msgData, msgSize))
	}
	return statusOK
}

// proxy_set_tick_period_milliseconds(period)
func (vm *VM) proxySetTickPeriodMilliseconds(_ context.Context, _ api.Module, s []uint64) uint32 {
	vm.tickPeriod = time.Duration(arg(s, 0)) * time.Millisecond
	return statusOK
}

// proxy_set_effective_context(context_id)
func (vm *VM) proxySetEffectiveContext(_ context.Context, _ api.Module, s []uint64) uint32 {
	id := arg(s, 0)
	if id != vm.root && vm.streams[id] == nil {
		return statusBadArgument
	}
	vm.effective = id
	return statusOK
}

// proxy_done()
func (vm *VM) proxyDone(context.Context, api.Module, []uint64) uint32 { return statusOK }

// --- properties: filter state of the effective stream ---

// proxy_set_property(path_data, path_size, value_data, value_size)
func (vm *VM) proxySetProperty(_ context.Context, mod api.Module, s []uint64) uint32 {
	pathData, pathSize, valueData, valueSize := arg(s, 0), arg(s, 1), arg(s, 2), arg(s, 3)
	path := strings.ReplaceAll(vm.readString(mod, pathData, pathSize), "\x00", ".")
	st := vm.streams[vm.effective]
	if st == nil {
		return statusOK // root context: Envoy keeps no per-stream state for it
	}
	st.state[path] = vm.readString(mod, valueData, valueSize)
	return statusOK
}

// proxy_get_property(path_data, path_size, return_value_data, return_value_size)
func (vm *VM) proxyGetProperty(ctx context.Context, mod api.Module, s []uint64) uint32 {
	pathData, pathSize, retData, retSize := arg(s, 0), arg(s, 1), arg(s, 2), arg(s, 3)
	path := strings.ReplaceAll(vm.readString(mod, pathData, pathSize), "\x00", ".")
	if st := vm.streams[vm.effective]; st != nil {
		if v, ok := st.state[path]; ok {
			return vm.give(ctx, mod, []byte(v), retData, retSize)
		}
	}
	return statusNotFound
}

// proxy_send_local_response(status_code, details_data, details_size,
// body_data, body_size, headers_data, headers_size, grpc_status)
func (vm *VM) proxySendLocalResponse(_ context.Context, mod api.Module, s []uint64) uint32 {
	statusCode, detailsData, detailsSize := arg(s, 0), arg(s, 1), arg(s, 2)
	bodyData, bodySize, headersData, headersSize := arg(s, 3), arg(s, 4), arg(s, 5), arg(s, 6)
	st := vm.streams[vm.effective]
	if st == nil {
		return statusBadArgument
	}
	hs, ok := deserializeMap(vm.read(mod, headersData, headersSize))
	if !ok {
		return statusBadArgument
	}
	st.localReply = &LocalReply{Status: int(statusCode), Details: vm.readString(mod, detailsData, detailsSize),
		Body: vm.read(mod, bodyData, bodySize), Headers: hs}
	st.signal()
	return statusOK
}

// --- shared data, shared by every VM; shared queues are not emulated ---

// proxy_get_shared_data(key_data, key_size, return_value_data, return_value_size, return_cas)
func (vm *VM) proxyGetSharedData(ctx context.Context, mod api.Module, s []uint64) uint32 {
	keyData, keySize, retData, retSize, retCas := arg(s, 0), arg(s, 1), arg(s, 2), arg(s, 3), arg(s, 4)
	v, cas, ok := vm.cfg.SharedData.Get(vm.readString(mod, keyData, keySize))
	if !ok {
		return statusNotFound
	}
	if st := vm.give(ctx, mod, v, retData, retSize); st != statusOK {
		return st
	}
	mod.Memory().WriteUint32Le(retCas, cas)
	return statusOK
}

// proxy_set_shared_data(key_data, key_size, value_data, value_size, cas)
func (vm *VM) proxySetSharedData(_ context.Context, mod api.Module, s []uint64) uint32 {
	keyData, keySize, valueData, valueSize, cas := arg(s, 0), arg(s, 1), arg(s, 2), arg(s, 3), arg(s, 4)
	if !vm.cfg.SharedData.Set(vm.readString(mod, keyData, keySize), vm.read(mod, valueData, valueSize), cas) {
		return statusCasMismatch
	}
	return statusOK
}

// proxy_register_shared_queue(name_data, name_size, return_id)
func (vm *VM) proxyRegisterSharedQueue(context.Context, api.Module, []uint64) uint32 {
	return statusNotFound
}

// proxy_resolve_shared_queue(vm_id_data, vm_id_size, name_data, name_size, return_id)
func (vm *VM) proxyResolveSharedQueue(context.Context, api.Module, []uint64) uint32 {
	return statusNotFound
}

// proxy_dequeue_shared_queue(queue_id, return_value_data, return_value_size)
func (vm *VM) proxyDequeueSharedQueue(context.Context, api.Module, []uint64) uint32 {
	return statusNotFound
}

// proxy_enqueue_shared_queue(queue_id, value_data, value_size)
func (vm *VM) proxyEnqueueSharedQueue(context.Context, api.Module, []uint64) uint32 {
	return statusNotFound
}

// --- header maps ---

// proxy_get_header_map_value(map_type, key_data, key_size, return_value_data, return_value_size)
func (vm *VM) proxyGetHeaderMapValue(ctx context.Context, mod api.Module, s []uint64) uint32 {
	mapType, keyData, keySize, retData, retSize := arg(s, 0), arg(s, 1), arg(s, 2), arg(s, 3), arg(s, 4)
	m := vm.headerMap(mapType)
	if m == nil {
		return statusNotFound
	}
	key := strings.ToLower(vm.readString(mod, keyData, keySize))
	for _, kv := range *m {
		if kv[0] == key {
			return vm.give(ctx, mod, []byte(kv[1]), retData, retSize)
		}
	}
	return statusNotFound
}

// proxy_get_header_map_pairs(map_type, return_map_data, return_map_size)
func (vm *VM) proxyGetHeaderMapPairs(ctx context.Context, mod api.Module, s []uint64) uint32 {
	mapType, retData, retSize := arg(s, 0), arg(s, 1), arg(s, 2)
	m := vm.headerMap(mapType)
	if m == nil {
		return statusNotFound
	}
	return vm.give(ctx, mod, serializeMap(*m), retData, retSize)
}

// proxy_add_header_map_value(map_type, key_data, key_size, value_data, value_size)
func (vm *VM) proxyAddHeaderMapValue(_ context.Context, mod api.Module, s []uint64) uint32 {
	return vm.editHeaderMap(mod, s, true, func(m *[][2]string, k, v string) { *m = append(*m, [2]string{k, v}) })
}

// proxy_replace_header_map_value(map_type, key_data, key_size, value_data, value_size)
func (vm *VM) proxyReplaceHeaderMapValue(_ context.Context, mod api.Module, s []uint64) uint32 {
	return vm.editHeaderMap(mod, s, true, func(m *[][2]string, k, v string) { *m = append(removeKey(*m, k), [2]string{k, v}) })
}

// proxy_remove_header_map_value(map_type, key_data, key_size)
func (vm *VM) proxyRemoveHeaderMapValue(_ context.Context, mod api.Module, s []uint64) uint32 {
	return vm.editHeaderMap(mod, s, false, func(m *[][2]string, k, _ string) { *m = removeKey(*m, k) })
}

// editHeaderMap is the common part of the add, replace and remove calls:
// (map_type, key_data, key_size[, value_data, value_size]). The key is
// lower-cased, as Envoy's header maps are.
func (vm *VM) editHeaderMap(mod api.Module, s []uint64, hasValue bool, edit func(m *[][2]string, key, value string)) uint32 {
	mapType, keyData, keySize := arg(s, 0), arg(s, 1), arg(s, 2)
	if !vm.headersWritable(mapType) {
		return statusBadArgument
	}
	m := vm.headerMap(mapType)
	if m == nil {
		return statusNotFound
	}
	key := strings.ToLower(vm.readString(mod, keyData, keySize))
	value := ""
	if hasValue {
		value = vm.readString(mod, arg(s, 3), arg(s, 4))
	}
	edit(m, key, value)
	return statusOK
}

// proxy_set_header_map_pairs(map_type, map_data, map_size)
func (vm *VM) proxySetHeaderMapPairs(_ context.Context, mod api.Module, s []uint64) uint32 {
	mapType, mapData, mapSize := arg(s, 0), arg(s, 1), arg(s, 2)
	if !vm.headersWritable(mapType) {
		return statusBadArgument
	}
	m := vm.headerMap(mapType)
	hs, ok := deserializeMap(vm.read(mod, mapData, mapSize))
	if m == nil || !ok {
		return statusBadArgument
	}
	for i := range hs {
		hs[i][0] = strings.ToLower(hs[i][0])
	}
	*m = hs
	return statusOK
}

// --- buffers ---

// proxy_get_buffer_bytes(buffer_type, start, max_size, return_buffer_data, return_buffer_size)
func (vm *VM) proxyGetBufferBytes(ctx context.Context, mod api.Module, s []uint64) uint32 {
	bufferType, retData, retSize := arg(s, 0), arg(s, 3), arg(s, 4)
	buf, ok := vm.buffer(bufferType)
	if !ok {
		return statusNotFound
	}
	start, size := int(arg(s, 1)), int(arg(s, 2))
	if start > len(*buf) {
		return statusBadArgument
	}
	end := len(*buf)
	if size < end-start {
		end = start + size
	}
	return vm.give(ctx, mod, (*buf)[start:end], retData, retSize)
}

// proxy_set_buffer_bytes(buffer_type, start, size, buffer_data, buffer_size)
func (vm *VM) proxySetBufferBytes(_ context.Context, mod api.Module, s []uint64) uint32 {
	bufferType, bufferData, bufferSize := arg(s, 0), arg(s, 3), arg(s, 4)
	buf, ok := vm.buffer(bufferType)
	if !ok || bufferType > bufResponseBody {
		return statusBadArgument
	}
	start, size := int(arg(s, 1)), int(arg(s, 2))
	data := vm.read(mod, bufferData, bufferSize)
	switch {
	case start == 0 && size == 0: // prepend
		*buf = append(data, *buf...)
	case start == 0 && size >= len(*buf): // replace
		*buf = data
	case start >= len(*buf): // append
		*buf = append(*buf, data...)
	default:
		return statusBadArgument
	}
	return statusOK
}

// --- stream control ---

// proxy_continue_stream(stream_type): 0 is the request, anything else the response.
func (vm *VM) proxyContinueStream(_ context.Context, _ api.Module, s []uint64) uint32 {
	st := vm.streams[vm.effective]
	if st == nil {
		return statusBadArgument
	}
	if arg(s, 0) == 0 {
		st.resumeRequest()
	} else {
		st.resumeResponse()
	}
	return statusOK
}

// proxy_close_stream(stream_type): either direction resets the stream.
func (vm *VM) proxyCloseStream(context.Context, api.Module, []uint64) uint32 {
	if st := vm.streams[vm.effective]; st != nil {
		st.reset = true
		st.signal()
	}
	return statusOK
}

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

// --- metrics ---

// proxy_define_metric(metric_type, name_data, name_size, return_metric_id).
// The same name defined twice gets the same id.
func (vm *VM) proxyDefineMetric(_ context.Context, mod api.Module, s []uint64) uint32 {
	metricType, nameData, nameSize, retMetricID := arg(s, 0), arg(s, 1), arg(s, 2), arg(s, 3)
	idx := vm.cfg.Stats.Define(MetricType(metricType), vm.readString(mod, nameData, nameSize))
	if idx < 0 {
		return statusBadArgument
	}
	id := uint32(len(vm.metricIDs))
	for gid, i := range vm.metricIDs {
		if i == idx {
			id = gid
		}
	}
	vm.metricIDs[id] = idx
	mod.Memory().WriteUint32Le(retMetricID, id)
	return statusOK
}

// proxy_increment_metric(metric_id, offset i64)
func (vm *VM) proxyIncrementMetric(_ context.Context, _ api.Module, s []uint64) uint32 {
	idx, ok := vm.metricIDs[arg(s, 0)]
	if !ok || !vm.cfg.Stats.Add(idx, int64(s[1])) {
		return statusBadArgument
	}
	return statusOK
}

// proxy_record_metric(metric_id, value i64)
func (vm *VM) proxyRecordMetric(_ context.Context, _ api.Module, s []uint64) uint32 {
	idx, ok := vm.metricIDs[arg(s, 0)]
	if !ok || !vm.cfg.Stats.Record(idx, s[1]) {
		return statusBadArgument
	}
	return statusOK
}

// proxy_get_metric(metric_id, return_value)
func (vm *VM) proxyGetMetric(_ context.Context, mod api.Module, s []uint64) uint32 {
	idx, ok := vm.metricIDs[arg(s, 0)]
	if !ok {
		return statusNotFound
	}
	mod.Memory().WriteUint64Le(arg(s, 1), vm.cfg.Stats.Value(idx))
	return statusOK
}

func removeKey(m [][2]string, k string) [][2]string {
	out := m[:0]
	for _, kv := range m {
		if kv[0] != k {
			out = append(out, kv)
		}
	}
	return out
}

func hasKey(m [][2]string, k string) bool {
	for _, kv := range m {
		if kv[0] == k && kv[1] != "" {
			return true
		}
	}
	return false
}

// headerMap returns the map of the effective stream (or of the current
// call response).
func (vm *VM) headerMap(t uint32) *[][2]string {
	switch t {
	case mapCallResponseHeaders:
		if vm.callResp != nil {
			return &vm.callResp.Headers
		}
		return nil
	case mapCallResponseTrailers:
		return &[][2]string{}
	}
	st := vm.streams[vm.effective]
	if st == nil {
		return nil
	}
	switch t {
	case mapRequestHeaders:
		return &st.ReqHeaders
	case mapRequestTrailers:
		return &st.reqTrailers
	case mapResponseHeaders:
		return &st.RespHeaders
	case mapResponseTrailers:
		return &st.respTrailers
	}
	return nil
}

// headersWritable: request headers that went upstream are final.
func (vm *VM) headersWritable(t uint32) bool {
	st := vm.streams[vm.effective]
	if st == nil {
		return false
	}
	switch t {
	case mapRequestHeaders:
		return !st.reqHeadersSent
	case mapResponseHeaders:
		return !st.respHeadersSent
	}
	return true
}

func (vm *VM) buffer(t uint32) (*[]byte, bool) {
	switch t {
	case bufPluginConfig:
		b := vm.cfg.PluginConfig
		return &b, true
	case bufVMConfiguration:
		return &[]byte{}, true
	case bufCallResponseBody:
		if vm.callResp == nil {
			return nil, false
		}
		return &vm.callResp.Body, true
	}
	st := vm.streams[vm.effective]
	if st == nil {
		return nil, false
	}
	switch t {
	case bufRequestBody:
		return &st.reqBuf, true
	case bufResponseBody:
		return &st.respBuf, true
	}
	return nil, false
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
