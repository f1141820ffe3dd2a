// Package wasmhost is a proxy-wasm host for tests and demos: it runs a
// compiled filter (such as wasm/meshllm.wasm) on wazero and implements the
// ABI the way Envoy does where the filter depends on it. It is NOT a
// production host: production runs Envoy or Istio.
//
// Why not the SDK's proxytest: proxytest's wasm mode keeps pointers into the
// guest's memory instead of copying (names, filter state, headers the guest
// sets), never calls proxy_on_delete, keeps filter state globally rather than
// per stream, accepts any DispatchHttpCall and keeps only the last value of a
// histogram. A gateway that runs thousands of requests needs none of that.
//
// Envoy behaviours reproduced here, with their sources:
//   - A request-headers callback that returns Pause stops the stream, and
//     Envoy delivers no body callback until the filter resumes, unless the
//     plugin sets allow_on_headers_stop_iteration (proxy-wasm-cpp-host
//     src/context.cc turns StopIteration into StopAllIterationAndWatermark;
//     cpp-host PR #434, Envoy PR #40213, Envoy >= 1.35). Stream implements
//     it; the proxy (package gateway) obeys it.
//   - A body callback that returns Pause makes Envoy buffer the data: the
//     next callback sees everything buffered so far (bodySize is the total),
//     and a Continue releases the (possibly replaced) buffer.
//   - DispatchHttpCall to a cluster Envoy does not know, or without :method,
//     :path and :authority, returns BadArgument (Envoy
//     source/extensions/common/wasm/context.cc, Context::httpCall). A call
//     that fails or times out is answered with zero headers.
//   - Once request headers have gone upstream they can no longer change:
//     header-map writes then return BadArgument.
//   - proxy_set_property writes per-stream filter state (wasm.<key>).
//   - Metrics are process-wide: the same name defined by two VMs is one stat.
package wasmhost

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// ABI status codes.
const (
	statusOK          = 0
	statusNotFound    = 1
	statusBadArgument = 2
	statusEmpty       = 7
	statusCasMismatch = 8
)

// Actions returned by stream callbacks.
type Action uint32

// Actions.
const (
	Continue Action = 0
	Pause    Action = 1
)

// Map and buffer types of the ABI.
const (
	mapRequestHeaders       = 0
	mapRequestTrailers      = 1
	mapResponseHeaders      = 2
	mapResponseTrailers     = 3
	mapCallResponseHeaders  = 6
	mapCallResponseTrailers = 7

	bufRequestBody      = 0
	bufResponseBody     = 1
	bufCallResponseBody = 4
	bufVMConfiguration  = 6
	bufPluginConfig     = 7
)

// CallRequest is an HTTP call the guest dispatched.
type CallRequest struct {
	Cluster string
	Headers [][2]string
	Body    []byte
	Timeout time.Duration // 0: none
}

// CallResponse answers a CallRequest; nil Headers means the call failed.
type CallResponse struct {
	Headers [][2]string
	Body    []byte
}

// Config configures one VM (one Envoy worker thread).
type Config struct {
	Wasm         []byte
	PluginConfig []byte
	// AllowOnHeadersStopIteration is the Wasm filter's PluginConfig flag.
	AllowOnHeadersStopIteration bool
	// Clusters Envoy knows; DispatchHttpCall to any other is BadArgument.
	Clusters map[string]bool
	// Call performs a dispatched call (in its own goroutine). It must return.
	Call func(CallRequest) CallResponse
	// ForeignFunctions the host provides (Envoy has clear_route_cache).
	ForeignFunctions map[string]func([]byte) []byte
	// Shared between VMs, like Envoy's process-wide stats and shared data.
	Stats      *Stats
	SharedData *SharedData
	// Log receives the guest's log lines.
	Log func(level int, msg string)
	// Cache shares compiled code between VMs.
	Cache wazero.CompilationCache
	// Engine runs the guest: EngineCompiler or EngineInterpreter. Empty
	// reads $MESHLLM_WASM_ENGINE, and without it wazero's default (the
	// compiler where wazero has one: amd64, arm64). Engine bugs
	// are CPU-dependent (wazero v1.7.2's compiler corrupted the guest heap
	// on one CPU only), so the suites can run under both.
	Engine string
	// ModuleConfig, if set, adjusts the guest's module config (tests give
	// two VMs the same clock and random source to compare them).
	ModuleConfig func(wazero.ModuleConfig) wazero.ModuleConfig
	// ManualTicks: the host never ticks; the caller calls Tick (so that a
	// test's run does not depend on timing).
	ManualTicks bool
}

// Engines, and the variable that chooses one when Config.Engine is empty.
const (
	EngineCompiler    = "compiler"
	EngineInterpreter = "interpreter"
	EngineEnv         = "MESHLLM_WASM_ENGINE"
)

// runtimeConfig is the wazero configuration for an engine name.
func runtimeConfig(engine string) (wazero.RuntimeConfig, error) {
	if engine == "" {
		engine = os.Getenv(EngineEnv)
	}
	switch engine {
	case "":
		return wazero.NewRuntimeConfig(), nil
	case EngineCompiler:
		return wazero.NewRuntimeConfigCompiler(), nil
	case EngineInterpreter:
		return wazero.NewRuntimeConfigInterpreter(), nil
	}
	return nil, fmt.Errorf("wasmhost: unknown engine %q (%s: %s or %s)", engine, EngineEnv, EngineCompiler, EngineInterpreter)
}

// VM is one instance of the filter. Every call into the guest holds mu:
// callbacks are serialised, as on an Envoy worker thread.
type VM struct {
	cfg  Config
	mu   sync.Mutex
	rt   wazero.Runtime
	mod  api.Module
	ctx  context.Context
	root uint32

	nextID    uint32
	effective uint32
	streams   map[uint32]*Stream
	metricIDs map[uint32]int // guest metric id -> Stats index

	tickPeriod time.Duration
	tickStop   chan struct{}
	tickDone   chan struct{}

	callouts map[uint32]*callout
	nextCall uint32
	// current callout response, while proxy_on_http_call_response runs
	callResp *CallResponse

	closed bool
	fail   failure // see fail.go
	fns    guestFns
}

type callout struct {
	stream uint32
}

type guestFns struct {
	alloc, contextCreate, vmStart, configure, tick, done, del, log api.Function
	reqHeaders, reqBody, reqTrailers, respHeaders, respBody        api.Function
	callResponse                                                   api.Function
}

// ErrClosed is returned by streams of a closed VM.
var ErrClosed = errors.New("wasmhost: VM closed")

// New instantiates the filter and starts the plugin. A plugin whose start
// fails (a bad pluginConfig) is an error carrying the guest's logs.
func New(ctx context.Context, cfg Config) (*VM, error) {
	if cfg.Stats == nil {
		cfg.Stats = NewStats()
	}
	if cfg.SharedData == nil {
		cfg.SharedData = NewSharedData()
	}
	rc, err := runtimeConfig(cfg.Engine)
	if err != nil {
		return nil, err
	}
	if cfg.Cache != nil {
		rc = rc.WithCompilationCache(cfg.Cache)
	}
	vm := &VM{
		cfg: cfg, ctx: ctx, rt: wazero.NewRuntimeWithConfig(ctx, rc), root: 1, nextID: 1,
		streams: map[uint32]*Stream{}, metricIDs: map[uint32]int{}, callouts: map[uint32]*callout{},
	}
	var startLogs []string
	userLog := cfg.Log
	vm.cfg.Log = func(level int, msg string) {
		startLogs = append(startLogs, msg)
		if userLog != nil {
			userLog(level, msg)
		}
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, vm.rt); err != nil {
		return nil, err
	}
	if err := vm.exportABI(ctx); err != nil {
		return nil, err
	}
	compiled, err := vm.rt.CompileModule(ctx, cfg.Wasm)
	if err != nil {
		return nil, fmt.Errorf("wasmhost: compiling the filter: %w", err)
	}
	mc := wazero.NewModuleConfig().
		WithStartFunctions("_initialize").WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	if cfg.ModuleConfig != nil {
		mc = cfg.ModuleConfig(mc)
	}
	mod, err := vm.rt.InstantiateModule(ctx, compiled, mc)
	if err != nil {
		return nil, fmt.Errorf("wasmhost: instantiating the filter: %w", err)
	}
	vm.mod = mod
	f := func(name string) api.Function { return mod.ExportedFunction(name) }
	vm.fns = guestFns{
		alloc: f("proxy_on_memory_allocate"), contextCreate: f("proxy_on_context_create"),
		vmStart: f("proxy_on_vm_start"), configure: f("proxy_on_configure"), tick: f("proxy_on_tick"),
		done: f("proxy_on_done"), del: f("proxy_on_delete"), log: f("proxy_on_log"),
		reqHeaders: f("proxy_on_request_headers"), reqBody: f("proxy_on_request_body"),
		reqTrailers: f("proxy_on_request_trailers"), respHeaders: f("proxy_on_response_headers"),
		respBody: f("proxy_on_response_body"), callResponse: f("proxy_on_http_call_response"),
	}
	if vm.fns.alloc == nil || vm.fns.reqHeaders == nil {
		return nil, errors.New("wasmhost: the module is not a proxy-wasm filter (built without -buildmode=c-shared?)")
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.nextID = vm.root + 1
	if _, err := vm.call(vm.fns.contextCreate, uint64(vm.root), 0); err != nil {
		return nil, err
	}
	if r, err := vm.call(vm.fns.vmStart, uint64(vm.root), 0); err != nil || r == 0 {
		return nil, fmt.Errorf("wasmhost: proxy_on_vm_start failed (%v): %s", err, strings.Join(startLogs, "; "))
	}
	r, err := vm.call(vm.fns.configure, uint64(vm.root), uint64(len(cfg.PluginConfig)))
	if err != nil || r == 0 {
		return nil, fmt.Errorf("wasmhost: plugin start failed (%v): %s", err, strings.Join(startLogs, "; "))
	}
	vm.cfg.Log = userLog
	if vm.tickPeriod > 0 && !cfg.ManualTicks {
		vm.startTicker()
	}
	return vm, nil
}

// call invokes a guest export; mu must be held.
func (vm *VM) call(fn api.Function, args ...uint64) (uint64, error) {
	if fn == nil {
		return 0, nil
	}
	if err := vm.enter(fn); err != nil {
		return 0, err
	}
	res, err := fn.Call(vm.ctx, args...)
	if err != nil {
		return 0, vm.failWith(fmt.Errorf("wasmhost: guest trapped: %w", err))
	}
	if len(res) > 0 {
		return res[0], nil
	}
	return 0, nil
}

// Close stops the ticker and the VM.
func (vm *VM) Close() error {
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		return nil
	}
	vm.closed = true
	stop := vm.tickStop
	vm.mu.Unlock()
	if stop != nil {
		close(stop)
		<-vm.tickDone
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.rt.Close(vm.ctx)
}

// MemoryBytes is the guest's linear memory size.
func (vm *VM) MemoryBytes() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return int(vm.mod.Memory().Size())
}

// Tick calls proxy_on_tick now (tests drive ticks; New starts a ticker when
// the plugin asks for one).
func (vm *VM) Tick() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return ErrClosed
	}
	vm.effective = vm.root
	_, err := vm.call(vm.fns.tick, uint64(vm.root))
	return err
}

// TickPeriod is the period the plugin asked for (0: none).
func (vm *VM) TickPeriod() time.Duration {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.tickPeriod
}

func (vm *VM) startTicker() {
	vm.tickStop, vm.tickDone = make(chan struct{}), make(chan struct{})
	period, stop, done := vm.tickPeriod, vm.tickStop, vm.tickDone
	go func() {
		defer close(done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = vm.Tick()
			}
		}
	}()
}

// --- guest memory ---

func (vm *VM) read(mod api.Module, ptr, size uint32) []byte {
	if size == 0 {
		return nil
	}
	b, ok := mod.Memory().Read(ptr, size)
	if !ok {
		return nil
	}
	return append([]byte(nil), b...) // always copy: the guest reuses its memory
}

func (vm *VM) readString(mod api.Module, ptr, size uint32) string {
	return string(vm.read(mod, ptr, size))
}

// give copies b into guest memory (allocated by the guest) and writes its
// address and size at retPtr / retSize.
func (vm *VM) give(ctx context.Context, mod api.Module, b []byte, retPtr, retSize uint32) uint32 {
	if len(b) == 0 {
		mod.Memory().WriteUint32Le(retPtr, 0)
		mod.Memory().WriteUint32Le(retSize, 0)
		return statusOK
	}
	res, err := vm.fns.alloc.Call(ctx, uint64(len(b)))
	if err != nil {
		return statusBadArgument
	}
	addr := uint32(res[0])
	if !mod.Memory().Write(addr, b) || !mod.Memory().WriteUint32Le(retPtr, addr) || !mod.Memory().WriteUint32Le(retSize, uint32(len(b))) {
		return statusBadArgument
	}
	return statusOK
}

func serializeMap(m [][2]string) []byte {
	size := 4
	for _, kv := range m {
		size += 8 + len(kv[0]) + len(kv[1]) + 2
	}
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, uint32(len(m)))
	p := 4
	for _, kv := range m {
		binary.LittleEndian.PutUint32(b[p:], uint32(len(kv[0])))
		binary.LittleEndian.PutUint32(b[p+4:], uint32(len(kv[1])))
		p += 8
	}
	for _, kv := range m {
		p += copy(b[p:], kv[0]) + 1
		p += copy(b[p:], kv[1]) + 1
	}
	return b
}

func deserializeMap(b []byte) ([][2]string, bool) {
	if len(b) < 4 {
		return nil, len(b) == 0
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n < 0 || 4+8*n > len(b) {
		return nil, false
	}
	out := make([][2]string, 0, n)
	data := 4 + 8*n
	for i := 0; i < n; i++ {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if data+kl+1+vl+1 > len(b) {
			return nil, false
		}
		k := string(b[data : data+kl])
		data += kl + 1
		v := string(b[data : data+vl])
		data += vl + 1
		out = append(out, [2]string{k, v})
	}
	return out, true
}
