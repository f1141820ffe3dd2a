package extproc

// Side-by-side benchmarks of the two ways a gateway asks picker-svc for a
// pick: Envoy's ext_proc gRPC stream (this package) and the HTTP pick API
// the Wasm filter calls (POST /v1/pick). Both drive the same real
// server.Server (the same decision) over loopback TCP with the same pool, the same request
// bodies and the same concurrency, and report requests/s and the latency
// of the pick part. See docs/performance.md, "Pick over ext_proc".

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmode "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshllm/meshllm/internal/llmapi"
	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/decision"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/resolve"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/meshllm/meshllm/picker-svc/internal/server"
)

const (
	benchPool      = "p"
	benchModel     = "meta-llama/Llama-3.1-8B-Instruct"
	benchEndpoints = 10
	// benchBodies distinct request bodies, in benchPrefixGroups groups that
	// share a system prompt, so the prefix scorer sees hits and misses.
	benchBodies       = 64
	benchPrefixGroups = 8
)

// bothDoors is one decision behind both doors: ext_proc (the Decider)
// and the HTTP pick API (Handler).
type bothDoors struct {
	*decision.Decider
	http *server.Server
}

func (b bothDoors) Handler() http.Handler { return b.http.Handler() }

// benchPicker is a real decision.Decider and server.Server over a
// PREFIX_CACHE pool of benchEndpoints endpoints with varied load, and the
// pool's addresses.
func benchPicker(tb testing.TB) (bothDoors, map[string]bool) {
	tb.Helper()
	log := slog.New(slog.DiscardHandler)
	// Pollers scrape once at start (127.0.0.x:1 refuses at once: one failure,
	// fewer than MaxFailures) and then not for an hour: the snapshots below
	// stay as set, and no scrape traffic competes with the picks (scrape
	// cost is measured by the scrape package's benchmarks).
	mgr := scrape.NewManager(scrape.Config{Interval: time.Hour, Timeout: 10 * time.Millisecond, Logger: log})
	tb.Cleanup(mgr.Close)
	store := datastore.New(mgr, log, nil)
	store.ReplaceObjects(inference.Objects{Pools: []inference.Pool{{Name: benchPool, TargetPort: 1, Strategy: pickapi.StrategyPrefixCache}}})
	addrs := map[string]bool{}
	var list []string
	for i := 1; i <= benchEndpoints; i++ {
		a := fmt.Sprintf("127.0.0.%d:1", i)
		addrs[a] = true
		list = append(list, a)
	}
	store.SetEndpoints(benchPool, list)
	r := rand.New(rand.NewPCG(1, 2))
	// ScrapedAt in the future: fresh for the whole run without a poller.
	fresh := time.Now().Add(time.Hour)
	for _, ep := range store.View().Pools[benchPool].Endpoints {
		// What vLLM's /metrics shows of an 8B model on one GPU under load
		// (the scheduling benchmarks use the same ranges).
		ep.Store(&scrape.Snapshot{Waiting: float64(r.IntN(5)), Running: float64(r.IntN(64)), KVCacheUsage: r.Float64() * 0.8,
			BaseModel: benchModel, MaxLoRA: 4, RunningAdapters: []string{"lora-a", "lora-b"}, ScrapedAt: fresh, RequestedAt: fresh,
			NumGPUBlocks: 8000, BlockSize: 16})
	}
	sched, err := scheduling.New(scheduling.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	m := server.NewMetrics()
	dec := decision.New(store, resolve.New(nil), sched, decision.NewMetrics(m.Registry), log)
	return bothDoors{Decider: dec, http: server.New(store, dec, m)}, addrs
}

var benchWords = strings.Fields(`the a of to and in is that for it as with was on be by this are or from at
which an have not they has but one all their were can there been more if will other when would who so
model request token cache endpoint server latency queue answer prompt system user assistant context
document section table figure result value policy service network cluster region customer order`)

// benchText is about n bytes of word salad from r.
func benchText(r *rand.Rand, n int) string {
	var sb strings.Builder
	for sb.Len() < n {
		if sb.Len() > 0 {
			if r.IntN(12) == 0 {
				sb.WriteString(".\n")
			} else {
				sb.WriteByte(' ')
			}
		}
		sb.WriteString(benchWords[r.IntN(len(benchWords))])
	}
	return sb.String()
}

// benchRequestBodies are benchBodies /v1/completions bodies of about 6 KB:
// a 4 KB system prompt shared within a group, then 2 KB of the request's own.
func benchRequestBodies(tb testing.TB) [][]byte {
	tb.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	systems := make([]string, benchPrefixGroups)
	for i := range systems {
		systems[i] = benchText(r, 4000)
	}
	out := make([][]byte, benchBodies)
	for i := range out {
		b, err := json.Marshal(map[string]any{"model": benchModel,
			"prompt":     systems[i%benchPrefixGroups] + "\n\nUser: " + benchText(r, 1900) + "\nAssistant:",
			"max_tokens": 256, "temperature": 0.7, "top_p": 0.95, "stream": false, "user": "bench-" + strconv.Itoa(i)})
		if err != nil {
			tb.Fatal(err)
		}
		if len(b) < 5800 || len(b) > 6400 {
			tb.Fatalf("body %d is %d bytes, want about 6 KB", i, len(b))
		}
		out[i] = b
	}
	return out
}

// A non-streamed completion answer of about 1 KB, what vLLM sends back.
var benchResponseBody = []byte(`{"id":"cmpl-7c1f0a9e2b8d4f3a9c6e5d4b3a291807","object":"text_completion","created":1767225600,` +
	`"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"text":" ` + strings.Repeat("The answer is in the table above. ", 24) +
	`","logprobs":null,"finish_reason":"stop","stop_reason":null,"prompt_logprobs":null}],` +
	`"usage":{"prompt_tokens":1530,"total_tokens":1730,"completion_tokens":200,"prompt_tokens_details":null}}`)

// extprocMessages are what Envoy's ext_proc filter sends for one request
// (full duplex, as the upstream picker is deployed), built once per body:
// the client shares the two cores with the server, so it builds nothing
// per request that Envoy would build in C++.
type extprocMessages struct {
	headers, body, respHeaders, respBody *extprocv3.ProcessingRequest
	bodyLen                              int
}

func newExtprocMessages(body []byte) *extprocMessages {
	hv := func(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }
	return &extprocMessages{
		headers: &extprocv3.ProcessingRequest{
			ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: procmode.ProcessingMode_FULL_DUPLEX_STREAMED,
				ResponseBodyMode: procmode.ProcessingMode_FULL_DUPLEX_STREAMED},
			Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
				Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					hv(":method", "POST"), hv(":path", "/v1/completions"), hv(":authority", "llm.example.com"), hv(":scheme", "https"),
					hv("content-type", "application/json"), hv("content-length", strconv.Itoa(len(body))),
					hv("authorization", "Bearer sk-0123456789abcdef0123456789abcdef"), hv("user-agent", "OpenAI/Python 1.82.0"),
					hv("accept", "application/json"), hv("x-request-id", "5f0c8b9e-3c1d-4b7a-9e2f-8d6a4c2b1e0f"),
					hv("x-forwarded-proto", "https"), hv("x-envoy-external-address", "203.0.113.7"),
				}}}}},
		body: &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}},
		respHeaders: &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				hv(":status", "200"), hv("content-type", "application/json"), hv("content-length", strconv.Itoa(len(benchResponseBody))),
				hv("date", "Thu, 01 Jan 2026 00:00:00 GMT"), hv("server", "uvicorn"),
			}}}}},
		respBody: &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: benchResponseBody, EndOfStream: true}}},
		bodyLen: len(body),
	}
}

// extprocExchange is one request over its own stream: request headers, the
// body in one chunk ending the stream, the two answers (held headers with
// the destination, then the body), the response headers and one response
// body chunk ending the stream with their answers, then the stream's end.
// It returns the pick part: from sending the body to receiving its answer.
func extprocExchange(ctx context.Context, c extprocv3.ExternalProcessorClient, m *extprocMessages, pool map[string]bool) (time.Duration, error) {
	st, err := c.Process(ctx)
	if err != nil {
		return 0, err
	}
	if err := st.Send(m.headers); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := st.Send(m.body); err != nil {
		return 0, err
	}
	hr, err := st.Recv()
	if err != nil {
		return 0, err
	}
	br, err := st.Recv()
	if err != nil {
		return 0, err
	}
	pick := time.Since(start)
	var dest string
	for _, h := range hr.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if h.GetHeader().GetKey() == pickapi.HeaderDestinationEndpoint {
			dest = string(h.GetHeader().GetRawValue())
		}
	}
	if primary, _, _ := strings.Cut(dest, ","); !pool[primary] {
		return 0, fmt.Errorf("headers answer names %q, not an endpoint of the pool: %v", dest, hr)
	}
	sb := br.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	if !sb.GetEndOfStream() || len(sb.GetBody()) != m.bodyLen {
		return 0, fmt.Errorf("body answer: %d bytes, end of stream %v; want the %d-byte body, ended", len(sb.GetBody()), sb.GetEndOfStream(), m.bodyLen)
	}
	if err := st.Send(m.respHeaders); err != nil {
		return 0, err
	}
	if r, err := st.Recv(); err != nil || r.GetResponseHeaders() == nil {
		return 0, fmt.Errorf("response headers answer %v, %v", r, err)
	}
	if err := st.Send(m.respBody); err != nil {
		return 0, err
	}
	r, err := st.Recv()
	if err != nil {
		return 0, err
	}
	if echo := r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse(); !echo.GetEndOfStream() || len(echo.GetBody()) != len(benchResponseBody) {
		return 0, fmt.Errorf("response body answer %v", r)
	}
	if err := st.CloseSend(); err != nil {
		return 0, err
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("the stream should end after the response, got %v", err)
	}
	return pick, nil
}

// startExtproc serves dec over ext_proc on a loopback TCP port, as
// picker-svc's app does (grpc.NewServer with no options), and returns a
// client on one connection, over which its streams are multiplexed (HTTP/2)
// as a gRPC client does.
func startExtproc(tb testing.TB, dec Decider) extprocv3.ExternalProcessorClient {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, New(dec, Config{Pool: benchPool}, slog.New(slog.DiscardHandler)))
	go func() { _ = gs.Serve(lis) }()
	tb.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

// httpPicks are the pick requests the Wasm filter sends for the same
// bodies: it reads and hashes the body inside Envoy, so the picker
// receives only the hashes. Done is filled per request.
func httpPicks(tb testing.TB, bodies [][]byte) []pickapi.PickRequest {
	tb.Helper()
	out := make([]pickapi.PickRequest, len(bodies))
	for i, b := range bodies {
		r, err := llmapi.ParseRequest(b, 0)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = pickapi.PickRequest{Pool: benchPool, Model: r.Model, PrefixHashes: pickapi.PrefixHashes(nil, r.Model, r.Prompt), PromptBytes: len(r.Prompt)}
	}
	return out
}

// httpClient is one sender of picks, as one Envoy worker's filter: it
// reports the end of its previous request in the next pick (Done), which
// over ext_proc the stream's end does.
type httpClient struct {
	hc   *http.Client
	url  string
	buf  []byte
	done []uint64
}

// pick is one POST /v1/pick; it returns the round trip.
func (c *httpClient) pick(req pickapi.PickRequest, pool map[string]bool) (time.Duration, error) {
	req.Done = c.done
	c.buf = req.AppendJSON(c.buf[:0])
	start := time.Now()
	resp, err := c.hc.Post(c.url, "application/json", bytes.NewReader(c.buf))
	if err != nil {
		return 0, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	pr, err := pickapi.ParsePickResponse(b)
	if err != nil {
		return 0, err
	}
	if !pool[pr.Endpoint] {
		return 0, fmt.Errorf("pick names %q, not an endpoint of the pool", pr.Endpoint)
	}
	c.done = append(c.done[:0], pr.PickID)
	return d, nil
}

// benchParallelism: b.SetParallelism values; RunParallel starts that many
// goroutines per GOMAXPROCS (on the 2-core box: 4, 8 and 32 concurrent
// requests, the HTTP benchmark's client counts).
var benchParallelism = []int{2, 4, 16}

// report records requests/s over the timed run and the pick part's p50 and p99.
func report(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "picks/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}

// BenchmarkPickExtProc: whole ext_proc exchanges (see extprocExchange)
// against the real picker on loopback TCP, each on its own stream of one
// shared connection, from 4, 8 or 32 goroutines (closed loop). The pick
// part includes reading, checking and hashing the 6 KB body in the picker
// and streaming it back. picks/s counts whole exchanges.
func BenchmarkPickExtProc(b *testing.B) {
	for _, p := range benchParallelism {
		b.Run(fmt.Sprintf("streams=%d", p*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			srv, pool := benchPicker(b)
			client := startExtproc(b, srv)
			var msgs []*extprocMessages
			for _, body := range benchRequestBodies(b) {
				msgs = append(msgs, newExtprocMessages(body))
			}
			ctx := context.Background()
			if _, err := extprocExchange(ctx, client, msgs[0], pool); err != nil { // connect outside the timed run
				b.Fatal(err)
			}
			var mu sync.Mutex
			all := make([]time.Duration, 0, b.N)
			var n atomic.Uint64
			b.SetParallelism(p)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var lat []time.Duration
				for pb.Next() {
					m := msgs[(n.Add(1)-1)%uint64(len(msgs))]
					d, err := extprocExchange(ctx, client, m, pool)
					if err != nil {
						b.Error(err)
						return
					}
					lat = append(lat, d)
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			report(b, all, elapsed)
		})
	}
}

// BenchmarkPickHTTPLikeExtProc: the same picker, pool, bodies and
// concurrency as BenchmarkPickExtProc, asked as the Wasm filter asks:
// one POST /v1/pick per request with the body's prefix hashes (hashed by
// the filter, outside the timed part, as inside Envoy), over keep-alive
// HTTP/1.1 connections, one per goroutine. The pick part is the POST's
// round trip; there is no response phase (the filter reports the
// request's end in its next pick).
func BenchmarkPickHTTPLikeExtProc(b *testing.B) {
	for _, p := range benchParallelism {
		clients := p * runtime.GOMAXPROCS(0)
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			srv, pool := benchPicker(b)
			hs := httptest.NewServer(srv.Handler())
			b.Cleanup(hs.Close)
			tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			b.Cleanup(tr.CloseIdleConnections)
			hc := &http.Client{Transport: tr}
			url := hs.URL + pickapi.Path
			picks := httpPicks(b, benchRequestBodies(b))
			warm := &httpClient{hc: hc, url: url}
			if _, err := warm.pick(picks[0], pool); err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			all := make([]time.Duration, 0, b.N)
			var n atomic.Uint64
			b.SetParallelism(p)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				c := &httpClient{hc: hc, url: url}
				var lat []time.Duration
				for pb.Next() {
					req := picks[(n.Add(1)-1)%uint64(len(picks))]
					d, err := c.pick(req, pool)
					if err != nil {
						b.Error(err)
						return
					}
					lat = append(lat, d)
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			report(b, all, elapsed)
		})
	}
}

// BenchmarkExtProcParseAndHash: the picker-side work ext_proc adds to a
// pick, in process: reading and checking one 6 KB body as vLLM would and
// hashing its prompt (over HTTP the filter does this inside Envoy).
func BenchmarkExtProcParseAndHash(b *testing.B) {
	bodies := benchRequestBodies(b)
	var hashes []uint64
	b.ReportAllocs()
	total := 0
	for _, body := range bodies {
		total += len(body)
	}
	b.SetBytes(int64(total / len(bodies)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := llmapi.ParseRequest(bodies[i%len(bodies)], 0)
		if err != nil {
			b.Fatal(err)
		}
		hashes = pickapi.PrefixHashes(hashes[:0], r.Model, r.Prompt)
	}
}

// The benchmarks' exchanges work end to end: every ext_proc exchange and
// every HTTP pick names an endpoint of the pool and leaves its id to be
// reported as done with the next one.
func TestBenchExchanges(t *testing.T) {
	srv, pool := benchPicker(t)
	client := startExtproc(t, srv)
	bodies := benchRequestBodies(t)
	for _, body := range bodies {
		if _, err := extprocExchange(context.Background(), client, newExtprocMessages(body), pool); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	c := &httpClient{hc: hs.Client(), url: hs.URL + pickapi.Path}
	for _, req := range httpPicks(t, bodies) {
		if _, err := c.pick(req, pool); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.done) != 1 {
		t.Fatalf("the client should hold its last pick's id to report, holds %v", c.done)
	}
}
