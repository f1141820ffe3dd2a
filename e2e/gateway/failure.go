package gateway

// What Envoy does when the Wasm filter's VM fails (a trap: FailState::
// RuntimeError), with the sources this follows:
//
//   - The VM is failed for good; the host never calls into it again
//     (proxy-wasm-cpp-host src/context.cc: every callback checks isFailed();
//     package wasmhost reproduces that).
//   - The stream whose callback trapped, and every other stream of that VM at
//     its next callback, is failed by Context::failStream
//     (source/extensions/common/wasm/context.cc): sendLocalReply(503, "",
//     details "wasm_fail_stream"). Once response headers have gone
//     downstream a local reply can only reset the stream (FilterManager::
//     sendLocalReply, source/common/http/filter_manager.cc: "Prior headers
//     have already been sent"). This holds under every failure_policy: the
//     stream continues only with the deprecated fail_open, because CHECK_FAIL
//     reads PluginBase::fail_open_, which Envoy fills from fail_open alone
//     (envoy test/extensions/common/wasm/wasm_test.cc, PluginConfigTest
//     FailOpenPolicy expects the 503 with failure_policy FAIL_OPEN).
//   - A callout answer for a failed VM is dropped (ContextBase::
//     onHttpCallResponse returns when isFailed(), and a trap inside it fails
//     no stream), so a request the filter paused for a pick stays paused
//     until the HCM's stream_idle_timeout ends it (408, flag SI).
//   - A new stream on that worker (PluginConfig::createContext,
//     source/extensions/common/wasm/wasm.cc) follows failure_policy:
//     FAIL_OPEN skips the filter (the chain continues to the router),
//     FAIL_CLOSED gets an empty context that fails the stream with 503, and
//     FAIL_RELOAD first tries a new VM (maybeReloadHandleIfNeeded): at most
//     once per backoff, a random interval in [base, 1.5 base)
//     (JitteredLowerBoundBackOffStrategy, source/common/common/
//     backoff_strategy.cc) since the worker's last load, counting
//     wasm.<name>.vm_reload_backoff, vm_reload_success or vm_reload_failure;
//     while no new VM is up it fails closed. Envoy added FAIL_RELOAD in 1.33
//     (envoy PR #36456).

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	wasmpluginv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"

	"github.com/meshllm/meshllm/e2e/wasmhost"
)

// Response details Envoy logs (%RESPONSE_CODE_DETAILS%) on these paths.
const (
	detailsWasmFail    = "wasm_fail_stream"
	detailsIdleTimeout = "stream_idle_timeout"
)

// worker is one Envoy worker thread's plugin handle: its VM and when it was
// last loaded (the reload backoff counts from there).
type worker struct {
	mu     sync.Mutex
	vm     *wasmhost.VM
	loaded time.Time
}

func (w *worker) current() *wasmhost.VM {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.vm
}

// reloadStats are Envoy's wasm.<name>.vm_reload_* counters of one plugin.
type reloadStats struct {
	backoff, success, failure atomic.Uint64
}

// filterVM is createContext: the VM a new stream runs on, or nil when the
// filter is left out of this stream's chain (FAIL_OPEN on a failed VM).
// failed reports that the VM is failed (the stream then gets 503).
func (l *listener) filterVM() (vm *wasmhost.VM, failed bool) {
	w := l.workers[int(l.nextWorker.Add(1)-1)%len(l.workers)]
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.vm.Failed() != nil && l.spec.Wasm.FailurePolicy == wasmpluginv3.FailurePolicy_FAIL_RELOAD {
		l.maybeReload(w)
	}
	if w.vm.Failed() == nil {
		return w.vm, false
	}
	if l.spec.Wasm.FailurePolicy == wasmpluginv3.FailurePolicy_FAIL_OPEN {
		return nil, false
	}
	return w.vm, true
}

// maybeReload replaces a failed VM with a new one unless the backoff since
// the worker's last load has not passed; w.mu is held.
func (l *listener) maybeReload(w *worker) {
	base := l.spec.Wasm.ReloadBackoff
	interval := base
	if half := int64(base / 2); half > 0 {
		interval += time.Duration(rand.Int64N(half))
	}
	now := l.g.now()
	if now.Sub(w.loaded) < interval {
		l.reloads.backoff.Add(1)
		return
	}
	w.loaded = now
	vm, err := wasmhost.New(l.g.ctx, l.vmConfig)
	if err != nil {
		l.reloads.failure.Add(1)
		l.g.log.Printf("listener %s: wasm reload failed: %v", l.spec.Name, err)
		return
	}
	l.reloads.success.Add(1)
	old := w.vm
	w.vm = vm
	// Streams still on the old VM fail at their next callback either way.
	_ = old.Close()
}

// failStream answers a stream whose VM failed: 503 if nothing has gone
// downstream yet.
func (l *listener) failStream(w http.ResponseWriter, ex *exchange, err error) {
	l.g.log.Printf("listener %s: wasm VM failed: %v", l.spec.Name, err)
	ex.details = detailsWasmFail
	l.g.localReply(w, ex, http.StatusServiceUnavailable, "")
}

// resetStream is failStream once response headers are out: the stream is
// reset, which net/http does by aborting the handler (the client sees the
// connection close mid-response). Envoy has sent the headers on by then; here
// they may still sit in the response buffer, so they are flushed first. The
// access log is still written.
func (l *listener) resetStream(w http.ResponseWriter, ex *exchange, err error) {
	l.g.log.Printf("listener %s: wasm VM failed mid-response, resetting the stream: %v", l.spec.Name, err)
	ex.details = detailsWasmFail
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}
