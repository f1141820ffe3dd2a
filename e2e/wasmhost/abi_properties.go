package wasmhost

import (
	"context"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

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
