package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	wasmpluginv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/e2e/wasmhost"
	"github.com/meshllm/meshllm/pickapi"
)

// The tests below run the compiled filter (wasm/meshllm.wasm, `make wasm`)
// behind the gateway, configured from envoy/envoy.yaml, with one worker so
// that the VM a test fails is the one every request uses.

// testCache compiles the filter once for every gateway of the package.
var testCache = wazero.NewCompilationCache()

func filterWasm(t *testing.T) []byte {
	b, err := os.ReadFile("../../wasm/meshllm.wasm")
	require.NoError(t, err, "run `make wasm` first (make test does)")
	return b
}

// pod is a stand-in vLLM server: it counts requests and records the
// destination header it was sent.
type pod struct {
	srv     *httptest.Server
	hits    atomic.Int32
	mu      sync.Mutex
	headers []string // x-gateway-destination-endpoint of each request ("" if none)
	models  []string // the "model" of each request body
	// release, when set, holds a streamed response after its first event.
	release chan struct{}
}

func newPod(t *testing.T) *pod {
	p := &pod{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		p.mu.Lock()
		p.headers = append(p.headers, r.Header.Get(pickapi.HeaderDestinationEndpoint))
		p.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.models = append(p.models, gjson.GetBytes(body, "model").Str)
		p.mu.Unlock()
		if r.URL.Path == "/stream" {
			w.Header().Set("content-type", "text/event-stream")
			_, _ = io.WriteString(w, "data: {\"choices\":[{\"text\":\"a\",\"index\":0}]}\n\n")
			w.(http.Flusher).Flush()
			<-p.release
			_, _ = io.WriteString(w, "data: {\"choices\":[{\"text\":\"b\",\"index\":0}]}\n\ndata: [DONE]\n\n")
			return
		}
		w.Header().Set("content-type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c","object":"text_completion","model":"m","choices":[{"text":"ok","index":0,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *pod) addr() string { return strings.TrimPrefix(p.srv.URL, "http://") }

func (p *pod) lastHeader() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.headers[len(p.headers)-1]
}

// syncBuffer is an access log the test reads while the gateway writes; the
// gateway writes a line after the response, so readers wait for it.
type syncBuffer struct {
	mu      sync.Mutex
	b       strings.Builder
	written chan struct{} // closed and replaced on every write
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.written)
	s.written = make(chan struct{})
	return s.b.Write(p)
}

// waitLines waits until listener 8081 has logged n lines.
func (s *syncBuffer) waitLines(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		ch := s.written
		s.mu.Unlock()
		if len(s.lines()) >= n {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("access log: %d lines of listener 8081, want %d", len(s.lines()), n)
		}
	}
}

// lines returns the access-log lines of listener 8081.
func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if strings.Contains(l, "listener=8081") {
			out = append(out, l)
		}
	}
	return out
}

func (s *syncBuffer) last(t *testing.T) string {
	t.Helper()
	ls := s.lines()
	require.NotEmpty(t, ls)
	return ls[len(ls)-1]
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type rig struct {
	g       *Gateway
	pods    []*pod
	picked  *pod // where the picker sends every request
	log     *syncBuffer
	clock   *fakeClock
	client  *http.Client
	llmAddr string
}

type rigOptions struct {
	envoyYAML   string // default envoy/envoy.yaml
	policy      wasmpluginv3.FailurePolicy
	idleTimeout time.Duration
	picker      http.Handler // default: always picks the third pod
}

// newRig starts three pods, a picker that always answers the third, and the
// gateway with one worker.
func newRig(t *testing.T, o rigOptions) *rig {
	r := &rig{log: &syncBuffer{written: make(chan struct{})}, clock: &fakeClock{t: time.Unix(1_000_000, 0)}}
	for i := 0; i < 3; i++ {
		r.pods = append(r.pods, newPod(t))
	}
	r.picked = r.pods[2]
	handler := o.picker
	if handler == nil {
		handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
			w.Header().Set("content-type", "application/json")
			fmt.Fprintf(w, `{"endpoint":%q,"target_model":"m","strategy":"DEFAULT","pool":"vllm-llama2-7b-pool"}`, r.picked.addr())
		})
	}
	picker := httptest.NewServer(handler)
	t.Cleanup(picker.Close)
	if o.envoyYAML == "" {
		o.envoyYAML = "../../envoy/envoy.yaml"
	}
	eps := []string{r.pods[0].addr(), r.pods[1].addr(), r.pods[2].addr()}
	opts := Options{
		EnvoyYAML: o.envoyYAML, Wasm: filterWasm(t),
		ListenerAddrs: map[string]string{"plain_8080": "127.0.0.1:0", "llm_8081": "127.0.0.1:0"}, AdminAddr: "127.0.0.1:0",
		Endpoints: map[string][]string{"vllm": eps, "vllm_llm": eps, "picker": {strings.TrimPrefix(picker.URL, "http://")}},
		Workers:   1, AccessLog: r.log, Log: log.New(io.Discard, "", 0), Now: r.clock.Now, Cache: testCache,
		StreamIdleTimeout: o.idleTimeout,
	}
	if o.policy != wasmpluginv3.FailurePolicy_UNSPECIFIED {
		opts.FailurePolicy = map[string]wasmpluginv3.FailurePolicy{"llm_8081": o.policy}
	}
	g, err := Start(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(g.Close)
	r.g, r.llmAddr = g, g.Addr("llm_8081")
	// A fresh connection per request: a reset stream closes its connection.
	r.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return r
}

func (r *rig) vm(t *testing.T) *wasmhost.VM {
	vms := r.g.VMs("llm_8081")
	require.Len(t, vms, 1)
	return vms[0]
}

// post sends a completion request with a client-chosen destination header
// ("" for none) and returns the status and body.
func (r *rig) post(t *testing.T, path, spoof string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+r.llmAddr+path, strings.NewReader(`{"model":"m","prompt":"hello","max_tokens":5}`))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	if spoof != "" {
		req.Header.Set(pickapi.HeaderDestinationEndpoint, spoof)
	}
	logged := len(r.log.lines())
	resp, err := r.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r.log.waitLines(t, logged+1)
	return resp.StatusCode, string(b)
}

// nextRoundRobin is where vllm_llm's round robin sends its next request.
func (r *rig) nextRoundRobin() string {
	c := r.g.clusters["vllm_llm"]
	return c.spec.Endpoints[int(c.rr.Load())%len(c.spec.Endpoints)]
}

func (r *rig) podAt(addr string) *pod {
	for _, p := range r.pods {
		if p.addr() == addr {
			return p
		}
	}
	return nil
}

func (r *rig) hits() []int32 {
	var out []int32
	for _, p := range r.pods {
		out = append(out, p.hits.Load())
	}
	return out
}

func (r *rig) prometheus(t *testing.T) string {
	resp, err := http.Get("http://" + r.g.AdminAddr() + "/stats/prometheus")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// A trap fails the VM for good: the host never enters it again.
func TestVMFailsForGood(t *testing.T) {
	vm, err := wasmhost.New(context.Background(), wasmhost.Config{Wasm: filterWasm(t), PluginConfig: []byte(`{}`), Cache: testCache})
	require.NoError(t, err)
	defer vm.Close()
	require.NoError(t, vm.Failed())
	vm.TrapAt("proxy_on_tick")
	require.ErrorContains(t, vm.Tick(), "guest trapped")
	require.ErrorContains(t, vm.Failed(), "injected by TrapAt")
	_, err = vm.NewStream()
	require.ErrorIs(t, err, wasmhost.ErrFailed)
	require.ErrorIs(t, vm.Tick(), wasmhost.ErrFailed)
}

// A healthy VM routes where the picker says, whatever the client sent.
func TestHealthyFilterRoutesByPicker(t *testing.T) {
	r := newRig(t, rigOptions{policy: wasmpluginv3.FailurePolicy_FAIL_OPEN})
	status, _ := r.post(t, "/v1/completions", r.pods[0].addr())
	require.Equal(t, 200, status)
	require.Equal(t, []int32{0, 0, 1}, r.hits())
	require.Equal(t, r.picked.addr(), r.picked.lastHeader(), "the filter's header, not the client's")
	require.Contains(t, r.log.last(t), "route=picked")
}

// FAIL_OPEN with a trapped VM: the stream that trapped gets 503, later ones
// bypass the filter (round robin, no accounting), and the client's
// destination header decides nothing, member of the pool or not.
func TestFailOpenTrappedVMIgnoresSpoofedDestination(t *testing.T) {
	r := newRig(t, rigOptions{policy: wasmpluginv3.FailurePolicy_FAIL_OPEN})
	outsider := newPod(t) // a live server outside the pool

	r.vm(t).TrapAt("proxy_on_request_headers")
	status, _ := r.post(t, "/v1/completions", r.pods[0].addr())
	require.Equal(t, 503, status, "the trapping stream fails under FAIL_OPEN too")
	require.Contains(t, r.log.last(t), "status=503 flags=- details=wasm_fail_stream")
	require.Equal(t, []int32{0, 0, 0}, r.hits())
	require.Error(t, r.vm(t).Failed())

	before := r.g.Stats().Snapshot()
	for i := 0; i < 6; i++ {
		next := r.nextRoundRobin()
		spoof := r.pods[0].addr()
		if spoof == next {
			spoof = r.pods[1].addr()
		}
		if i%2 == 1 {
			spoof = outsider.addr()
		}
		status, _ := r.post(t, "/v1/completions", spoof)
		require.Equal(t, 200, status)
		require.Equal(t, "", r.podAt(next).lastHeader(), "the client's header was stripped before routing")
		line := r.log.last(t)
		require.Contains(t, line, "upstream="+next+" ", "round robin decided, not %s", spoof)
		require.Contains(t, line, "details=via_upstream")
		require.Contains(t, line, "model=- ", "the filter is not in the chain")
	}
	require.Equal(t, []int32{2, 2, 2}, r.hits())
	require.Zero(t, outsider.hits.Load())
	require.Equal(t, before, r.g.Stats().Snapshot(), "a bypassed filter counts nothing")
	require.Contains(t, r.prometheus(t), "envoy_wasm_meshllm_vm_reload_success 0\n", "FAIL_OPEN never reloads")
}

// The control for the test above: without the early header mutation the
// same bypassed requests go where the client says. The strip, not the
// filter, is what protects a FAIL_OPEN gateway.
func TestFailOpenWithoutEarlyStripObeysClient(t *testing.T) {
	src, err := os.ReadFile("../../envoy/envoy.yaml")
	require.NoError(t, err)
	const strip = `          early_header_mutation_extensions:
          - name: envoy.http.early_header_mutation.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation
              mutations:
              - remove: x-gateway-destination-endpoint
`
	require.Equal(t, 2, strings.Count(string(src), strip))
	f := filepath.Join(t.TempDir(), "envoy.yaml")
	require.NoError(t, os.WriteFile(f, []byte(strings.ReplaceAll(string(src), strip, "")), 0o644))
	r := newRig(t, rigOptions{envoyYAML: f, policy: wasmpluginv3.FailurePolicy_FAIL_OPEN})

	r.vm(t).TrapAt("proxy_on_request_headers")
	status, _ := r.post(t, "/v1/completions", "")
	require.Equal(t, 503, status)
	next := r.nextRoundRobin()
	spoof := r.pods[0].addr()
	if spoof == next {
		spoof = r.pods[1].addr()
	}
	status, _ = r.post(t, "/v1/completions", spoof)
	require.Equal(t, 200, status)
	require.Contains(t, r.log.last(t), "upstream="+spoof+" ")
}

// FAIL_CLOSED: the worker answers 503 for good.
func TestFailClosedTrappedVMAnswers503(t *testing.T) {
	r := newRig(t, rigOptions{policy: wasmpluginv3.FailurePolicy_FAIL_CLOSED})
	vm := r.vm(t)
	vm.TrapAt("proxy_on_request_body")
	for i := 0; i < 3; i++ {
		r.clock.Advance(time.Minute) // no reload, however long
		status, body := r.post(t, "/v1/completions", r.pods[0].addr())
		require.Equal(t, 503, status)
		require.Empty(t, body)
		require.Contains(t, r.log.last(t), "status=503 flags=- details=wasm_fail_stream")
	}
	require.Equal(t, []int32{0, 0, 0}, r.hits())
	require.Same(t, vm, r.vm(t))
	require.Contains(t, r.prometheus(t), "envoy_wasm_meshllm_vm_reload_backoff 0\n")
}

// FAIL_RELOAD (envoy.yaml's policy): 503 until the backoff since the last
// load has passed, then a fresh VM serves and the filter routes again.
func TestFailReloadServesFromAFreshVM(t *testing.T) {
	r := newRig(t, rigOptions{}) // envoy.yaml as shipped
	require.Equal(t, wasmpluginv3.FailurePolicy_FAIL_RELOAD, r.g.spec.Listeners[1].Wasm.FailurePolicy)
	old := r.vm(t)
	old.TrapAt("proxy_on_request_body")
	status, _ := r.post(t, "/v1/completions", r.pods[0].addr())
	require.Equal(t, 503, status)

	// Within the backoff (1 s base, loaded just now): still failed closed.
	status, _ = r.post(t, "/v1/completions", r.pods[0].addr())
	require.Equal(t, 503, status)
	require.Contains(t, r.log.last(t), "details=wasm_fail_stream")
	require.Same(t, old, r.vm(t))
	require.Contains(t, r.prometheus(t), "envoy_wasm_meshllm_vm_reload_backoff 1\n")

	r.clock.Advance(1500 * time.Millisecond) // past the jittered [1 s, 1.5 s)
	status, _ = r.post(t, "/v1/completions", r.pods[0].addr())
	require.Equal(t, 200, status)
	fresh := r.vm(t)
	require.NotSame(t, old, fresh)
	require.NoError(t, fresh.Failed())
	require.Equal(t, []int32{0, 0, 1}, r.hits(), "the picker's pod: the filter routes again")
	line := r.log.last(t)
	require.Contains(t, line, "route=picked")
	require.Contains(t, line, "prompt_tokens=3")
	prom := r.prometheus(t)
	require.Contains(t, prom, "envoy_wasm_meshllm_vm_reload_success 1\n")
	require.Contains(t, prom, "envoy_wasm_meshllm_vm_reload_failure 0\n")

	// A second trap right after the reload waits out a new backoff.
	fresh.TrapAt("proxy_on_request_headers")
	status, _ = r.post(t, "/v1/completions", "")
	require.Equal(t, 503, status)
	status, _ = r.post(t, "/v1/completions", "")
	require.Equal(t, 503, status)
	require.Contains(t, r.prometheus(t), "envoy_wasm_meshllm_vm_reload_backoff 2\n")
}

// Once response headers are out, a failing VM can only reset the stream
// (FilterManager::sendLocalReply): the stream that trapped, and every other
// stream of that VM at its next callback.
func TestTrapMidResponseResetsStreams(t *testing.T) {
	r := newRig(t, rigOptions{policy: wasmpluginv3.FailurePolicy_FAIL_OPEN})
	for _, p := range r.pods {
		p.release = make(chan struct{})
	}
	// Stream A is mid-response when another stream's trap fails the VM.
	reqA, err := http.NewRequest("POST", "http://"+r.llmAddr+"/stream", strings.NewReader(`{"model":"m","prompt":"a","stream":true}`))
	require.NoError(t, err)
	reqA.Header.Set("content-type", "application/json")
	respA, err := r.client.Do(reqA)
	require.NoError(t, err)
	defer respA.Body.Close()
	require.Equal(t, 200, respA.StatusCode)
	first, err := bufio.NewReader(respA.Body).ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, first, `"text":"a"`)

	r.vm(t).TrapAt("proxy_on_request_headers")
	status, _ := r.post(t, "/v1/completions", "")
	require.Equal(t, 503, status)

	for _, p := range r.pods {
		close(p.release)
	}
	_, err = io.ReadAll(respA.Body)
	require.Error(t, err, "stream A is reset, not ended cleanly")
	r.log.waitLines(t, 2)
	lines := r.log.lines()
	require.Contains(t, lines[0], "/v1/completions")
	require.Contains(t, lines[1], "\"POST /stream HTTP/1.1\" status=200 flags=- details=wasm_fail_stream")
}

// A trap while the request waits for its pick (in the callout's answer)
// fails no stream in Envoy: the request stays paused until the HCM's
// stream_idle_timeout answers 408.
func TestTrapInPickAnswerLeavesRequestToIdleTimeout(t *testing.T) {
	r := newRig(t, rigOptions{policy: wasmpluginv3.FailurePolicy_FAIL_OPEN, idleTimeout: 200 * time.Millisecond})
	r.vm(t).TrapAt("proxy_on_http_call_response")
	start := time.Now()
	status, body := r.post(t, "/v1/completions", r.pods[0].addr())
	require.Equal(t, 408, status)
	require.Equal(t, "stream timeout", body)
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
	require.Contains(t, r.log.last(t), "status=408 flags=SI details=stream_idle_timeout")
	require.Equal(t, []int32{0, 0, 0}, r.hits())
	require.Error(t, r.vm(t).Failed())
}

// The early header mutation applies on the plain listener too: the header
// never reaches a pod.
func TestEarlyStripOnPlainListener(t *testing.T) {
	r := newRig(t, rigOptions{})
	req, err := http.NewRequest("POST", "http://"+r.g.Addr("plain_8080")+"/v1/completions", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set(pickapi.HeaderDestinationEndpoint, r.pods[1].addr())
	resp, err := r.client.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	for _, p := range r.pods {
		if p.hits.Load() == 1 {
			require.Equal(t, "", p.lastHeader())
			return
		}
	}
	t.Fatal("no pod served the request")
}

func TestLoadSpecFailurePolicy(t *testing.T) {
	src, err := os.ReadFile("../../envoy/envoy.yaml")
	require.NoError(t, err)
	load := func(old, new string) (*Spec, error) {
		require.Contains(t, string(src), old)
		f := filepath.Join(t.TempDir(), "envoy.yaml")
		require.NoError(t, os.WriteFile(f, []byte(strings.Replace(string(src), old, new, 1)), 0o644))
		return LoadSpec(f)
	}
	spec, err := LoadSpec("../../envoy/envoy.yaml")
	require.NoError(t, err)
	llm := spec.Listeners[1]
	require.Equal(t, wasmpluginv3.FailurePolicy_FAIL_RELOAD, llm.Wasm.FailurePolicy)
	require.Equal(t, time.Second, llm.Wasm.ReloadBackoff)
	require.Equal(t, "meshllm", llm.Wasm.Name)
	require.Equal(t, 600*time.Second, llm.StreamIdleTimeout)
	for _, l := range spec.Listeners {
		require.Equal(t, []string{pickapi.HeaderDestinationEndpoint}, l.StripHeaders, l.Name)
	}

	spec, err = load("                failure_policy: FAIL_RELOAD\n", "")
	require.NoError(t, err)
	require.Equal(t, wasmpluginv3.FailurePolicy_FAIL_CLOSED, spec.Listeners[1].Wasm.FailurePolicy, "Envoy's default")
	_, err = load("                failure_policy: FAIL_RELOAD\n", "                failure_policy: FAIL_RELOAD\n                fail_open: true\n")
	require.ErrorContains(t, err, "only one of fail_open or failure_policy")
	_, err = load("                failure_policy: FAIL_RELOAD\n", "                fail_open: true\n")
	require.ErrorContains(t, err, "not mirrored")
	_, err = load("              - remove: x-gateway-destination-endpoint\n          # A streamed", "              - append: {header: {key: x-a, value: b}}\n          # A streamed")
	require.ErrorContains(t, err, "only remove is mirrored")
}
