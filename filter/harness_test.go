package main

// The test harness runs every filter test twice, as the SDK's examples do:
// natively (the Go code in this package) and against the compiled
// wasm/meshllm.wasm through wazero. The wasm VM is compiled once per test
// binary and shared: each test gets a fresh host emulator and plugin context
// on it (compiling costs ~2 s). A missing .wasm fails the test; run `make wasm`.

import (
	"os"
	"reflect"
	"sync"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero/api"

	"github.com/meshllm/meshllm/internal/testsupport/wasmvm"
)

const wasmPath = "../wasm/meshllm.wasm"

var (
	sharedVMOnce sync.Once
	sharedVM     proxytest.WasmVMContext
	sharedVMErr  error
)

// newWasmVM compiles and instantiates the filter's .wasm.
func newWasmVM(t testing.TB) proxytest.WasmVMContext {
	t.Helper()
	wasm, err := os.ReadFile(wasmPath)
	require.NoError(t, err, "the compiled filter is missing: run `make wasm` (make test does)")
	vm, err := proxytest.NewWasmVMContext(wasm)
	require.NoError(t, err)
	return vm
}

func wasmVM(t testing.TB) types.VMContext {
	t.Helper()
	sharedVMOnce.Do(func() {
		wasm, err := os.ReadFile(wasmPath)
		if err != nil {
			sharedVMErr = err
			return
		}
		sharedVM, sharedVMErr = proxytest.NewWasmVMContext(wasm)
	})
	require.NoError(t, sharedVMErr, "the compiled filter is missing or broken: run `make wasm` (make test does)")
	return sharedVM
}

// bothVMs runs f natively and against the compiled filter.
func bothVMs(t *testing.T, f func(t *testing.T, vm types.VMContext)) {
	t.Run("native", func(t *testing.T) { f(t, &vmContext{}) })
	t.Run("wasm", func(t *testing.T) { f(t, wasmVM(t)) })
}

// startHost starts a host emulator with the plugin configured by config.
func startHost(t testing.TB, vm types.VMContext, config string) proxytest.HostEmulator {
	t.Helper()
	guestModule = nil
	if w, ok := vm.(proxytest.WasmVMContext); ok {
		mod, err := wasmvm.Module(w)
		require.NoError(t, err)
		guestModule = mod
		t.Cleanup(func() { guestModule = nil })
	}
	opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte(config))
	host, reset := proxytest.NewHostEmulator(opt)
	t.Cleanup(reset)
	require.Equal(t, types.OnVMStartStatusOK, host.StartVM())
	require.Equal(t, types.OnPluginStartStatusOK, host.StartPlugin(), "plugin start failed: %v", host.GetCriticalLogs())
	return host
}

// exchange is one request/response through the filter, driven the way Envoy
// drives it: headers, body chunks (buffered by the host while the filter
// pauses), response headers, response chunks, stream done.
type exchange struct {
	reqHeaders  [][2]string
	reqChunks   [][]byte
	respHeaders [][2]string
	respChunks  [][]byte
	noComplete  bool // leave the stream open (no OnHttpStreamDone)
}

type exchangeResult struct {
	id uint32
	// What went upstream and what the client received.
	upstreamHeaders [][2]string
	upstreamBody    []byte
	clientHeaders   [][2]string
	clientBody      []byte
	// Actions the filter returned to body callbacks, in order.
	reqBodyActions []types.Action
}

func run(t testing.TB, host proxytest.HostEmulator, ex exchange) exchangeResult {
	t.Helper()
	var r exchangeResult
	id := host.InitializeHttpContext()
	r.id = id
	noBody := len(ex.reqChunks) == 0
	require.Equal(t, types.ActionContinue, host.CallOnRequestHeaders(id, ex.reqHeaders, noBody))
	r.upstreamHeaders = append(r.upstreamHeaders, host.GetCurrentRequestHeaders(id)...)
	for i, c := range ex.reqChunks {
		end := i == len(ex.reqChunks)-1
		a := host.CallOnRequestBody(id, c, end)
		r.reqBodyActions = append(r.reqBodyActions, a)
		if a == types.ActionContinue {
			// Copy at once: in wasm mode the host's slice points into VM memory.
			r.upstreamBody = append(r.upstreamBody, host.GetCurrentRequestBody(id)...)
		} else {
			require.False(t, end, "the filter paused the request at end of stream")
		}
	}
	r.upstreamHeaders = append([][2]string(nil), host.GetCurrentRequestHeaders(id)...)
	if ex.respHeaders != nil {
		noRespBody := len(ex.respChunks) == 0
		require.Equal(t, types.ActionContinue, host.CallOnResponseHeaders(id, ex.respHeaders, noRespBody))
		r.clientHeaders = append(r.clientHeaders, host.GetCurrentResponseHeaders(id)...)
		for i, c := range ex.respChunks {
			a := host.CallOnResponseBody(id, c, i == len(ex.respChunks)-1)
			require.Equal(t, types.ActionContinue, a, "the filter must never hold a response back")
			r.clientBody = append(r.clientBody, host.GetCurrentResponseBody(id)...)
		}
	}
	if !ex.noComplete {
		host.CompleteHttpContext(id)
		deleteContext(t, id)
	}
	return r
}

// guestModule is set while a test drives a wasm VM, so that run can call the
// guest's proxy_on_delete, which proxytest never does (see internal/testsupport/wasmvm).
var guestModule api.Module

func deleteContext(t testing.TB, id uint32) {
	if guestModule != nil {
		require.NoError(t, wasmvm.DeleteContext(guestModule, id))
	}
}

func header(hs [][2]string, name string) (string, bool) {
	for _, h := range hs {
		if h[0] == name {
			return h[1], true
		}
	}
	return "", false
}

func llmRequest(path string, extra ...[2]string) [][2]string {
	return append([][2]string{
		{":method", "POST"}, {":path", path}, {":authority", "gateway"},
		{"content-type", "application/json"}, {"content-length", "100"},
	}, extra...)
}

func jsonResponse(status string, extra ...[2]string) [][2]string {
	return append([][2]string{{":status", status}, {"content-type", "application/json"}}, extra...)
}

func sseResponse() [][2]string {
	return [][2]string{{":status", "200"}, {"content-type", "text/event-stream; charset=utf-8"}}
}

func counter(t testing.TB, host proxytest.HostEmulator, name string) uint64 {
	t.Helper()
	v, err := host.GetCounterMetric(name)
	require.NoError(t, err, "counter %s", name)
	return v
}

func property(t testing.TB, host proxytest.HostEmulator, key string) string {
	t.Helper()
	v, err := host.GetProperty([]string{key})
	require.NoError(t, err, "filter state wasm.%s", key)
	return string(v)
}

func noProperty(t testing.TB, host proxytest.HostEmulator, key string) {
	t.Helper()
	_, err := host.GetProperty([]string{key})
	require.Error(t, err, "filter state wasm.%s should be absent", key)
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../internal/llmapi/testdata/" + name)
	require.NoError(t, err)
	return b
}

// definedMetrics counts the stats the filter has defined in the host. The
// emulator keeps them in an unexported map; reading its length through
// reflection is the only way to see every name at once. If the SDK changes
// shape this fails loudly rather than passing.
func definedMetrics(t testing.TB, host proxytest.HostEmulator) int {
	t.Helper()
	root := reflect.ValueOf(host).Elem().FieldByName("rootHostEmulator")
	require.True(t, root.IsValid(), "proxytest internals changed: no rootHostEmulator")
	m := root.Elem().FieldByName("metricNameToID")
	require.True(t, m.IsValid(), "proxytest internals changed: no metricNameToID")
	return m.Len()
}

// definedMetricNames lists the defined stat names.
func definedMetricNames(t testing.TB, host proxytest.HostEmulator) []string {
	t.Helper()
	m := reflect.ValueOf(host).Elem().FieldByName("rootHostEmulator").Elem().FieldByName("metricNameToID")
	var names []string
	for _, k := range m.MapKeys() {
		names = append(names, k.String())
	}
	return names
}

// wasmMemoryBytes is the linear memory size of a wasm VM.
func wasmMemoryBytes(t testing.TB, vm types.VMContext) int {
	t.Helper()
	mod, err := wasmvm.Module(vm)
	require.NoError(t, err)
	return wasmvm.MemoryBytes(mod)
}
