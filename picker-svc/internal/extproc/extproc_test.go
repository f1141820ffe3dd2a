package extproc

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmode "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshllm/meshllm/internal/llmapi"
	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/decision"
)

// fakeDecider answers every pick with next and records what it was asked.
type fakeDecider struct {
	mu      sync.Mutex
	next    decision.Decision
	asked   []pickapi.PickRequest
	subsets [][]string
	done    []uint64
	usage   []decision.Exchange
	// doneTokens: the completion tokens each end reported.
	doneTokens []int
}

func (f *fakeDecider) RecordExchange(e decision.Exchange) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.usage = append(f.usage, e)
}

func (f *fakeDecider) usageCalls() []decision.Exchange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]decision.Exchange(nil), f.usage...)
}

func (f *fakeDecider) Decide(req *pickapi.PickRequest, subset []string, _ time.Time) decision.Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, *req)
	f.subsets = append(f.subsets, subset)
	return f.next
}

func (f *fakeDecider) RequestEnded(id uint64, completionTokens int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done = append(f.done, id)
	f.doneTokens = append(f.doneTokens, completionTokens)
}

func (f *fakeDecider) ended() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.done...)
}

var picked = decision.Decision{Status: http.StatusOK, Pick: pickapi.PickResponse{Endpoint: "10.0.0.1:8000",
	Fallbacks: []string{"10.0.0.2:8000"}, TargetModel: "lora-b", Pool: "p", PickID: 42}}

// open starts a server on an in-memory listener and returns a client stream.
func open(t *testing.T, dec Decider, cfg Config) extprocv3.ExternalProcessor_ProcessClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, New(dec, cfg, nil))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	require.NoError(t, err)
	return stream
}

func requestHeaders(eos bool, md *corev3.Metadata, pc *extprocv3.ProtocolConfiguration) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{MetadataContext: md, ProtocolConfig: pc,
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{EndOfStream: eos,
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":path", RawValue: []byte("/v1/completions")},
				{Key: pickapi.HeaderDestinationEndpoint, RawValue: []byte("6.6.6.6:80")}, // spoofed by the client
			}}}}}
}

func requestBody(b string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: eos}}}
}

func setHeaders(t *testing.T, m *extprocv3.HeaderMutation) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range m.GetSetHeaders() {
		require.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, h.GetAppendAction(), h.GetHeader().GetKey())
		out[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	return out
}

func destination(t *testing.T, r *extprocv3.ProcessingResponse) string {
	t.Helper()
	return r.GetDynamicMetadata().GetFields()[MetadataNamespace].GetStructValue().GetFields()[pickapi.HeaderDestinationEndpoint].GetStringValue()
}

const body = `{"model":"lora","prompt":"tell me about the sea","max_tokens":5}`

// Full duplex, as the upstream picker is deployed: the headers are answered
// after the body, with the destination in the header (overwriting the
// client's) and the metadata, the same list in both; the body comes back
// rewritten to the target model; response chunks are echoed; the end of
// the response reports the pick's end.
func TestFullDuplex(t *testing.T) {
	dec := &fakeDecider{next: picked}
	st := open(t, dec, Config{Pool: "p"})
	require.NoError(t, st.Send(requestHeaders(false, nil, nil)))
	require.NoError(t, st.Send(requestBody(body[:20], false)))
	require.NoError(t, st.Send(requestBody(body[20:], true)))

	hr, err := st.Recv()
	require.NoError(t, err)
	common := hr.GetRequestHeaders().GetResponse()
	require.NotNil(t, common, "the first answer is the held headers'")
	require.True(t, common.GetClearRouteCache())
	want := "10.0.0.1:8000,10.0.0.2:8000"
	hs := setHeaders(t, common.GetHeaderMutation())
	require.Equal(t, want, hs[pickapi.HeaderDestinationEndpoint], "the client's header is overwritten")
	require.Equal(t, want, destination(t, hr), "header and metadata agree")

	br, err := st.Recv()
	require.NoError(t, err)
	sb := br.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	require.True(t, sb.GetEndOfStream())
	require.Equal(t, "lora-b", gjson.GetBytes(sb.GetBody(), "model").Str)
	require.Equal(t, gjson.Get(body, "prompt").Str, gjson.GetBytes(sb.GetBody(), "prompt").Str)
	require.Equal(t, len(sb.GetBody()), atoi(t, hs["content-length"]))

	require.Len(t, dec.asked, 1)
	require.Equal(t, "lora", dec.asked[0].Model)
	require.Equal(t, "p", dec.asked[0].Pool)
	require.Equal(t, pickapi.PrefixHashes(nil, "lora", []byte(`"tell me about the sea"`)), dec.asked[0].PrefixHashes)
	require.Equal(t, len(`"tell me about the sea"`), dec.asked[0].PromptBytes)
	require.Equal(t, 5, dec.asked[0].MaxTokens)
	require.Nil(t, dec.subsets[0], "no subset hint: the whole pool")

	require.NoError(t, st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{}}}))
	r, err := st.Recv()
	require.NoError(t, err)
	require.NotNil(t, r.GetResponseHeaders())
	for i, chunk := range []string{"data: a\n\n", "data: [DONE]\n\n"} {
		eos := i == 1
		require.NoError(t, st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: []byte(chunk), EndOfStream: eos}}}))
		r, err = st.Recv()
		require.NoError(t, err)
		echo := r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		require.Equal(t, chunk, string(echo.GetBody()))
		require.Equal(t, eos, echo.GetEndOfStream())
		if !eos {
			require.Empty(t, dec.ended())
		}
	}
	require.Equal(t, []uint64{42}, dec.ended(), "reported once the response ended")
	dec.mu.Lock()
	require.Equal(t, []int{-1}, dec.doneTokens, "the stream reported no usage")
	dec.mu.Unlock()
	require.NoError(t, st.CloseSend())
	_, err = st.Recv()
	require.Error(t, err, "the server closes the stream")
	require.Equal(t, []uint64{42}, dec.ended(), "and only once")
}

func atoi(t *testing.T, s string) int {
	n := 0
	for _, c := range s {
		require.True(t, c >= '0' && c <= '9', s)
		n = n*10 + int(c-'0')
	}
	return n
}

// Buffered, said by the data plane's protocol_config: headers answered at
// once, the body's answer carries the destination and the new body.
func TestBuffered(t *testing.T) {
	dec := &fakeDecider{next: picked}
	st := open(t, dec, Config{})
	pc := &extprocv3.ProtocolConfiguration{RequestBodyMode: procmode.ProcessingMode_BUFFERED, ResponseBodyMode: procmode.ProcessingMode_NONE}
	require.NoError(t, st.Send(requestHeaders(false, nil, pc)))
	r, err := st.Recv()
	require.NoError(t, err)
	require.Nil(t, r.GetRequestHeaders().GetResponse(), "headers go on unchanged")
	require.NoError(t, st.Send(requestBody(body, true)))
	r, err = st.Recv()
	require.NoError(t, err)
	common := r.GetRequestBody().GetResponse()
	require.Equal(t, "10.0.0.1:8000,10.0.0.2:8000", setHeaders(t, common.GetHeaderMutation())[pickapi.HeaderDestinationEndpoint])
	require.Equal(t, "10.0.0.1:8000,10.0.0.2:8000", destination(t, r))
	require.Equal(t, "lora-b", gjson.GetBytes(common.GetBodyMutation().GetBody(), "model").Str)

	// The stream closing is the request's end when no response phase is sent.
	require.NoError(t, st.CloseSend())
	_, err = st.Recv()
	require.Error(t, err)
	require.Eventually(t, func() bool { return len(dec.ended()) == 1 }, 5*time.Second, time.Millisecond)
}

// Refusals and bad input are immediate responses with an OpenAI-style body.
func TestImmediateResponses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		next   decision.Decision
		cfg    Config
		body   string
		status int
		want   string
	}{
		{"shed", decision.Decision{Status: 429, ErrType: pickapi.ErrTypeRateLimited, Message: "saturated"}, Config{}, body, 429, "saturated"},
		{"no endpoint", decision.Decision{Status: 503, ErrType: pickapi.ErrTypeUnavailable, Message: "none"}, Config{}, body, 503, "none"},
		{"unknown model", decision.Decision{Status: 404, ErrType: pickapi.ErrTypeNotFound, Message: `unknown model "lora"`}, Config{}, body, 404, "unknown model"},
		{"not JSON", picked, Config{}, `{"model":`, 400, "not valid JSON"},
		{"no model", picked, Config{}, `{"prompt":"x"}`, 400, `no string \"model\"`},
		{"too deep", picked, Config{MaxJSONDepth: 3}, `{"model":"m","prompt":[[[["x"]]]]}`, 400, "deeper"},
		{"too large", picked, Config{MaxBodyBytes: 16}, body, 413, "larger than 16 bytes"},
		{"model too long", picked, Config{}, `{"model":"` + strings.Repeat("m", pickapi.MaxNameLen+1) + `"}`, 400, "model name longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec := &fakeDecider{next: tc.next}
			st := open(t, dec, tc.cfg)
			require.NoError(t, st.Send(requestHeaders(false, nil, nil)))
			require.NoError(t, st.Send(requestBody(tc.body, true)))
			r, err := st.Recv()
			require.NoError(t, err)
			ir := r.GetImmediateResponse()
			require.NotNil(t, ir, "%v", r)
			require.Equal(t, tc.status, int(ir.GetStatus().GetCode()))
			require.Equal(t, float64(tc.status), gjson.GetBytes(ir.GetBody(), "error.code").Num)
			require.Contains(t, gjson.GetBytes(ir.GetBody(), "error.message").Str, strings.ReplaceAll(tc.want, `\"`, `"`))
			require.Equal(t, "application/json", setHeaders(t, ir.GetHeaders())["content-type"])
			require.NoError(t, st.CloseSend())
			_, _ = st.Recv() // the stream's end: the server has reported the exchange
			require.Empty(t, dec.ended(), "nothing was routed")
			u := dec.usageCalls()
			require.Len(t, u, 1, "a refused request is counted, with the refusal's status")
			require.Equal(t, tc.status, u[0].Status)
			require.Equal(t, llmapi.MissingNoBody, u[0].Outcome.Missing)
		})
	}
}

func subsetMD(t *testing.T, v any) *corev3.Metadata {
	s, err := structpb.NewStruct(map[string]any{SubsetKey: v})
	require.NoError(t, err)
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{SubsetNamespace: s}}
}

// The subset hint is passed on as a list (an empty one too: the picker
// then answers 503); a malformed one is refused.
func TestSubsetHint(t *testing.T) {
	for _, tc := range []struct {
		hint   any
		want   []string
		status int
	}{
		{[]any{"10.0.0.1:8000", "[fd00::1]:8000"}, []string{"10.0.0.1:8000", "[fd00::1]:8000"}, 0},
		{[]any{}, []string{}, 0},
		{"10.0.0.1:8000", nil, 400},
		{[]any{"evil.example:80"}, nil, 400},
	} {
		dec := &fakeDecider{next: picked}
		st := open(t, dec, Config{})
		require.NoError(t, st.Send(requestHeaders(true, subsetMD(t, tc.hint), nil)))
		r, err := st.Recv()
		require.NoError(t, err)
		if tc.status != 0 {
			require.Equal(t, tc.status, int(r.GetImmediateResponse().GetStatus().GetCode()), "%v", tc.hint)
			require.Empty(t, dec.asked)
			continue
		}
		require.Equal(t, [][]string{tc.want}, dec.subsets)
		require.Equal(t, "", dec.asked[0].Model, "no body: a pool-level pick")
		require.Equal(t, "10.0.0.1:8000,10.0.0.2:8000", destination(t, r))
		_, hasLength := setHeaders(t, r.GetRequestHeaders().GetResponse().GetHeaderMutation())["content-length"]
		require.False(t, hasLength, "no body, no length to set")
	}
}

// A client that goes away mid-request still ends the pick.
func TestCancelledStreamEndsThePick(t *testing.T) {
	dec := &fakeDecider{next: picked}
	st := open(t, dec, Config{})
	require.NoError(t, st.Send(requestHeaders(false, nil, nil)))
	require.NoError(t, st.Send(requestBody(body, true)))
	_, err := st.Recv()
	require.NoError(t, err)
	_, err = st.Recv()
	require.NoError(t, err)
	require.Empty(t, dec.ended())
	require.NoError(t, st.CloseSend())
	require.Eventually(t, func() bool { return len(dec.ended()) == 1 }, 5*time.Second, time.Millisecond)
}

// The objective comes from the first of the headers upstream reads.
func TestObjectiveHeader(t *testing.T) {
	for _, tc := range []struct {
		headers [][2]string
		want    string
	}{
		{nil, ""},
		{[][2]string{{"x-gateway-inference-objective", "batch"}}, "batch"},
		{[][2]string{{"x-gateway-inference-objective", "old"}, {"x-llm-d-router-inference-objective", "new"}}, "new"},
		{[][2]string{{"X-LLM-D-Inference-Objective", "mid"}, {"x-gateway-inference-objective", "old"}}, "mid"},
	} {
		dec := &fakeDecider{next: picked}
		st := open(t, dec, Config{})
		req := requestHeaders(true, nil, nil)
		for _, h := range tc.headers {
			hm := req.GetRequestHeaders().GetHeaders()
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
		}
		require.NoError(t, st.Send(req))
		_, err := st.Recv()
		require.NoError(t, err)
		require.Equal(t, tc.want, dec.asked[0].Objective, "%v", tc.headers)
	}
}

func responseHeaders(ctype string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte("200")}, {Key: "content-type", RawValue: []byte(ctype)}}}}}}
}

func responseBody(b string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: eos}}}
}

// Usage on the gateway path, as the filter reads it: from a JSON body; and
// from a stream the client asked without include_usage, which the picker
// asks for and then takes the usage-only chunk out of (the client sees the
// stream it asked for).
func TestUsage(t *testing.T) {
	t.Run("json", func(t *testing.T) {
		dec := &fakeDecider{next: picked}
		st := open(t, dec, Config{})
		require.NoError(t, st.Send(requestHeaders(false, nil, nil)))
		require.NoError(t, st.Send(requestBody(body, true)))
		for range 2 {
			_, err := st.Recv()
			require.NoError(t, err)
		}
		require.NoError(t, st.Send(responseHeaders("application/json")))
		r, err := st.Recv()
		require.NoError(t, err)
		require.Empty(t, r.GetResponseHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders())
		resp := `{"model":"lora-b","choices":[{"text":"x"}],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}`
		require.NoError(t, st.Send(responseBody(resp[:30], false)))
		_, err = st.Recv()
		require.NoError(t, err)
		require.NoError(t, st.Send(responseBody(resp[30:], true)))
		_, err = st.Recv()
		require.NoError(t, err)
		u := dec.usageCalls()
		require.Len(t, u, 1)
		require.Equal(t, "lora", u[0].Model)
		require.Equal(t, "lora-b", u[0].Target)
		require.Equal(t, 200, u[0].Status)
		require.False(t, u[0].FirstByte.IsZero(), "the response's first byte is timed")
		require.False(t, u[0].FirstByte.Before(u[0].Start))
		require.False(t, u[0].End.Before(u[0].FirstByte))
		require.Equal(t, llmapi.Usage{PromptTokens: 7, CompletionTokens: 5, HasPrompt: true, HasCompletion: true}, u[0].Outcome.Usage)
		dec.mu.Lock()
		require.Equal(t, []int{5}, dec.doneTokens, "the end carries the completion tokens")
		dec.mu.Unlock()
	})
	t.Run("stream without include_usage", func(t *testing.T) {
		dec := &fakeDecider{next: picked}
		st := open(t, dec, Config{})
		require.NoError(t, st.Send(requestHeaders(false, nil, nil)))
		require.NoError(t, st.Send(requestBody(`{"model":"lora","prompt":"hi","stream":true}`, true)))
		_, err := st.Recv()
		require.NoError(t, err)
		br, err := st.Recv()
		require.NoError(t, err)
		sent := br.GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()
		require.True(t, gjson.GetBytes(sent, "stream_options.include_usage").Bool(), string(sent))
		require.Equal(t, "lora-b", gjson.GetBytes(sent, "model").Str, "the rewrite follows the injection")

		require.NoError(t, st.Send(responseHeaders("text/event-stream")))
		r, err := st.Recv()
		require.NoError(t, err)
		require.Equal(t, []string{"content-length"}, r.GetResponseHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders())
		stream := `data: {"choices":[{"text":"a"}],"usage":null}` + "\n\n" +
			`data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}` + "\n\n" +
			"data: [DONE]\n\n"
		var echoed []byte
		for i, chunk := range []string{stream[:25], stream[25:70], stream[70:]} {
			require.NoError(t, st.Send(responseBody(chunk, i == 2)))
			r, err := st.Recv()
			require.NoError(t, err)
			echoed = append(echoed, r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()...)
		}
		require.NotContains(t, string(echoed), "prompt_tokens", "the usage-only chunk is gone")
		require.Contains(t, string(echoed), `"text":"a"`)
		require.Contains(t, string(echoed), "[DONE]")
		u := dec.usageCalls()
		require.Len(t, u, 1)
		require.Equal(t, int64(3), u[0].Outcome.Usage.PromptTokens)
		require.Equal(t, int64(1), u[0].Outcome.Usage.CompletionTokens)
	})
	t.Run("buffered: no injection", func(t *testing.T) {
		dec := &fakeDecider{next: picked}
		st := open(t, dec, Config{Mode: Buffered})
		require.NoError(t, st.Send(requestHeaders(false, nil, nil)))
		_, err := st.Recv()
		require.NoError(t, err)
		require.NoError(t, st.Send(requestBody(`{"model":"lora","prompt":"hi","stream":true}`, true)))
		r, err := st.Recv()
		require.NoError(t, err)
		require.False(t, gjson.GetBytes(r.GetRequestBody().GetResponse().GetBodyMutation().GetBody(), "stream_options").Exists(),
			"responses do not come back through the picker: it could not take the chunk out")
	})
	t.Run("no response", func(t *testing.T) {
		dec := &fakeDecider{next: picked}
		st := open(t, dec, Config{})
		require.NoError(t, st.Send(requestHeaders(false, nil, nil)))
		require.NoError(t, st.Send(requestBody(body, true)))
		for range 2 {
			_, err := st.Recv()
			require.NoError(t, err)
		}
		require.NoError(t, st.CloseSend())
		require.Eventually(t, func() bool { return len(dec.usageCalls()) == 1 }, 5*time.Second, time.Millisecond)
		require.Equal(t, llmapi.MissingNoBody, dec.usageCalls()[0].Outcome.Missing)
		require.Zero(t, dec.usageCalls()[0].Status, "no response: no status")
		require.True(t, dec.usageCalls()[0].FirstByte.IsZero())
	})
}

func TestChunks(t *testing.T) {
	require.Len(t, chunks(nil), 1)
	require.True(t, chunks(nil)[0].GetEndOfStream())
	big := make([]byte, 2*chunkBytes+1)
	cs := chunks(big)
	require.Len(t, cs, 3)
	require.False(t, cs[1].GetEndOfStream())
	require.True(t, cs[2].GetEndOfStream())
	require.Len(t, cs[2].GetBody(), 1)
	require.Len(t, chunks(big[:chunkBytes]), 1)
}

func TestParseBodyMode(t *testing.T) {
	for in, want := range map[string]BodyMode{"": FullDuplex, "full-duplex": FullDuplex, "buffered": Buffered} {
		got, err := ParseBodyMode(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err := ParseBodyMode("streamed")
	require.ErrorContains(t, err, `"streamed"`)
}

// A request carrying x-meshllm-explain asks for its pick's explanation: it
// is in the dynamic metadata for the access log, and in the response
// header only where the configuration says.
func TestExplainedPick(t *testing.T) {
	for _, header := range []bool{false, true} {
		explained := picked
		explained.Pick.Explain = "LATENCY 10.0.0.1:8000 ttft=120ms total=10.00"
		dec := &fakeDecider{next: explained}
		st := open(t, dec, Config{ExplainHeader: header})
		req := requestHeaders(false, nil, nil)
		hs := req.GetRequestHeaders().GetHeaders()
		hs.Headers = append(hs.Headers, &corev3.HeaderValue{Key: pickapi.HeaderExplain, RawValue: []byte("1")})
		require.NoError(t, st.Send(req))
		require.NoError(t, st.Send(requestBody(body, true)))
		hr, err := st.Recv()
		require.NoError(t, err)
		require.True(t, dec.asked[0].Explain)
		require.Equal(t, explained.Pick.Explain, hr.GetDynamicMetadata().GetFields()[ExplainNamespace].GetStructValue().GetFields()[ExplainKey].GetStringValue())
		_, err = st.Recv() // the body
		require.NoError(t, err)
		require.NoError(t, st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{}}}))
		r, err := st.Recv()
		require.NoError(t, err)
		got, ok := setHeaders(t, r.GetResponseHeaders().GetResponse().GetHeaderMutation())[pickapi.HeaderPickExplanation]
		require.Equal(t, header, ok)
		if header {
			require.Equal(t, explained.Pick.Explain, got)
		}
		require.NoError(t, st.CloseSend())
	}
	// Not asked: not explained.
	dec := &fakeDecider{next: picked}
	st := open(t, dec, Config{ExplainHeader: true})
	require.NoError(t, st.Send(requestHeaders(false, nil, nil)))
	require.NoError(t, st.Send(requestBody(body, true)))
	_, err := st.Recv()
	require.NoError(t, err)
	require.False(t, dec.asked[0].Explain)
}
