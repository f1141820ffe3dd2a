// Package wasmvm reaches into the SDK's proxytest wasm VM (wazero; the SDK asks
// for v1.7.2, go.mod raises it to the version the project tests) for the two things proxytest does not expose and a long
// run needs: the guest's proxy_on_delete, and the size of its linear memory.
//
// proxytest's wasm wrapper calls proxy_on_log when a stream completes but
// never proxy_on_delete, so the guest SDK keeps every HTTP context it ever
// created: an emulator artifact (Envoy deletes every context), which would
// look like a leak of one context per request. Hosts that run many requests
// call DeleteContext after CompleteHttpContext.
//
// A second artifact every user of proxytest's wasm mode must know: the
// emulator keeps pointers into the guest's linear memory instead of copying
// what the guest passes (metric names, filter-state keys and values, header
// values the guest sets, local-reply bodies, HTTP-call targets and bodies,
// replaced body buffers). Once the guest frees and reuses that memory the
// host's copy changes under it. Hosts therefore copy everything right after
// the callback that produced it, before the guest runs again.
//
// Access goes through reflection on unexported fields; if proxytest or
// wazero change shape these functions return errors, never wrong answers.
//
// It is test support (see package testsupport): product tests such as
// filter/harness_test.go import it; product code must not.
package wasmvm

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/tetratelabs/wazero/api"
)

// Module returns the guest module of a VM made by proxytest.NewWasmVMContext.
func Module(vm any) (api.Module, error) {
	v := reflect.ValueOf(vm)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("wasmvm: %T is not a proxytest wasm VM", vm)
	}
	fn := v.Elem().FieldByName("abi")
	if !fn.IsValid() {
		return nil, errors.New("wasmvm: proxytest internals changed (no abi)")
	}
	fn = fn.FieldByName("proxyOnVMStart")
	if !fn.IsValid() || fn.IsNil() {
		return nil, errors.New("wasmvm: proxytest internals changed (no proxyOnVMStart)")
	}
	engine := fn.Elem()
	for _, step := range []string{"parent", "module"} {
		if engine.Kind() == reflect.Pointer || engine.Kind() == reflect.Interface {
			engine = engine.Elem()
		}
		if engine.Kind() != reflect.Struct {
			return nil, fmt.Errorf("wasmvm: wazero internals changed at %q", step)
		}
		engine = engine.FieldByName(step)
		if !engine.IsValid() {
			return nil, fmt.Errorf("wasmvm: wazero internals changed at %q", step)
		}
	}
	if !engine.CanAddr() {
		return nil, errors.New("wasmvm: wazero module is not addressable")
	}
	mod, ok := reflect.NewAt(engine.Type(), unsafe.Pointer(engine.UnsafeAddr())).Elem().Interface().(api.Module)
	if !ok || mod == nil {
		return nil, errors.New("wasmvm: wazero module does not implement api.Module")
	}
	return mod, nil
}

// DeleteContext calls the guest's proxy_on_delete for contextID.
func DeleteContext(mod api.Module, contextID uint32) error {
	f := mod.ExportedFunction("proxy_on_delete")
	if f == nil {
		return errors.New("wasmvm: guest exports no proxy_on_delete")
	}
	_, err := f.Call(context.Background(), uint64(contextID))
	return err
}

// MemoryBytes is the guest's linear memory size.
func MemoryBytes(mod api.Module) int {
	return int(mod.Memory().Size())
}
