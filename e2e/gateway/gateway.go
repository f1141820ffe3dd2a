// Package gateway is a test and demo host that stands in for Envoy: Go
// net/http listeners that run the compiled meshllm.wasm (through
// e2e/wasmhost, on wazero) with the Envoy behaviours the filter depends on,
// configured from the same envoy/envoy.yaml a real Envoy would load.
//
// It is NOT a production proxy (no TLS, no retries, no HTTP/2 upstreams, no
// circuit breaking, whole request bodies buffered before they go upstream).
// Production runs Envoy or Istio; see envoy/ and istio/.
//
// Mirrored from envoy.yaml: listeners (port, route cluster, early header
// mutations that remove request headers before any filter, stream idle
// timeout, Wasm filter with its pluginConfig, allow_on_headers_stop_iteration
// and failure policy, access-log format), clusters (static endpoints;
// override_host: a request whose header names a member goes there, anything
// else round robin, as envoy.extensions.load_balancing_policies.override_host
// does), stats_tags (for /stats/prometheus on the admin port).
//
// A Wasm VM that traps fails as in Envoy (failure.go): the stream is answered
// 503 or reset, and later streams on that worker follow the plugin's
// failure_policy (bypass the filter, 503, or a fresh VM after a backoff).
package gateway

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	wasmpluginv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/tetratelabs/wazero"

	"github.com/meshllm/meshllm/e2e/wasmhost"
	"github.com/meshllm/meshllm/internal/testsupport/envoystats"
)

// Options adjust what envoy.yaml says, for tests and the demo.
type Options struct {
	EnvoyYAML string // default envoy/envoy.yaml
	Wasm      []byte
	// Addr replaces a listener's address, by listener name or port
	// ("8081"); "127.0.0.1:0" picks a free port.
	ListenerAddrs map[string]string
	AdminAddr     string // default 127.0.0.1:<admin port>
	// Endpoints replaces a cluster's endpoints.
	Endpoints map[string][]string
	// PluginConfig replaces the Wasm filter's configuration, by listener.
	PluginConfig map[string]string
	// AllowOnHeadersStopIteration overrides the flag, by listener.
	AllowOnHeadersStopIteration map[string]bool
	// FailurePolicy overrides the Wasm filter's failure_policy, by listener.
	FailurePolicy map[string]wasmpluginv3.FailurePolicy
	// StreamIdleTimeout, when set, replaces every listener's
	// stream_idle_timeout (tests).
	StreamIdleTimeout time.Duration
	// ConnectTimeout, when set, replaces every cluster's connect_timeout
	// (the benchmark runner, whose host stalls are not the system's).
	ConnectTimeout time.Duration
	// Dial, when set, replaces the dialer of upstream connections (tests);
	// its context ends at the cluster's connect timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock of FAIL_RELOAD's backoff; default time.Now.
	Now func() time.Time
	// Cache shares compiled filter code between gateways (tests); default
	// one per gateway.
	Cache wazero.CompilationCache
	// Workers is the number of VMs (Envoy workers) per Wasm listener.
	Workers int
	// Engine is wasmhost.Config.Engine (empty: $MESHLLM_WASM_ENGINE).
	Engine    string
	AccessLog io.Writer // default stdout
	Log       *log.Logger
}

// Gateway is the running host.
type Gateway struct {
	ctx       context.Context // the VMs' (reloads create VMs later)
	now       func() time.Time
	spec      *Spec
	stats     *wasmhost.Stats
	shared    *wasmhost.SharedData
	extractor *envoystats.Extractor
	clusters  map[string]*cluster
	listeners []*listener
	admin     *http.Server
	adminAddr string
	accessLog io.Writer
	logMu     sync.Mutex
	log       *log.Logger
}

type cluster struct {
	spec *ClusterSpec
	// transport holds the cluster's connection pool; a new connection may
	// take the cluster's connect timeout.
	transport *http.Transport
	rr        atomic.Uint64
	// live replaces spec.Endpoints once SetEndpoints was called.
	live atomic.Pointer[[]string]
	// Requests per endpoint, for the demo's spread.
	mu    sync.Mutex
	count map[string]int
}

type listener struct {
	g    *Gateway
	spec ListenerSpec
	srv  *http.Server
	addr string
	// The Wasm filter: one VM per worker, made from vmConfig (again on a
	// FAIL_RELOAD reload), and Envoy's wasm.<name>.* reload counters.
	vmConfig   wasmhost.Config
	workers    []*worker
	nextWorker atomic.Uint64
	reloads    reloadStats
}

// Start loads envoy.yaml and starts every listener and the admin port.
func Start(ctx context.Context, o Options) (*Gateway, error) {
	if o.EnvoyYAML == "" {
		o.EnvoyYAML = "envoy/envoy.yaml"
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.AccessLog == nil {
		o.AccessLog = os.Stdout
	}
	if o.Log == nil {
		o.Log = log.New(os.Stderr, "gateway: ", log.LstdFlags)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	spec, err := LoadSpec(o.EnvoyYAML)
	if err != nil {
		return nil, err
	}
	ex, err := envoystats.NewExtractor(spec.StatsTags)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		ctx: ctx, now: o.Now, spec: spec, stats: wasmhost.NewStats(), shared: wasmhost.NewSharedData(), extractor: ex,
		clusters: map[string]*cluster{}, accessLog: o.AccessLog, log: o.Log,
	}
	dial := o.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	for name, cs := range spec.Clusters {
		if eps, ok := o.Endpoints[name]; ok {
			cs.Endpoints = eps
		}
		if o.ConnectTimeout > 0 {
			cs.ConnectTimeout = o.ConnectTimeout
		}
		g.clusters[name] = &cluster{spec: cs, transport: newTransport(dial, cs.ConnectTimeout), count: map[string]int{}}
	}
	cache := o.Cache
	if cache == nil {
		cache = wazero.NewCompilationCache()
	}
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()
	for _, ls := range spec.Listeners {
		if o.StreamIdleTimeout > 0 {
			ls.StreamIdleTimeout = o.StreamIdleTimeout
		}
		l := &listener{g: g, spec: ls}
		if ls.Wasm != nil {
			if len(o.Wasm) == 0 {
				return nil, fmt.Errorf("listener %s runs the Wasm filter: Options.Wasm is empty (make wasm)", ls.Name)
			}
			if pc, ok := o.PluginConfig[ls.Name]; ok {
				ls.Wasm.PluginConfig = []byte(pc)
			}
			if v, ok := o.AllowOnHeadersStopIteration[ls.Name]; ok {
				ls.Wasm.AllowOnHeadersStopIteration = v
			}
			if v, ok := o.FailurePolicy[ls.Name]; ok {
				ls.Wasm.FailurePolicy = v
			}
			l.spec = ls
			l.vmConfig = wasmhost.Config{
				Wasm: o.Wasm, PluginConfig: ls.Wasm.PluginConfig, Cache: cache, Engine: o.Engine,
				AllowOnHeadersStopIteration: ls.Wasm.AllowOnHeadersStopIteration,
				Clusters:                    g.clusterNames(), Call: g.call,
				ForeignFunctions: map[string]func([]byte) []byte{
					// The router re-reads the route on its own here.
					"clear_route_cache": func([]byte) []byte { return nil },
				},
				Stats: g.stats, SharedData: g.shared,
				Log: func(level int, msg string) { g.log.Printf("wasm[%s] %s: %s", ls.Name, levelName(level), msg) },
			}
			for w := 0; w < o.Workers; w++ {
				vm, err := wasmhost.New(ctx, l.vmConfig)
				if err != nil {
					return nil, fmt.Errorf("listener %s: %w", ls.Name, err)
				}
				l.workers = append(l.workers, &worker{vm: vm, loaded: g.now()})
			}
		}
		addr := fmt.Sprintf("0.0.0.0:%d", ls.Port)
		if a, ok := o.ListenerAddrs[ls.Name]; ok {
			addr = a
		} else if a, ok := o.ListenerAddrs[fmt.Sprint(ls.Port)]; ok {
			addr = a
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", ls.Name, err)
		}
		l.addr = ln.Addr().String()
		l.srv = &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = l.srv.Serve(ln) }()
		g.listeners = append(g.listeners, l)
	}
	adminAddr := o.AdminAddr
	if adminAddr == "" {
		adminAddr = fmt.Sprintf("127.0.0.1:%d", spec.AdminPort)
	}
	ln, err := net.Listen("tcp", adminAddr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	g.adminAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/stats/prometheus", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, g.PrometheusText())
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "LIVE\n") })
	g.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = g.admin.Serve(ln) }()
	ok = true
	return g, nil
}

// newTransport is one cluster's connection pool. The connect timeout bounds
// the dial alone, as Envoy's connect_timeout does; a connection that is up
// may then take as long as the request does.
func newTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error), connectTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy: nil, MaxIdleConns: 4096, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, connectTimeout)
			defer cancel()
			return dial(ctx, network, addr)
		},
		DisableCompression: true,
	}
}

func levelName(l int) string {
	return [...]string{"trace", "debug", "info", "warn", "error", "critical", "?"}[min(max(l, 0), 6)]
}

func (g *Gateway) clusterNames() map[string]bool {
	m := map[string]bool{}
	for n := range g.clusters {
		m[n] = true
	}
	return m
}

// Addr is the address a listener (by name or port) is serving on.
func (g *Gateway) Addr(name string) string {
	for _, l := range g.listeners {
		if l.spec.Name == name || fmt.Sprint(l.spec.Port) == name {
			return l.addr
		}
	}
	return ""
}

// AdminAddr is the admin address (/stats/prometheus).
func (g *Gateway) AdminAddr() string { return g.adminAddr }

// Stats is the filter's process-wide metric store.
func (g *Gateway) Stats() *wasmhost.Stats { return g.stats }

// VMs returns the Wasm VMs a listener's workers run now (a FAIL_RELOAD
// reload replaces a worker's VM).
func (g *Gateway) VMs(name string) []*wasmhost.VM {
	for _, l := range g.listeners {
		if l.spec.Name == name || fmt.Sprint(l.spec.Port) == name {
			var out []*wasmhost.VM
			for _, w := range l.workers {
				out = append(out, w.current())
			}
			return out
		}
	}
	return nil
}

// UpstreamCounts is how many requests each endpoint of a cluster served.
func (g *Gateway) UpstreamCounts(clusterName string) map[string]int {
	c := g.clusters[clusterName]
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.count {
		out[k] = v
	}
	return out
}

// Close stops listeners, VMs and the admin port.
func (g *Gateway) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range g.listeners {
		if l.srv != nil {
			_ = l.srv.Shutdown(ctx)
		}
		for _, w := range l.workers {
			_ = w.current().Close()
		}
	}
	if g.admin != nil {
		_ = g.admin.Shutdown(ctx)
	}
	for _, c := range g.clusters {
		c.transport.CloseIdleConnections()
	}
}

// SetEndpoints replaces a cluster's endpoints while the gateway runs, as
// Kubernetes updates a Service's endpoints when pods become ready or
// terminate.
func (g *Gateway) SetEndpoints(clusterName string, addrs []string) error {
	c := g.clusters[clusterName]
	if c == nil {
		return fmt.Errorf("no cluster %q", clusterName)
	}
	eps := append([]string(nil), addrs...)
	c.live.Store(&eps)
	return nil
}

// pick chooses a cluster endpoint: the override header's value if it names a
// member (first of a comma-separated list that does), else round robin.
func (c *cluster) pick(override string) (string, bool) {
	eps := c.spec.Endpoints
	if p := c.live.Load(); p != nil {
		eps = *p
	}
	if len(eps) == 0 {
		return "", false
	}
	chosen := ""
	if c.spec.OverrideHeader != "" && override != "" {
		for _, cand := range strings.Split(override, ",") {
			cand = strings.TrimSpace(cand)
			for _, e := range eps {
				if e == cand {
					chosen = e
					break
				}
			}
			if chosen != "" {
				break
			}
		}
	}
	if chosen == "" {
		chosen = eps[int(c.rr.Add(1)-1)%len(eps)]
	}
	c.mu.Lock()
	c.count[chosen]++
	c.mu.Unlock()
	return chosen, true
}

// call performs the filter's DispatchHttpCall through a cluster. Failure or
// timeout answers with no headers, as Envoy does.
func (g *Gateway) call(req wasmhost.CallRequest) wasmhost.CallResponse {
	c := g.clusters[req.Cluster]
	ep, ok := c.pick("")
	if !ok {
		return wasmhost.CallResponse{}
	}
	ctx := context.Background()
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	var method, path, authority string
	hr, _ := http.NewRequestWithContext(ctx, "POST", "http://"+ep+"/", strings.NewReader(string(req.Body)))
	for _, kv := range req.Headers {
		switch kv[0] {
		case ":method":
			method = kv[1]
		case ":path":
			path = kv[1]
		case ":authority":
			authority = kv[1]
		default:
			if !strings.HasPrefix(kv[0], ":") {
				hr.Header.Add(kv[0], kv[1])
			}
		}
	}
	hr.Method, hr.Host = method, authority
	hr.URL.Path, hr.URL.RawQuery, _ = strings.Cut(path, "?")
	resp, err := c.transport.RoundTrip(hr)
	if err != nil {
		return wasmhost.CallResponse{}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return wasmhost.CallResponse{}
	}
	hs := [][2]string{{":status", fmt.Sprint(resp.StatusCode)}}
	for k, vs := range resp.Header {
		for _, v := range vs {
			hs = append(hs, [2]string{strings.ToLower(k), v})
		}
	}
	return wasmhost.CallResponse{Headers: hs, Body: body}
}
