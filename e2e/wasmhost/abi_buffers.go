package wasmhost

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

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
