package wasmhost

import (
	"context"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

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
