package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshllm/meshllm/e2e/wasmhost"
)

// hop-by-hop headers are not forwarded (RFC 9110 7.6.1), as Envoy does.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "te": true,
	"trailer": true, "transfer-encoding": true, "upgrade": true,
}

// exchange is what the access log needs of one request.
type exchange struct {
	start    time.Time
	method   string
	path     string
	proto    string
	status   int
	flags    string
	details  string // %RESPONSE_CODE_DETAILS%
	upstream string
	rx, tx   int
	state    map[string]string
	// failure is the 503 body of an upstream request that failed.
	failure string
}

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := &exchange{start: time.Now(), method: r.Method, path: r.URL.RequestURI(), proto: r.Proto, flags: "-"}
	defer l.g.writeAccessLog(l.spec, ex)
	// early_header_mutation_extensions: before routing and before any filter,
	// so a removed header is gone even when the filter is not in the chain.
	for _, h := range l.spec.StripHeaders {
		r.Header.Del(h)
	}
	if l.workers == nil {
		l.plain(w, r, ex)
		return
	}
	l.filtered(w, r, ex)
}

// plain proxies without the filter: the router alone (listener 8080, and a
// FAIL_OPEN listener whose VM failed). The cluster's override_host policy
// still reads its header, as the request carries it.
func (l *listener) plain(w http.ResponseWriter, r *http.Request, ex *exchange) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		ex.status = 400
		w.WriteHeader(400)
		return
	}
	ex.rx = len(body)
	c := l.g.clusters[l.spec.Cluster]
	override := ""
	if c.spec.OverrideHeader != "" {
		override = r.Header.Get(c.spec.OverrideHeader)
	}
	ep, ok := c.pick(override)
	if !ok {
		ex.flags, ex.details = "UH", "no_healthy_upstream"
		l.g.localReply(w, ex, 503, "no healthy upstream")
		return
	}
	ex.upstream = ep
	resp, err := c.upstream(r.Context(), ep, r.Method, r.URL.RequestURI(), r.Host, r.Header, body)
	if err != nil {
		if l.upstreamFailed(r.Context(), ex, ep, err) {
			l.g.localReply(w, ex, 503, ex.failure)
		}
		return
	}
	ex.details = "via_upstream"
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if !hopByHop[strings.ToLower(k)] {
			w.Header()[k] = vs
		}
	}
	ex.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			ex.tx += n
			_, _ = w.Write(buf[:n])
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// filtered runs the request through the Wasm filter with Envoy's order and
// pause semantics, then proxies it where the filter (and the cluster's
// override_host policy) say.
func (l *listener) filtered(w http.ResponseWriter, r *http.Request, ex *exchange) {
	vm, failed := l.filterVM()
	if vm == nil {
		l.plain(w, r, ex) // FAIL_OPEN: the filter is not in this stream's chain
		return
	}
	if failed {
		l.failStream(w, ex, vm.Failed())
		return
	}
	s, err := vm.NewStream()
	if err != nil {
		l.failStream(w, ex, err)
		return
	}
	defer func() { ex.state = s.Done() }()
	ctx := r.Context()

	hdrs := [][2]string{{":method", r.Method}, {":path", r.URL.RequestURI()}, {":authority", r.Host}, {":scheme", "http"}}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if hopByHop[lk] {
			continue
		}
		for _, v := range vs {
			hdrs = append(hdrs, [2]string{lk, v})
		}
	}
	if r.ContentLength > 0 {
		hdrs = append(hdrs, [2]string{"content-length", strconv.FormatInt(r.ContentLength, 10)})
	}
	noBody := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	action, err := s.RequestHeaders(hdrs, noBody)
	if err != nil {
		l.failStream(w, ex, err)
		return
	}
	var upstreamBody []byte
	// answered reports whether the filter ended the request (a local reply,
	// or its VM failed, already written to the client).
	answered := func(err error) bool {
		if err != nil {
			l.failStream(w, ex, err)
			return true
		}
		if lr := s.LocalReply(); lr != nil {
			l.sendLocalReply(w, s, ex, lr)
			return true
		}
		return false
	}
	// resumed waits until the filter resumes a paused request; what it had
	// buffered goes upstream.
	resumed := func() bool {
		released, err := l.waitRequest(ctx, s, ex)
		if err != nil {
			l.endPaused(w, s, vm, ex, err)
			return false
		}
		upstreamBody = append(upstreamBody, released...)
		return !answered(nil)
	}
	if answered(nil) {
		return
	}
	if action == wasmhost.Pause && !vm.AllowsBodyWhileHeadersPaused() {
		// proxy-wasm-cpp-host turns the pause into
		// StopAllIterationAndWatermark: no body callback until resumed.
		if !resumed() {
			return
		}
	}
	if !noBody {
		buf := make([]byte, 64<<10)
		for {
			n, rerr := io.ReadFull(r.Body, buf)
			eof := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
			if rerr != nil && !eof {
				ex.flags = "DC"
				ex.status = 0
				return
			}
			ex.rx += n
			_, released, err := s.RequestBody(buf[:n], eof)
			upstreamBody = append(upstreamBody, released...)
			if answered(err) {
				return
			}
			if eof {
				break
			}
		}
	}
	// Always collect: a pick may resume the request before this goroutine
	// looks, and what the filter left buffered must still go upstream.
	if !resumed() {
		return
	}

	// The router: the route's cluster, the host from override_host.
	c := l.g.clusters[l.spec.Cluster]
	method, path, authority := r.Method, r.URL.RequestURI(), r.Host
	out := http.Header{}
	override := ""
	for _, kv := range s.ReqHeaders {
		switch {
		case kv[0] == ":method":
			method = kv[1]
		case kv[0] == ":path":
			path = kv[1]
		case kv[0] == ":authority":
			authority = kv[1]
		case strings.HasPrefix(kv[0], ":"), kv[0] == "content-length":
		default:
			if kv[0] == c.spec.OverrideHeader {
				override = kv[1]
			}
			out.Add(kv[0], kv[1])
		}
	}
	ep, ok := c.pick(override)
	if !ok {
		ex.flags, ex.details = "UH", "no_healthy_upstream"
		l.sendSynthetic(w, s, ex, 503, "no healthy upstream")
		return
	}
	ex.upstream = ep
	resp, err := c.upstream(ctx, ep, method, path, authority, out, upstreamBody)
	if err != nil {
		if l.upstreamFailed(ctx, ex, ep, err) {
			l.sendSynthetic(w, s, ex, 503, ex.failure)
		}
		return
	}
	defer resp.Body.Close()
	ex.details = "via_upstream"
	l.respond(w, s, ex, resp.StatusCode, resp.Header, resp.Body)
}

// waitRequest waits for the filter to resume a paused request, for at most
// the stream idle timeout (no data moves on a paused stream). A VM that
// failed meanwhile never resumes it: Envoy drops the callout answer of a
// failed VM and fails no stream on a trap inside it, so only the idle timer
// (or the client leaving) ends the request.
func (l *listener) waitRequest(ctx context.Context, s *wasmhost.Stream, ex *exchange) ([]byte, error) {
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if l.spec.StreamIdleTimeout > 0 {
		wctx, cancel = context.WithTimeout(ctx, l.spec.StreamIdleTimeout)
	}
	defer cancel()
	released, err := s.WaitRequest(wctx)
	if err != nil && wctx.Err() == nil {
		l.g.log.Printf("listener %s: wasm VM failed while the request was paused; it stays paused: %v", l.spec.Name, err)
		<-wctx.Done()
	}
	if err != nil {
		return nil, wctx.Err()
	}
	return released, nil
}

// endPaused ends a paused request that will not be resumed: the client left
// (DC) or the stream idle timer fired (Envoy's local reply 408 "stream
// timeout", flag SI, through the filter if its VM still runs).
func (l *listener) endPaused(w http.ResponseWriter, s *wasmhost.Stream, vm *wasmhost.VM, ex *exchange, err error) {
	if !errors.Is(err, context.DeadlineExceeded) {
		ex.flags, ex.status = "DC", 0
		return
	}
	ex.flags, ex.details = "SI", detailsIdleTimeout
	if vm.Failed() != nil {
		l.g.localReply(w, ex, http.StatusRequestTimeout, "stream timeout")
		return
	}
	l.sendSynthetic(w, s, ex, http.StatusRequestTimeout, "stream timeout")
}

// respond runs a response through the filter's encoder callbacks, chunk by
// chunk as it arrives, and writes what the filter releases.
func (l *listener) respond(w http.ResponseWriter, s *wasmhost.Stream, ex *exchange, status int, header http.Header, body io.Reader) {
	hs := [][2]string{{":status", strconv.Itoa(status)}}
	for k, vs := range header {
		lk := strings.ToLower(k)
		if hopByHop[lk] {
			continue
		}
		for _, v := range vs {
			hs = append(hs, [2]string{lk, v})
		}
	}
	if _, err := s.ResponseHeaders(hs, body == nil); err != nil {
		l.failStream(w, ex, err)
		return
	}
	for _, kv := range s.RespHeaders {
		if !strings.HasPrefix(kv[0], ":") {
			w.Header().Add(kv[0], kv[1])
		}
	}
	ex.status = status
	w.WriteHeader(status)
	if body == nil {
		return
	}
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := body.Read(buf)
		end := rerr != nil
		if n == 0 && !end {
			continue
		}
		_, out, err := s.ResponseBody(buf[:n], end)
		if err != nil {
			l.resetStream(w, ex, err)
		}
		if len(out) > 0 {
			ex.tx += len(out)
			_, _ = w.Write(out)
			if flusher != nil {
				flusher.Flush()
			}
		}
		if end {
			return
		}
	}
}

// sendLocalReply sends the filter's own reply, through its encoder
// callbacks as Envoy does with local replies.
func (l *listener) sendLocalReply(w http.ResponseWriter, s *wasmhost.Stream, ex *exchange, lr *wasmhost.LocalReply) {
	h := http.Header{}
	for _, kv := range lr.Headers {
		h.Add(kv[0], kv[1])
	}
	if h.Get("content-type") == "" {
		h.Set("content-type", "text/plain")
	}
	ex.flags, ex.details = "UAEX", lr.Details
	l.respond(w, s, ex, lr.Status, h, bytes.NewReader(lr.Body))
}

// sendSynthetic is Envoy's own local reply (no upstream, connect failure).
func (l *listener) sendSynthetic(w http.ResponseWriter, s *wasmhost.Stream, ex *exchange, status int, msg string) {
	h := http.Header{"Content-Type": {"text/plain"}}
	l.respond(w, s, ex, status, h, strings.NewReader(msg))
}

func (g *Gateway) localReply(w http.ResponseWriter, ex *exchange, status int, msg string) {
	ex.status = status
	if msg != "" {
		w.Header().Set("content-type", "text/plain")
	}
	w.WriteHeader(status)
	n, _ := io.WriteString(w, msg)
	ex.tx += n
}

// upstreamFailed records why the upstream request to ep failed before
// response headers, as Envoy's router does (Router::Filter::onUpstreamReset,
// envoy source/common/router/router.cc): flag, %RESPONSE_CODE_DETAILS%
// "upstream_reset_before_response_started{<reason>|<why>}" and the body
// "upstream connect error or disconnect/reset before headers. reset reason:
// <reason>, transport failure reason: <why>". The reasons
// (Utility::resetReasonToString, source/common/http/utility.cc):
//   - "connection timeout" (UF): no connection within the cluster's
//     connect_timeout (the pool's PoolFailureReason::Timeout, mapped in
//     UpstreamRequest::onPoolFailure, source/common/router/upstream_request.cc);
//   - "remote connection failure" (UF): the connect failed, as Envoy reports
//     any immediate or delayed connect error (ClientConnectionImpl::connect,
//     source/common/network/connection_impl.cc, raises RemoteClose);
//   - "connection termination" (UC): the connection broke before the
//     response headers came.
//
// Go's error stands in for Envoy's transport failure reason. It reports
// false when the client has left (flag DC): there is no one to answer.
// Not mirrored: on a connect failure Envoy fails every request waiting for
// that pool (ConnPoolImplBase::onConnectionEvent, purgePendingStreams), Go
// only the one whose dial failed.
func (l *listener) upstreamFailed(ctx context.Context, ex *exchange, ep string, err error) bool {
	l.g.log.Printf("listener %s: upstream %s: %v", l.spec.Name, ep, err)
	if ctx.Err() != nil {
		ex.flags, ex.status = "DC", 0
		return false
	}
	reason, flags := "connection termination", "UC"
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		reason, flags = "remote connection failure", "UF"
		if op.Timeout() {
			reason = "connection timeout"
		}
	}
	why := err.Error()
	ex.flags = flags
	ex.details = "upstream_reset_before_response_started{" + strings.ReplaceAll(reason+"|"+why, " ", "_") + "}"
	ex.failure = "upstream connect error or disconnect/reset before headers. reset reason: " + reason + ", transport failure reason: " + why
	return true
}

// upstream sends one request to ep, a member of c.
func (c *cluster) upstream(ctx context.Context, ep, method, path, authority string, h http.Header, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+ep+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Host = authority
	for k, vs := range h {
		if !hopByHop[strings.ToLower(k)] {
			req.Header[http.CanonicalHeaderKey(k)] = vs
		}
	}
	req.ContentLength = int64(len(body))
	return c.transport.RoundTrip(req)
}

func (g *Gateway) writeAccessLog(spec ListenerSpec, ex *exchange) {
	if spec.AccessLog == "" {
		return
	}
	line := formatAccessLog(spec.AccessLog, ex)
	g.logMu.Lock()
	defer g.logMu.Unlock()
	_, _ = io.WriteString(g.accessLog, line)
}

// formatAccessLog substitutes the Envoy command operators the project's
// access logs use; others print "-".
func formatAccessLog(format string, ex *exchange) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(format, '%')
		if i < 0 {
			b.WriteString(format)
			break
		}
		j := strings.IndexByte(format[i+1:], '%')
		if j < 0 {
			b.WriteString(format)
			break
		}
		b.WriteString(format[:i])
		op := format[i+1 : i+1+j]
		format = format[i+2+j:]
		b.WriteString(operator(op, ex))
	}
	return b.String()
}

func operator(op string, ex *exchange) string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	switch {
	case op == "START_TIME":
		return ex.start.UTC().Format("2006-01-02T15:04:05.000Z")
	case op == "PROTOCOL":
		return ex.proto
	case op == "RESPONSE_CODE":
		return strconv.Itoa(ex.status)
	case op == "RESPONSE_FLAGS":
		return ex.flags
	case op == "RESPONSE_CODE_DETAILS":
		return dash(ex.details)
	case op == "BYTES_RECEIVED":
		return strconv.Itoa(ex.rx)
	case op == "BYTES_SENT":
		return strconv.Itoa(ex.tx)
	case op == "DURATION":
		return strconv.FormatInt(time.Since(ex.start).Milliseconds(), 10)
	case op == "UPSTREAM_HOST":
		return dash(ex.upstream)
	case strings.HasPrefix(op, "REQ("):
		switch strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(op, "REQ("), ")")) {
		case ":method":
			return ex.method
		case ":path", "x-envoy-original-path?:path":
			return ex.path
		}
		return "-"
	case strings.HasPrefix(op, "FILTER_STATE("):
		key := strings.TrimSuffix(strings.TrimPrefix(op, "FILTER_STATE("), ")")
		key, _, _ = strings.Cut(key, ":")
		return dash(ex.state[key])
	}
	return "-"
}
