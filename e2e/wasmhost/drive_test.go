package wasmhost

// The driver shared by the engine differential test (engines_test.go) and
// the fuzz target (fuzz_test.go): it runs one exchange through a VM the way
// package gateway does (Envoy's order), with every source of timing taken
// out, so that the same exchanges on two VMs must give the same bytes.
//
// Determinism: the guest's clocks and random source are fakes owned by the
// VM (the Go runtime seeds map iteration from random_get), the host never
// ticks on its own (ManualTicks), and a dispatched pick is answered and
// delivered before the driver goes on (settle). Go's wasip1 runtime is
// single-threaded, so the guest then runs the same instructions on every
// engine.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"
)

// testVM is a VM with deterministic inputs and what the guest said.
type testVM struct {
	*VM
	engine string

	mu     sync.Mutex
	logs   []string                       // guest log lines of the current exchange
	stderr guestStderr                    // GODEBUG=gctrace=1 lines, runtime fatal errors
	pick   func(CallRequest) CallResponse // the picker of the current exchange
	calls  []CallRequest                  // what the guest dispatched in the current exchange
	seen   [][]byte                       // every pick answer body this VM was given
	clock  atomic.Int64                   // fake nanoseconds since the epoch
}

// guestStderr counts gctrace lines and keeps the tail of what the guest
// runtime printed (a fatal error explains a trap).
type guestStderr struct {
	gcs  int
	tail []byte
	part []byte
}

func (g *guestStderr) Write(p []byte) (int, error) {
	g.part = append(g.part, p...)
	for {
		i := bytes.IndexByte(g.part, '\n')
		if i < 0 {
			break
		}
		line := g.part[:i+1]
		if bytes.HasPrefix(line, []byte("gc ")) {
			g.gcs++
		} else {
			g.tail = append(g.tail, line...)
			if len(g.tail) > 8<<10 {
				g.tail = append([]byte(nil), g.tail[len(g.tail)-8<<10:]...)
			}
		}
		g.part = g.part[i+1:]
	}
	return len(p), nil
}

// clockStart is the fake wall clock's origin (2026-01-01T00:00:00Z); each
// read advances it by clockStep, so durations are deterministic (and not
// all zero).
const (
	clockStart = 1767225600 * int64(time.Second)
	clockStep  = int64(time.Millisecond)
)

var detCache = wazero.NewCompilationCache()

// vmOptions tune newTestVM.
type vmOptions struct {
	pluginConfig string
	allowFlag    bool // allow_on_headers_stop_iteration
	// memLimit is the guest's GOMEMLIMIT: about the live heap, it makes
	// the guest collect after nearly every stream (measured: 1MiB gives
	// 133 GCs in 300 streams where the default gives 4, and GOGC=1 no more).
	memLimit string
	// cache holds compiled code (default detCache, this process's).
	cache wazero.CompilationCache
}

// newTestVM instantiates the filter on engine with deterministic inputs.
func newTestVM(t testing.TB, engine string, o vmOptions) *testVM {
	t.Helper()
	tv, err := startTestVM(filterWasm(t), engine, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tv.Close() })
	return tv
}

func startTestVM(wasm []byte, engine string, o vmOptions) (*testVM, error) {
	tv := &testVM{engine: engine}
	tv.clock.Store(clockStart)
	cache := o.cache
	if cache == nil {
		cache = detCache
	}
	read := func() int64 { return tv.clock.Add(clockStep) }
	mc := func(mc wazero.ModuleConfig) wazero.ModuleConfig {
		mc = mc.WithWalltime(func() (int64, int32) { n := read(); return n / 1e9, int32(n % 1e9) }, sys.ClockResolution(1)).
			WithNanotime(func() int64 { return read() - clockStart }, sys.ClockResolution(1)).
			WithNanosleep(func(ns int64) { tv.clock.Add(ns) }).
			WithRandSource(rand.NewChaCha8([32]byte{'m', 'e', 's', 'h', 'l', 'l', 'm'})).
			WithStderr(&tv.stderr)
		// gctrace lets the test count the guest's collections.
		mc = mc.WithEnv("GODEBUG", "gctrace=1")
		if o.memLimit != "" {
			mc = mc.WithEnv("GOMEMLIMIT", o.memLimit)
		}
		return mc
	}
	vm, err := New(context.Background(), Config{
		Wasm: wasm, PluginConfig: []byte(o.pluginConfig), AllowOnHeadersStopIteration: o.allowFlag,
		Clusters: map[string]bool{"picker": true}, Call: tv.call,
		ForeignFunctions: map[string]func([]byte) []byte{"clear_route_cache": func([]byte) []byte { return nil }},
		Log: func(level int, msg string) {
			tv.mu.Lock()
			tv.logs = append(tv.logs, fmt.Sprintf("%d %s", level, msg))
			tv.mu.Unlock()
		},
		Cache: cache, Engine: engine, ModuleConfig: mc, ManualTicks: true,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w (guest stderr: %s)", engine, err, tv.stderr.tail)
	}
	tv.VM = vm
	return tv, nil
}

// call is Config.Call: it answers at once with the exchange's picker.
func (tv *testVM) call(r CallRequest) CallResponse {
	tv.mu.Lock()
	defer tv.mu.Unlock()
	tv.calls = append(tv.calls, r)
	pick := tv.pick
	if pick == nil {
		return CallResponse{} // no picker: the call fails, as a timeout does
	}
	resp := pick(r)
	tv.seen = append(tv.seen, resp.Body)
	return resp
}

// settleTimeout bounds the wait for a pick's delivery; it fires only when
// something is broken (the picker answers at once).
const settleTimeout = 60 * time.Second

var errHang = errors.New("hang")

// settle waits until every dispatched pick has been answered and delivered:
// the host delivers under the VM lock in the same critical section that
// drops the callout, so an empty callout table means nothing is in flight.
func (tv *testVM) settle() error {
	deadline := time.Now().Add(settleTimeout)
	for {
		tv.VM.mu.Lock()
		n := len(tv.VM.callouts)
		tv.VM.mu.Unlock()
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: a pick was not delivered within %v", errHang, settleTimeout)
		}
		runtime.Gosched() // the call's goroutine answers at once and takes the lock
	}
}

// memory reports the guest's linear memory size and a digest of its bytes.
func (tv *testVM) memory() (int, string) {
	tv.VM.mu.Lock()
	defer tv.VM.mu.Unlock()
	m := tv.VM.mod.Memory()
	b, _ := m.Read(0, m.Size())
	return int(m.Size()), fmt.Sprintf("%x", sha256.Sum256(b))[:16]
}

func (tv *testVM) gcs() int {
	tv.mu.Lock()
	defer tv.mu.Unlock()
	return tv.stderr.gcs
}

// exchange is one HTTP exchange to drive.
type exchange struct {
	reqHeaders  [][2]string
	reqChunks   [][]byte // none: the headers end the request
	respHeaders [][2]string
	respChunks  [][]byte
	// pick answers the exchange's picks (nil: every call fails, as a
	// timeout does).
	pick func(CallRequest) CallResponse
}

// result is everything observable about an exchange.
type result struct {
	reqActions, respActions []Action
	calls                   []CallRequest
	upstream                bool // the request went upstream
	upstreamHeaders         [][2]string
	upstreamBody            []byte
	local                   *LocalReply
	reset                   bool
	clientHeaders           [][2]string
	clientBody              []byte
	state                   map[string]string
	logs                    []string
	memBytes                int
}

// maxWatchdogTicks bounds the ticks driven to release paused headers
// without the Envoy flag (watchdog_ms 1000 at a 50 ms tick is 20).
const maxWatchdogTicks = 100

// drive runs ex through tv. The error is a trap or a hang; the result
// holds what happened up to it.
func drive(tv *testVM, ex exchange) (r result, err error) {
	tv.mu.Lock()
	tv.pick, tv.calls, tv.logs = ex.pick, nil, nil
	tv.mu.Unlock()
	defer func() {
		tv.mu.Lock()
		r.calls, r.logs, tv.pick = tv.calls, tv.logs, nil
		tv.mu.Unlock()
	}()
	s, err := tv.NewStream()
	if err != nil {
		return r, err
	}
	done := false
	finish := func() error {
		if done {
			return nil
		}
		done = true
		r.state = s.Done()
		if err := tv.settle(); err != nil {
			return err
		}
		r.memBytes = tv.MemoryBytes()
		return tv.Failed()
	}
	defer func() {
		if ferr := finish(); err == nil {
			err = ferr
		}
	}()

	step := func(err error) error {
		if err != nil {
			return err
		}
		if err := tv.settle(); err != nil {
			return err
		}
		return tv.Failed()
	}
	// paused: the request waits for the filter, with nothing to wake it
	// unless a tick does.
	paused := func() bool {
		tv.VM.mu.Lock()
		defer tv.VM.mu.Unlock()
		return s.reqPaused && s.localReply == nil && !s.reset && s.trapped == nil
	}
	ended := func() bool {
		tv.VM.mu.Lock()
		defer tv.VM.mu.Unlock()
		return s.localReply != nil || s.reset
	}

	noBody := len(ex.reqChunks) == 0
	a, err := s.RequestHeaders(ex.reqHeaders, noBody)
	r.reqActions = append(r.reqActions, a)
	if err := step(err); err != nil {
		return r, err
	}
	if a == Pause && !tv.AllowsBodyWhileHeadersPaused() {
		// Envoy withholds the body until the headers resume: only the
		// watchdog's tick can, so tick as Envoy would.
		for i := 0; paused() && i < maxWatchdogTicks; i++ {
			if err := step(tv.Tick()); err != nil {
				return r, err
			}
		}
		if paused() {
			return r, fmt.Errorf("%w: headers paused, not resumed after %d ticks", errHang, maxWatchdogTicks)
		}
	}
	for i, c := range ex.reqChunks {
		if ended() {
			break // a local reply ends the request: Envoy reads no more of it
		}
		a, released, err := s.RequestBody(c, i == len(ex.reqChunks)-1)
		r.reqActions = append(r.reqActions, a)
		r.upstreamBody = append(r.upstreamBody, released...)
		if err := step(err); err != nil {
			return r, err
		}
	}
	if paused() {
		return r, fmt.Errorf("%w: the request is paused after its last chunk with no pick in flight", errHang)
	}
	released, err := s.WaitRequest(context.Background()) // returns at once: nothing is paused
	r.upstreamBody = append(r.upstreamBody, released...)
	if err != nil {
		return r, err
	}
	respHeaders, respChunks := ex.respHeaders, ex.respChunks
	switch lr := s.LocalReply(); {
	case lr != nil:
		r.local = lr
		respHeaders = append([][2]string{{":status", fmt.Sprint(lr.Status)}}, lr.Headers...)
		respChunks = nil
		if len(lr.Body) > 0 {
			respChunks = [][]byte{lr.Body}
		}
		r.upstreamBody = nil
	case ended():
		r.reset = true
		r.upstreamBody = nil
		return r, finish()
	default:
		r.upstream = true
		r.upstreamHeaders = append([][2]string(nil), s.ReqHeaders...)
	}
	if respHeaders == nil {
		return r, finish() // the upstream reset the stream
	}
	a, err = s.ResponseHeaders(respHeaders, len(respChunks) == 0)
	r.respActions = append(r.respActions, a)
	if err := step(err); err != nil {
		return r, err
	}
	r.clientHeaders = append([][2]string(nil), s.RespHeaders...)
	for i, c := range respChunks {
		a, out, err := s.ResponseBody(c, i == len(respChunks)-1)
		r.respActions = append(r.respActions, a)
		r.clientBody = append(r.clientBody, out...)
		if err := step(err); err != nil {
			return r, err
		}
		if a == Pause && i == len(respChunks)-1 {
			return r, fmt.Errorf("%w: the filter held the response back at its end", errHang)
		}
	}
	return r, finish()
}

// render writes a result as text, every map sorted, for comparison.
func (r result) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "request actions %v\n", r.reqActions)
	for _, c := range r.calls {
		fmt.Fprintf(&b, "pick call %s %q timeout=%v body=%q\n", c.Cluster, c.Headers, c.Timeout, c.Body)
	}
	fmt.Fprintf(&b, "upstream=%v reset=%v\n", r.upstream, r.reset)
	if r.upstream {
		fmt.Fprintf(&b, "upstream headers %q\nupstream body %q\n", r.upstreamHeaders, r.upstreamBody)
	}
	if r.local != nil {
		fmt.Fprintf(&b, "local reply %d %q %q %q\n", r.local.Status, r.local.Details, r.local.Headers, r.local.Body)
	}
	fmt.Fprintf(&b, "response actions %v\nclient headers %q\nclient body %q\n", r.respActions, r.clientHeaders, r.clientBody)
	keys := make([]string, 0, len(r.state))
	for k := range r.state {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "state %s=%q\n", k, r.state[k])
	}
	for _, l := range r.logs {
		fmt.Fprintf(&b, "log %q\n", l)
	}
	fmt.Fprintf(&b, "memory %d\n", r.memBytes)
	return b.String()
}

// renderStats writes the VM's stats and shared data.
func (tv *testVM) renderStats() string {
	var b strings.Builder
	for _, m := range tv.cfg.Stats.Snapshot() {
		fmt.Fprintf(&b, "stat %s type=%d value=%d cumulative=%v sum=%v count=%d\n", m.Name, m.Type, m.Value, m.Cumulative, m.Sum, m.Count)
	}
	d := tv.cfg.SharedData
	d.mu.Lock()
	keys := make([]string, 0, len(d.kv))
	for k := range d.kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "shared %s=%q cas=%d\n", k, d.kv[k].data, d.kv[k].cas)
	}
	d.mu.Unlock()
	return b.String()
}
