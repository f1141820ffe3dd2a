package wasmhost

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"
)

// A VM fails the way proxy-wasm-cpp-host's WasmBase does. The first call into
// the guest that traps (wazero returns an error: unreachable, a Go panic or
// fatal error leaving through proc_exit, ...) marks the whole VM failed
// (FailState::RuntimeError, src/wasm.cc), and the host never enters it again:
// every ContextBase callback checks isFailed() before calling the guest
// (src/context.cc: CHECK_FAIL in the stream callbacks, onTick, onLog,
// onDone, onDelete, onHttpCallResponse). What the proxy then does with the
// stream and with later streams is its failure policy; package gateway
// models Envoy's.

// ErrFailed is wrapped by every error from a call into a failed VM.
var ErrFailed = errors.New("wasmhost: VM failed")

// failure is a VM's health.
type failure struct {
	// err is the trap that failed the VM, nil while healthy; atomic so that
	// a proxy can ask without waiting for a running callback.
	err    atomic.Pointer[error]
	trapAt string // test hook: the export whose next call traps; mu guards it
}

// Failed returns the trap that failed the VM, or nil while it is healthy.
func (vm *VM) Failed() error {
	if p := vm.fail.err.Load(); p != nil {
		return *p
	}
	return nil
}

// TrapAt makes the next call into the named guest export (for example
// "proxy_on_request_body", "proxy_on_http_call_response" or "proxy_on_tick")
// trap instead of running, so tests can fail a VM at a chosen callback
// without a hostile input. The VM then fails exactly as after a real trap.
func (vm *VM) TrapAt(export string) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.fail.trapAt = export
}

// errInjectedTrap is the trap TrapAt delivers.
var errInjectedTrap = errors.New("wasm error: unreachable (injected by TrapAt)")

// enter is called with mu held before every call into the guest: an error
// means the guest is not entered.
func (vm *VM) enter(fn api.Function) error {
	if err := vm.Failed(); err != nil {
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	if vm.fail.trapAt != "" && slices.Contains(fn.Definition().ExportNames(), vm.fail.trapAt) {
		vm.fail.trapAt = ""
		return vm.failWith(fmt.Errorf("wasmhost: guest trapped: %w", errInjectedTrap))
	}
	return nil
}

// failWith records the trap that failed the VM (the first one counts) and
// returns err; mu must be held.
func (vm *VM) failWith(err error) error {
	vm.fail.err.CompareAndSwap(nil, &err)
	return err
}
