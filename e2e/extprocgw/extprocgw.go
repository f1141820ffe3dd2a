// Package extprocgw is a test gateway that routes through an endpoint
// picker over Envoy's ext_proc, as a Gateway API implementation does for an
// HTTPRoute whose backendRef is an InferencePool. It reproduces what the
// picker relies on, as Envoy's API defines it (go-control-plane v1.40.0:
// envoy/extensions/filters/http/ext_proc/v3/processing_mode.pb.go, the
// BodySendMode comments, and service/ext_proc/v3/external_processor.pb.go):
//
//   - one gRPC Process stream per HTTP request, opened on its headers;
//   - request body FULL_DUPLEX_STREAMED: body chunks are sent as they
//     arrive, the last with end_of_stream; the server may hold its answer
//     to the headers until it has the body, must keep the headers-body
//     order, and streams the body back (StreamedBodyResponse), which is
//     what goes upstream;
//   - the response's headers and body are sent too (FULL_DUPLEX_STREAMED),
//     each chunk forwarded to the client as the server sends it back;
//   - protocol_config in the first message says both modes;
//   - header mutations apply before routing; an ImmediateResponse answers
//     the client in the server's name;
//   - a stream that fails or times out (message_timeout): failure_mode_allow
//     false answers 500; true goes on unchanged (the cluster's balancing).
//
// Routing follows the endpoint-picker protocol (Gateway API Inference
// Extension, docs/proposals/004-endpoint-picker-protocol): the first
// endpoint of the envoy.lb x-gateway-destination-endpoint metadata that is
// a host of the pool, else the cluster's own balancing (round robin). A
// destination header the client sent is not metadata: it routes nothing.
package extprocgw

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmode "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Options of a gateway.
type Options struct {
	// ExtProc is the endpoint picker's gRPC address.
	ExtProc string
	// Endpoints are the InferencePool's pods (the cluster's hosts).
	Endpoints []string
	// FailOpen is ext_proc's failure_mode_allow (the InferencePool's
	// endpointPickerRef failureMode FailOpen).
	FailOpen bool
	// TLS dials the picker over TLS accepting any certificate, as Envoy
	// AI Gateway and kgateway do.
	TLS bool
	// MessageTimeout bounds each wait for the picker (Envoy's
	// message_timeout; default 10 s here, generous for loaded CI hosts).
	MessageTimeout time.Duration
	// Addr is where the gateway listens; default a free loopback port.
	Addr string
}

// Gateway is a running ext_proc data plane.
type Gateway struct {
	o      Options
	conn   *grpc.ClientConn
	client extprocv3.ExternalProcessorClient
	srv    *http.Server
	addr   string
	up     *http.Transport
	rr     atomic.Uint64

	mu    sync.Mutex
	count map[string]int
}

// Start listens on o.Addr (default a free loopback port).
func Start(o Options) (*Gateway, error) {
	if o.MessageTimeout <= 0 {
		o.MessageTimeout = 10 * time.Second
	}
	creds := insecure.NewCredentials()
	if o.TLS {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // as the gateways named above do
	}
	conn, err := grpc.NewClient(o.ExtProc, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	g := &Gateway{o: o, conn: conn, client: extprocv3.NewExternalProcessorClient(conn), addr: ln.Addr().String(),
		up: &http.Transport{MaxIdleConnsPerHost: 64}, count: map[string]int{}}
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = g.srv.Serve(ln) }()
	return g, nil
}

// URL is the gateway's base URL.
func (g *Gateway) URL() string { return "http://" + g.addr }

// UpstreamCounts is how many requests each endpoint was sent.
func (g *Gateway) UpstreamCounts() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int, len(g.count))
	for k, v := range g.count {
		out[k] = v
	}
	return out
}

// Close stops the gateway.
func (g *Gateway) Close() {
	_ = g.srv.Close()
	_ = g.conn.Close()
	g.up.CloseIdleConnections()
}

// errPicker is a failed exchange with the picker.
var errPicker = errors.New("ext_proc")

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st, ex, err := g.request(ctx, r, body)
	if err != nil {
		if !g.o.FailOpen {
			http.Error(w, "ext_proc: "+err.Error(), http.StatusInternalServerError)
			return
		}
		st, ex = nil, &exchange{header: r.Header.Clone(), body: body}
	}
	if ex.immediate != nil {
		ir := ex.immediate
		for _, h := range ir.GetHeaders().GetSetHeaders() {
			w.Header().Set(h.GetHeader().GetKey(), value(h.GetHeader()))
		}
		w.WriteHeader(int(ir.GetStatus().GetCode()))
		_, _ = w.Write(ir.GetBody())
		return
	}
	ep := g.route(ex.destination)
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+ep+r.URL.RequestURI(), bytes.NewReader(ex.body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = ex.header
	req.Header.Del("content-length")
	req.ContentLength = int64(len(ex.body))
	resp, err := g.up.RoundTrip(req)
	if err != nil {
		http.Error(w, "upstream connect error: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer resp.Body.Close()
	g.respond(w, st, resp)
}

// exchange is what the picker decided for one request.
type exchange struct {
	header      http.Header
	body        []byte
	destination string
	immediate   *extprocv3.ImmediateResponse
}

// request runs the request phases: headers and body sent at once, then
// the held headers' answer and the streamed body read back.
func (g *Gateway) request(ctx context.Context, r *http.Request, body []byte) (extprocv3.ExternalProcessor_ProcessClient, *exchange, error) {
	st, err := g.client.Process(ctx)
	if err != nil {
		return nil, nil, err
	}
	hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte(r.Method)}, {Key: ":path", RawValue: []byte(r.URL.RequestURI())},
		{Key: ":authority", RawValue: []byte(r.Host)},
	}}
	for k, vs := range r.Header {
		for _, v := range vs {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
		}
	}
	pc := &extprocv3.ProtocolConfiguration{RequestBodyMode: procmode.ProcessingMode_FULL_DUPLEX_STREAMED,
		ResponseBodyMode: procmode.ProcessingMode_FULL_DUPLEX_STREAMED}
	first := &extprocv3.ProcessingRequest{ProtocolConfig: pc, Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: len(body) == 0}}}
	if err := st.Send(first); err != nil {
		return nil, nil, err
	}
	// Envoy streams the body in the buffers it receives; 16 KiB chunks here.
	for off := 0; off < len(body); off += 16 << 10 {
		end := min(off+16<<10, len(body))
		if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: body[off:end], EndOfStream: end == len(body)}}}); err != nil {
			return nil, nil, err
		}
	}
	ex := &exchange{header: r.Header.Clone()}
	resp, err := g.recv(st)
	if err != nil {
		return nil, nil, err
	}
	if ir := resp.GetImmediateResponse(); ir != nil {
		ex.immediate = ir
		return st, ex, nil
	}
	hr := resp.GetRequestHeaders()
	if hr == nil {
		return nil, nil, fmt.Errorf("%w: got %T before the request headers' answer (full duplex)", errPicker, resp.GetResponse())
	}
	for _, h := range hr.GetResponse().GetHeaderMutation().GetSetHeaders() {
		ex.header.Set(h.GetHeader().GetKey(), value(h.GetHeader()))
	}
	for _, k := range hr.GetResponse().GetHeaderMutation().GetRemoveHeaders() {
		ex.header.Del(k)
	}
	ex.destination = resp.GetDynamicMetadata().GetFields()["envoy.lb"].GetStructValue().
		GetFields()["x-gateway-destination-endpoint"].GetStringValue()
	if len(body) == 0 {
		return st, ex, nil
	}
	for {
		resp, err := g.recv(st)
		if err != nil {
			return nil, nil, err
		}
		if resp.GetRequestBody() == nil {
			return nil, nil, fmt.Errorf("%w: got %T while reading the streamed body", errPicker, resp.GetResponse())
		}
		sb := resp.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		ex.body = append(ex.body, sb.GetBody()...)
		if sb.GetEndOfStream() {
			return st, ex, nil
		}
	}
}

// recv waits for the picker's next message at most MessageTimeout.
func (g *Gateway) recv(st extprocv3.ExternalProcessor_ProcessClient) (*extprocv3.ProcessingResponse, error) {
	type result struct {
		r   *extprocv3.ProcessingResponse
		err error
	}
	ch := make(chan result, 1)
	go func() { r, err := st.Recv(); ch <- result{r, err} }()
	t := time.NewTimer(g.o.MessageTimeout)
	defer t.Stop()
	select {
	case res := <-ch:
		return res.r, res.err
	case <-t.C:
		return nil, fmt.Errorf("%w: no answer within %s", errPicker, g.o.MessageTimeout)
	}
}

// route is override_host: the first destination that is a cluster host.
func (g *Gateway) route(dest string) string {
	chosen := ""
	for _, cand := range strings.Split(dest, ",") {
		for _, e := range g.o.Endpoints {
			if e == strings.TrimSpace(cand) {
				chosen = e
				break
			}
		}
		if chosen != "" {
			break
		}
	}
	if chosen == "" {
		chosen = g.o.Endpoints[int(g.rr.Add(1)-1)%len(g.o.Endpoints)]
	}
	g.mu.Lock()
	g.count[chosen]++
	g.mu.Unlock()
	return chosen
}

// respond sends the response through the picker's response phases (when
// there is a stream) and on to the client.
func (g *Gateway) respond(w http.ResponseWriter, st extprocv3.ExternalProcessor_ProcessClient, resp *http.Response) {
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	if st != nil {
		hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte(strconv.Itoa(resp.StatusCode))}}}
		for k, vs := range resp.Header {
			for _, v := range vs {
				hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
			}
		}
		_ = st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: hm}}})
		r, err := g.recv(st)
		if err != nil {
			st = nil // the picker is gone: the response goes on untouched
		}
		for _, h := range r.GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
			w.Header().Set(h.GetHeader().GetKey(), value(h.GetHeader()))
		}
		for _, k := range r.GetResponseHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders() {
			w.Header().Del(k)
		}
	}
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		eos := err != nil
		chunk := buf[:n]
		if st != nil && (n > 0 || eos) {
			if serr := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
				ResponseBody: &extprocv3.HttpBody{Body: chunk, EndOfStream: eos}}}); serr == nil {
				if r, rerr := g.recv(st); rerr == nil {
					if sr := r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse(); sr != nil {
						chunk = sr.GetBody()
					}
				}
			}
		}
		if len(chunk) > 0 {
			_, _ = w.Write(chunk)
			if fl != nil {
				fl.Flush()
			}
		}
		if eos {
			if st != nil {
				_ = st.CloseSend()
			}
			return
		}
	}
}

func value(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}
