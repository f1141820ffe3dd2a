package wasmhost

import (
	"context"
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
