package wasmhost

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

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
