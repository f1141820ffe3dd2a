package wasmhost

import (
	"context"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// exportABI defines the "env" host functions the guest imports.
func (vm *VM) exportABI(ctx context.Context) error {
	b := vm.rt.NewHostModuleBuilder("env")
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	def := func(name string, params []api.ValueType, fn func(ctx context.Context, mod api.Module, s []uint64) uint32) {
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			stack[0] = uint64(fn(ctx, mod, stack))
		}), params, []api.ValueType{i32}).Export(name)
	}
	n := func(k int) []api.ValueType {
		p := make([]api.ValueType, k)
		for i := range p {
			p[i] = i32
		}
		return p
	}
	u := func(s []uint64, i int) uint32 { return uint32(s[i]) }

	def("proxy_log", n(3), func(_ context.Context, mod api.Module, s []uint64) uint32 {
		if vm.cfg.Log != nil {
			vm.cfg.Log(int(u(s, 0)), vm.readString(mod, u(s, 1), u(s, 2)))
		}
		return statusOK
	})
	def("proxy_set_tick_period_milliseconds", n(1), func(_ context.Context, _ api.Module, s []uint64) uint32 {
		vm.tickPeriod = time.Duration(u(s, 0)) * time.Millisecond
		return statusOK
	})
	def("proxy_set_effective_context", n(1), func(_ context.Context, _ api.Module, s []uint64) uint32 {
		id := u(s, 0)
		if id != vm.root && vm.streams[id] == nil {
			return statusBadArgument
		}
		vm.effective = id
		return statusOK
	})
	def("proxy_done", nil, func(context.Context, api.Module, []uint64) uint32 { return statusOK })

	// Properties: filter state of the effective stream.
	def("proxy_set_property", n(4), func(_ context.Context, mod api.Module, s []uint64) uint32 {
		path := strings.ReplaceAll(vm.readString(mod, u(s, 0), u(s, 1)), "\x00", ".")
		st := vm.streams[vm.effective]
		if st == nil {
			return statusOK // root context: Envoy keeps no per-stream state for it
		}
		st.state[path] = vm.readString(mod, u(s, 2), u(s, 3))
		return statusOK
	})
	def("proxy_get_property", n(4), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		path := strings.ReplaceAll(vm.readString(mod, u(s, 0), u(s, 1)), "\x00", ".")
		if st := vm.streams[vm.effective]; st != nil {
			if v, ok := st.state[path]; ok {
				return vm.give(ctx, mod, []byte(v), u(s, 2), u(s, 3))
			}
		}
		return statusNotFound
	})

	def("proxy_send_local_response", n(8), func(_ context.Context, mod api.Module, s []uint64) uint32 {
		st := vm.streams[vm.effective]
		if st == nil {
			return statusBadArgument
		}
		hs, ok := deserializeMap(vm.read(mod, u(s, 5), u(s, 6)))
		if !ok {
			return statusBadArgument
		}
		st.localReply = &LocalReply{Status: int(u(s, 0)), Details: vm.readString(mod, u(s, 1), u(s, 2)),
			Body: vm.read(mod, u(s, 3), u(s, 4)), Headers: hs}
		st.signal()
		return statusOK
	})

	// Shared data, shared by every VM.
	def("proxy_get_shared_data", n(5), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		v, cas, ok := vm.cfg.SharedData.Get(vm.readString(mod, u(s, 0), u(s, 1)))
		if !ok {
			return statusNotFound
		}
		if st := vm.give(ctx, mod, v, u(s, 2), u(s, 3)); st != statusOK {
			return st
		}
		mod.Memory().WriteUint32Le(u(s, 4), cas)
		return statusOK
	})
	def("proxy_set_shared_data", n(5), func(_ context.Context, mod api.Module, s []uint64) uint32 {
		if !vm.cfg.SharedData.Set(vm.readString(mod, u(s, 0), u(s, 1)), vm.read(mod, u(s, 2), u(s, 3)), u(s, 4)) {
			return statusCasMismatch
		}
		return statusOK
	})
	for _, name := range []string{"proxy_register_shared_queue", "proxy_resolve_shared_queue", "proxy_dequeue_shared_queue", "proxy_enqueue_shared_queue"} {
		k := 3
		if name == "proxy_resolve_shared_queue" {
			k = 5
		}
		def(name, n(k), func(context.Context, api.Module, []uint64) uint32 { return statusNotFound })
	}

	// Header maps.
	def("proxy_get_header_map_value", n(5), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		m := vm.headerMap(u(s, 0))
		if m == nil {
			return statusNotFound
		}
		key := strings.ToLower(vm.readString(mod, u(s, 1), u(s, 2)))
		for _, kv := range *m {
			if kv[0] == key {
				return vm.give(ctx, mod, []byte(kv[1]), u(s, 3), u(s, 4))
			}
		}
		return statusNotFound
	})
	def("proxy_get_header_map_pairs", n(3), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		m := vm.headerMap(u(s, 0))
		if m == nil {
			return statusNotFound
		}
		return vm.give(ctx, mod, serializeMap(*m), u(s, 1), u(s, 2))
	})
	edit := func(name string, k int, fn func(m *[][2]string, key, value string)) {
		def(name, n(k), func(_ context.Context, mod api.Module, s []uint64) uint32 {
			if !vm.headersWritable(u(s, 0)) {
				return statusBadArgument
			}
			m := vm.headerMap(u(s, 0))
			if m == nil {
				return statusNotFound
			}
			key := strings.ToLower(vm.readString(mod, u(s, 1), u(s, 2)))
			value := ""
			if k == 5 {
				value = vm.readString(mod, u(s, 3), u(s, 4))
			}
			fn(m, key, value)
			return statusOK
		})
	}
	edit("proxy_add_header_map_value", 5, func(m *[][2]string, k, v string) { *m = append(*m, [2]string{k, v}) })
	edit("proxy_replace_header_map_value", 5, func(m *[][2]string, k, v string) { *m = append(removeKey(*m, k), [2]string{k, v}) })
	edit("proxy_remove_header_map_value", 3, func(m *[][2]string, k, _ string) { *m = removeKey(*m, k) })
	def("proxy_set_header_map_pairs", n(3), func(_ context.Context, mod api.Module, s []uint64) uint32 {
		if !vm.headersWritable(u(s, 0)) {
			return statusBadArgument
		}
		m := vm.headerMap(u(s, 0))
		hs, ok := deserializeMap(vm.read(mod, u(s, 1), u(s, 2)))
		if m == nil || !ok {
			return statusBadArgument
		}
		for i := range hs {
			hs[i][0] = strings.ToLower(hs[i][0])
		}
		*m = hs
		return statusOK
	})

	// Buffers.
	def("proxy_get_buffer_bytes", n(5), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		buf, ok := vm.buffer(u(s, 0))
		if !ok {
			return statusNotFound
		}
		start, size := int(u(s, 1)), int(u(s, 2))
		if start > len(*buf) {
			return statusBadArgument
		}
		end := len(*buf)
		if size < end-start {
			end = start + size
		}
		return vm.give(ctx, mod, (*buf)[start:end], u(s, 3), u(s, 4))
	})
	def("proxy_set_buffer_bytes", n(5), func(_ context.Context, mod api.Module, s []uint64) uint32 {
		buf, ok := vm.buffer(u(s, 0))
		if !ok || u(s, 0) > bufResponseBody {
			return statusBadArgument
		}
		start, size := int(u(s, 1)), int(u(s, 2))
		data := vm.read(mod, u(s, 3), u(s, 4))
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
	})

	def("proxy_continue_stream", n(1), func(_ context.Context, _ api.Module, s []uint64) uint32 {
		st := vm.streams[vm.effective]
		if st == nil {
			return statusBadArgument
		}
		if u(s, 0) == 0 {
			st.resumeRequest()
		} else {
			st.resumeResponse()
		}
		return statusOK
	})
	def("proxy_close_stream", n(1), func(_ context.Context, _ api.Module, s []uint64) uint32 {
		if st := vm.streams[vm.effective]; st != nil {
			st.reset = true
			st.signal()
		}
		return statusOK
	})

	def("proxy_http_call", n(10), func(_ context.Context, mod api.Module, s []uint64) uint32 {
		cluster := vm.readString(mod, u(s, 0), u(s, 1))
		hs, ok := deserializeMap(vm.read(mod, u(s, 2), u(s, 3)))
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
		mod.Memory().WriteUint32Le(u(s, 9), id)
		vm.callouts[id] = &callout{stream: vm.effective}
		req := CallRequest{Cluster: cluster, Headers: hs, Body: vm.read(mod, u(s, 4), u(s, 5)),
			Timeout: time.Duration(u(s, 8)) * time.Millisecond}
		go vm.runCall(id, req)
		return statusOK
	})

	def("proxy_call_foreign_function", n(6), func(ctx context.Context, mod api.Module, s []uint64) uint32 {
		f := vm.cfg.ForeignFunctions[vm.readString(mod, u(s, 0), u(s, 1))]
		if f == nil {
			return statusNotFound
		}
		return vm.give(ctx, mod, f(vm.read(mod, u(s, 2), u(s, 3))), u(s, 4), u(s, 5))
	})

	// Metrics.
	def("proxy_define_metric", n(4), func(_ context.Context, mod api.Module, s []uint64) uint32 {
		idx := vm.cfg.Stats.Define(MetricType(u(s, 0)), vm.readString(mod, u(s, 1), u(s, 2)))
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
		mod.Memory().WriteUint32Le(u(s, 3), id)
		return statusOK
	})
	def("proxy_increment_metric", []api.ValueType{i32, i64}, func(_ context.Context, _ api.Module, s []uint64) uint32 {
		idx, ok := vm.metricIDs[u(s, 0)]
		if !ok || !vm.cfg.Stats.Add(idx, int64(s[1])) {
			return statusBadArgument
		}
		return statusOK
	})
	def("proxy_record_metric", []api.ValueType{i32, i64}, func(_ context.Context, _ api.Module, s []uint64) uint32 {
		idx, ok := vm.metricIDs[u(s, 0)]
		if !ok || !vm.cfg.Stats.Record(idx, s[1]) {
			return statusBadArgument
		}
		return statusOK
	})
	def("proxy_get_metric", n(2), func(_ context.Context, mod api.Module, s []uint64) uint32 {
		idx, ok := vm.metricIDs[u(s, 0)]
		if !ok {
			return statusNotFound
		}
		mod.Memory().WriteUint64Le(u(s, 1), vm.cfg.Stats.Value(idx))
		return statusOK
	})
	_, err := b.Instantiate(ctx)
	return err
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
