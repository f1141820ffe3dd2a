package gateway

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/stretchr/testify/require"
)

func TestLoadSpecConnectTimeouts(t *testing.T) {
	spec, err := LoadSpec("../../envoy/envoy.yaml")
	require.NoError(t, err)
	require.Equal(t, time.Second, spec.Clusters["vllm"].ConnectTimeout)
	require.Equal(t, time.Second, spec.Clusters["vllm_llm"].ConnectTimeout)
	require.Equal(t, 250*time.Millisecond, spec.Clusters["picker"].ConnectTimeout)
	cs, err := clusterSpec(&clusterv3.Cluster{Name: "unset"})
	require.NoError(t, err)
	require.Equal(t, 5*time.Second, cs.ConnectTimeout, "Envoy's default connect_timeout")
}

// upstreamRig is a gateway whose vLLM clusters hold one endpoint, target,
// and whose picker always picks it.
type upstreamRig struct {
	g   *Gateway
	log *syncBuffer
}

func newUpstreamRig(t *testing.T, target string, o Options) *upstreamRig {
	picker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		w.Header().Set("content-type", "application/json")
		fmt.Fprintf(w, `{"endpoint":%q,"target_model":"m","strategy":"DEFAULT","pool":"vllm-llama2-7b-pool"}`, target)
	}))
	t.Cleanup(picker.Close)
	r := &upstreamRig{log: &syncBuffer{written: make(chan struct{})}}
	o.EnvoyYAML, o.Wasm, o.Workers, o.Cache = "../../envoy/envoy.yaml", filterWasm(t), 1, testCache
	o.ListenerAddrs = map[string]string{"plain_8080": "127.0.0.1:0", "llm_8081": "127.0.0.1:0"}
	o.AdminAddr = "127.0.0.1:0"
	o.Endpoints = map[string][]string{"vllm": {target}, "vllm_llm": {target}, "picker": {strings.TrimPrefix(picker.URL, "http://")}}
	o.AccessLog, o.Log = r.log, log.New(io.Discard, "", 0)
	g, err := Start(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(g.Close)
	r.g = g
	return r
}

// post sends a completion to a listener and returns the status, the body
// and that listener's access-log line for it.
func (r *upstreamRig) post(t *testing.T, listener string) (int, string, string) {
	t.Helper()
	tag := "listener=" + strings.TrimPrefix(strings.TrimPrefix(listener, "plain_"), "llm_")
	resp, err := http.Post("http://"+r.g.Addr(listener)+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"m","prompt":"hello","max_tokens":5}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	// The gateway logs once the handler returns, after the body is out.
	timeout := time.After(10 * time.Second)
	for {
		r.log.mu.Lock()
		logged, ch := r.log.b.String(), r.log.written
		r.log.mu.Unlock()
		for _, l := range strings.Split(logged, "\n") {
			if strings.Contains(l, tag) {
				return resp.StatusCode, string(b), l
			}
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("no access-log line for %s", listener)
		}
	}
}

const resetBefore = "upstream connect error or disconnect/reset before headers. reset reason: "

// An upstream request that fails before response headers is answered as
// Envoy's router answers it, on both listeners: 503, the reset reason in the
// body, flag UF or UC and the details in the access log.
func TestUpstreamFailuresAnswerAsEnvoy(t *testing.T) {
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		return addr
	}
	// hangsUp accepts the request and closes the connection unanswered.
	hangsUp := func(t *testing.T) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	// stalled is a dial that does not come back before its deadline, as on
	// a host that did not run the gateway for longer than connect_timeout:
	// the kernel may have completed the handshake, Go still reports the
	// timeout.
	stalled := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	cases := []struct {
		name    string
		target  func(*testing.T) string
		opts    Options
		reason  string
		flags   string
		details string
	}{
		{"refused", refused, Options{}, "remote connection failure", "UF", "upstream_reset_before_response_started{remote_connection_failure|dial_tcp_"},
		{"connect timeout", hangsUp, Options{Dial: stalled, ConnectTimeout: 50 * time.Millisecond}, "connection timeout", "UF", "upstream_reset_before_response_started{connection_timeout|dial_tcp_"},
		{"hang-up before headers", hangsUp, Options{}, "connection termination", "UC", "upstream_reset_before_response_started{connection_termination|"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newUpstreamRig(t, c.target(t), c.opts)
			for _, listener := range []string{"plain_8080", "llm_8081"} {
				status, body, line := r.post(t, listener)
				require.Equal(t, http.StatusServiceUnavailable, status, listener)
				require.True(t, strings.HasPrefix(body, resetBefore+c.reason+", transport failure reason: "), "%s: %q", listener, body)
				require.Contains(t, line, " flags="+c.flags+" ", listener)
				require.Contains(t, line, " details="+c.details, listener)
			}
		})
	}
}

// A new upstream connection may take the cluster's connect_timeout from
// envoy.yaml, or Options.ConnectTimeout where set (the benchmark runner's
// longer one), and no more: the dial's deadline says which.
func TestConnectTimeoutBoundsTheDial(t *testing.T) {
	pod := newPod(t)
	for _, c := range []struct {
		name string
		opt  time.Duration
		want time.Duration
	}{
		{"envoy.yaml", 0, time.Second},
		{"override", 45 * time.Second, 45 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var deadline, dialed time.Time
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				mu.Lock()
				deadline, _ = ctx.Deadline()
				dialed = time.Now()
				mu.Unlock()
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}
			r := newUpstreamRig(t, pod.addr(), Options{Dial: dial, ConnectTimeout: c.opt})
			sent := time.Now()
			status, _, _ := r.post(t, "plain_8080")
			require.Equal(t, http.StatusOK, status)
			mu.Lock()
			defer mu.Unlock()
			// The timer starts after the request was sent and before the
			// dialer runs.
			require.False(t, deadline.Before(sent.Add(c.want)), "deadline %v is less than %v after sending", deadline.Sub(sent), c.want)
			require.False(t, deadline.After(dialed.Add(c.want)), "deadline %v is more than %v after dialing", deadline.Sub(dialed), c.want)
		})
	}
}
