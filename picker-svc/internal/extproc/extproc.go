// Package extproc serves picker-svc as an endpoint picker over Envoy's
// external processing gRPC API, following the Gateway API Inference
// Extension's endpoint-picker protocol (docs/proposals/004-endpoint-picker-protocol,
// v1.0.0): a gateway whose InferencePool names picker-svc sends each
// request's headers and body; the answer names the endpoint in the
// x-gateway-destination-endpoint header and in the envoy.lb dynamic
// metadata, primary first, then fallbacks, comma separated.
//
// One gRPC stream is one HTTP request. The body is read with the filter's
// own reader (internal/llmapi: as vLLM reads it), hashed as the filter hashes
// it, and placed by the same Decide as the HTTP pick API. The stream's end
// (the response's last byte, or the stream closing) is the request's end,
// reported to the scheduler at once.
package extproc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmode "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshllm/meshllm/internal/llmapi"
	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/decision"
)

// The endpoint-picker protocol's names.
const (
	// MetadataNamespace holds the chosen endpoints in the response's
	// dynamic metadata, and the served one in the data plane's.
	MetadataNamespace = "envoy.lb"
	// SubsetNamespace and SubsetKey: the data plane's hint of the
	// endpoints the pick must come from.
	SubsetNamespace = "envoy.lb.subset_hint"
	SubsetKey       = "x-gateway-destination-endpoint-subset"
	// ExplainNamespace and ExplainKey hold a pick's explanation in the
	// dynamic metadata, for access logs:
	// %DYNAMIC_METADATA(meshllm:pick_explain)%.
	ExplainNamespace = "meshllm"
	ExplainKey       = "pick_explain"
)

// chunkBytes bounds one streamed body mutation: some Envoy builds limit a
// streamed chunk to 64 KiB (the upstream picker uses 62,000 bytes too).
const chunkBytes = 62_000

// BodyMode is how the gateway sends the request body.
type BodyMode int

// Body modes the server supports.
const (
	// FullDuplex: FULL_DUPLEX_STREAMED, as the upstream picker's
	// deployments use. The headers wait for the server's answer, which
	// comes once the body has been read.
	FullDuplex BodyMode = iota
	// Buffered: BUFFERED. The headers are answered at once; the one body
	// message is answered with the destination and the rewritten body.
	Buffered
)

// ParseBodyMode reads a --ext-proc-body-mode value.
func ParseBodyMode(s string) (BodyMode, error) {
	switch s {
	case "", "full-duplex":
		return FullDuplex, nil
	case "buffered":
		return Buffered, nil
	}
	return 0, fmt.Errorf("ext_proc body mode %q: want full-duplex or buffered", s)
}

// Decider places requests (decision.Decider).
type Decider interface {
	Decide(req *pickapi.PickRequest, subset []string, start time.Time) decision.Decision
	// RequestEnded reports a routed request's end: its pick id and the
	// completion tokens it generated (-1: not known).
	RequestEnded(id uint64, completionTokens int)
	// RecordExchange counts a request at its end: tokens, status, timing.
	RecordExchange(e decision.Exchange)
}

// Config of the ext_proc server.
type Config struct {
	// Pool names the InferencePool the gateway routes to; empty resolves
	// the pool by the request's model.
	Pool string
	// Mode is the request body mode assumed when the gateway does not say
	// (Envoy sends protocol_config from v1.35; older ones do not).
	Mode BodyMode
	// MaxBodyBytes bounds a request body; a larger one is refused (413).
	MaxBodyBytes int
	// ExplainHeader puts a pick's explanation, for a request that asks
	// (pickapi.HeaderExplain), in the response header
	// pickapi.HeaderPickExplanation; it is in the dynamic metadata
	// (ExplainNamespace) either way.
	ExplainHeader bool
	// MaxJSONDepth bounds the body's nesting, as the filter's max_json_depth.
	MaxJSONDepth int
}

// DefaultMaxBodyBytes is Config.MaxBodyBytes's default: the filter's
// default body limit.
const DefaultMaxBodyBytes = 4 << 20

// Server implements extprocv3.ExternalProcessorServer.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	dec    Decider
	cfg    Config
	limits llmapi.ObserverLimits
	log    *slog.Logger
}

// New returns an ext_proc server placing requests with dec.
func New(dec Decider, cfg Config, log *slog.Logger) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxJSONDepth <= 0 {
		cfg.MaxJSONDepth = llmapi.DefaultMaxDepth
	}
	// The filter's defaults: a JSON response copy of 4 MiB, SSE events of
	// 1 MiB, gzip read.
	limits := llmapi.ObserverLimits{MaxBody: 4 << 20, MaxEvent: 1 << 20, DecodeGzip: true, MaxDepth: cfg.MaxJSONDepth}
	return &Server{dec: dec, cfg: cfg, limits: limits, log: log}
}

// exchange is one HTTP request's state on its stream.
type exchange struct {
	s          *Server
	srv        extprocv3.ExternalProcessor_ProcessServer
	reqMode    BodyMode
	respStream bool // response body mode FULL_DUPLEX_STREAMED: echo each chunk
	subset     []string
	objective  string // the first pickapi.ObjectiveHeaders header's value
	// explain: the request asked for its pick's explanation; explanation
	// is kept for the response header.
	explain     bool
	explanation string
	body        []byte
	routed      bool // the request's destination has been answered
	pickID      uint64
	ended       bool
	// What the exchange reports at its end: whether the request has a body
	// (an LLM call), the request's model and the picker's target, whether
	// the picker added include_usage to a stream (the usage-only chunk is
	// then taken out again), the response's status and observer, and when
	// the request began and the response's first body byte came.
	llm              bool
	model, target    string
	injected         bool
	status           int
	obs              *llmapi.ResponseObserver
	start, firstByte time.Time
}

// Process implements extprocv3.ExternalProcessorServer.
func (s *Server) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	x := &exchange{s: s, srv: srv, reqMode: s.cfg.Mode, respStream: s.cfg.Mode == FullDuplex}
	defer x.end()
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
		if err != nil {
			return err
		}
		if err := x.handle(req); err != nil {
			return err
		}
	}
}

// end reports the request's end, and what was seen of it, once.
func (x *exchange) end() {
	if x.ended {
		return
	}
	x.ended = true
	var e decision.Exchange
	if x.llm {
		e = decision.Exchange{Model: x.model, Target: x.target, Status: x.status, Start: x.start, FirstByte: x.firstByte, End: time.Now()}
		if x.obs != nil {
			e.Outcome = x.obs.Finish()
		} else {
			// Refused, or over before a response came (the client left, the
			// upstream failed): counted as the filter counts it.
			e.Outcome = llmapi.Outcome{Missing: llmapi.MissingNoBody}
		}
	}
	if x.pickID != 0 {
		completion := -1
		if u := e.Outcome.Usage; x.llm && u.HasCompletion {
			completion = int(min(u.CompletionTokens, pickapi.MaxOutputTokens))
		}
		x.s.dec.RequestEnded(x.pickID, completion)
	}
	if !x.llm {
		return // no body: not an LLM call, as the filter sees it
	}
	x.s.dec.RecordExchange(e)
}

// handle answers one ext_proc message: one method per message type, as
// the stream delivers them in order.
func (x *exchange) handle(req *extprocv3.ProcessingRequest) error {
	if pc := req.GetProtocolConfig(); pc != nil {
		x.protocolConfig(pc)
	}
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return x.requestHeaders(r.RequestHeaders, req.GetMetadataContext())
	case *extprocv3.ProcessingRequest_RequestBody:
		return x.requestBody(r.RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return x.requestTrailers()
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return x.responseHeaders(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return x.responseBody(r.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return x.responseTrailers()
	}
	return nil
}

// protocolConfig takes the body modes the gateway announces (Envoy >= 1.35).
func (x *exchange) protocolConfig(pc *extprocv3.ProtocolConfiguration) {
	switch pc.GetRequestBodyMode() {
	case procmode.ProcessingMode_FULL_DUPLEX_STREAMED:
		x.reqMode = FullDuplex
	case procmode.ProcessingMode_BUFFERED:
		x.reqMode = Buffered
	}
	x.respStream = pc.GetResponseBodyMode() == procmode.ProcessingMode_FULL_DUPLEX_STREAMED
}

func (x *exchange) requestHeaders(h *extprocv3.HttpHeaders, md *corev3.Metadata) error {
	x.start, x.llm = time.Now(), !h.GetEndOfStream()
	subset, err := subsetHint(md)
	if err != nil {
		return x.refuse(decision.Decision{Status: http.StatusBadRequest, ErrType: pickapi.ErrTypeBadRequest, Message: err.Error()})
	}
	x.subset = subset
	x.objective = objective(h.GetHeaders())
	if v := headerValue(h.GetHeaders(), pickapi.HeaderExplain); v != "" && v != "0" && v != "false" {
		x.explain = true
	}
	if len(x.objective) > pickapi.MaxNameLen {
		return x.refuse(decision.Decision{Status: http.StatusBadRequest, ErrType: pickapi.ErrTypeBadRequest,
			Message: "objective header longer than " + strconv.Itoa(pickapi.MaxNameLen) + " bytes"})
	}
	if h.GetEndOfStream() {
		// No body (a GET): a pool-level pick by load alone.
		return x.route(nil, &pickapi.PickRequest{Pool: x.s.cfg.Pool, Objective: x.objective, Explain: x.explain})
	}
	if x.reqMode == Buffered {
		return x.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{}}})
	}
	return nil // full duplex: the headers wait for the body
}

func (x *exchange) requestBody(b *extprocv3.HttpBody) error {
	if x.routed {
		return nil
	}
	if len(x.body)+len(b.GetBody()) > x.s.cfg.MaxBodyBytes {
		return x.refuse(decision.Decision{Status: http.StatusRequestEntityTooLarge, ErrType: pickapi.ErrTypeBadRequest,
			Message: "request body larger than " + strconv.Itoa(x.s.cfg.MaxBodyBytes) + " bytes"})
	}
	x.body = append(x.body, b.GetBody()...)
	if !b.GetEndOfStream() {
		return nil
	}
	return x.placeBody()
}

func (x *exchange) requestTrailers() error {
	if !x.routed {
		if err := x.placeBody(); err != nil || !x.routed {
			return err
		}
	}
	return x.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
		RequestTrailers: &extprocv3.TrailersResponse{}}})
}

func (x *exchange) responseHeaders(h *extprocv3.HttpHeaders) error {
	hr := &extprocv3.HeadersResponse{}
	x.status, _ = strconv.Atoi(headerValue(h.GetHeaders(), ":status"))
	if x.model != "" {
		hm := h.GetHeaders()
		x.obs = llmapi.NewResponseObserver(headerValue(hm, "content-type"), headerValue(hm, "content-encoding"),
			x.injected && x.respStream, x.s.limits)
		if x.obs.StripActive() {
			// The stream loses the chunk the client did not ask for.
			hr.Response = &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{"content-length"}}}
		}
	}
	if x.explanation != "" {
		if hr.Response == nil {
			hr.Response = &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{}}
		}
		hr.Response.HeaderMutation.SetHeaders = append(hr.Response.HeaderMutation.SetHeaders, header(pickapi.HeaderPickExplanation, x.explanation))
	}
	if h.GetEndOfStream() {
		x.end() // before the answer: counted by the time the client has it
	}
	return x.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: hr}})
}

func (x *exchange) responseBody(b *extprocv3.HttpBody) error {
	out := b.GetBody()
	if len(out) > 0 && x.firstByte.IsZero() {
		x.firstByte = time.Now()
	}
	if x.obs != nil {
		if nb, replace := x.obs.Chunk(out, b.GetEndOfStream()); replace {
			out = bytes.Clone(nb)
		}
	}
	resp := &extprocv3.BodyResponse{}
	if x.respStream {
		// In full duplex every chunk must be sent back to be forwarded.
		resp.Response = &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
			Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{
				Body: out, EndOfStream: b.GetEndOfStream()}}}}
	}
	if b.GetEndOfStream() {
		x.end() // before the last chunk goes on: counted by the time the client has it
	}
	return x.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: resp}})
}

func (x *exchange) responseTrailers() error {
	x.end()
	return x.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
		ResponseTrailers: &extprocv3.TrailersResponse{}}})
}

// placeBody reads the whole body and routes the request. A body vLLM
// would refuse (not JSON, no model) is refused here with 400: an endpoint
// picker must name an endpoint or answer, and vLLM's answer would be the
// same.
func (x *exchange) placeBody() error {
	r, err := llmapi.ParseRequest(x.body, x.s.cfg.MaxJSONDepth)
	if err != nil {
		return x.refuse(decision.Decision{Status: http.StatusBadRequest, ErrType: pickapi.ErrTypeBadRequest, Message: err.Error()})
	}
	if len(r.Model) > pickapi.MaxNameLen {
		return x.refuse(decision.Decision{Status: http.StatusBadRequest, ErrType: pickapi.ErrTypeBadRequest,
			Message: "model name longer than " + strconv.Itoa(pickapi.MaxNameLen) + " bytes"})
	}
	pr := &pickapi.PickRequest{Pool: x.s.cfg.Pool, Model: r.Model, Objective: x.objective,
		PrefixHashes: pickapi.PrefixHashes(nil, r.Model, r.Prompt), PromptBytes: len(r.Prompt), Body: x.body,
		MaxTokens: int(min(max(r.MaxTokens, 0), pickapi.MaxOutputTokens)), Explain: x.explain}
	if x.respStream && r.NeedsUsageInjection() {
		// As the filter does: a stream without include_usage reports no
		// tokens. Only where every response chunk comes back through here,
		// so that the usage-only chunk can be taken out again.
		if nb, ok := r.InjectIncludeUsage(x.body); ok {
			x.body, x.injected = nb, true
		}
	}
	return x.route(&r, pr)
}

// route places pr and answers the data plane: the destination, and for a
// request with a body the body (rewritten when the picker chose another
// target model).
func (x *exchange) route(r *llmapi.Request, pr *pickapi.PickRequest) error {
	if r != nil {
		x.model = r.Model // a refusal counts under it too
	}
	d := x.s.dec.Decide(pr, x.subset, time.Now())
	if d.Status != http.StatusOK {
		return x.refuse(d)
	}
	x.routed, x.pickID = true, d.Pick.PickID
	if r != nil {
		x.target = d.Pick.TargetModel
		if x.target == "" {
			x.target = r.Model
		}
	}
	dest := strings.Join(append([]string{d.Pick.Endpoint}, d.Pick.Fallbacks...), ",")
	set := []*corev3.HeaderValueOption{header(pickapi.HeaderDestinationEndpoint, dest)}
	body := x.body
	if r != nil && d.Pick.TargetModel != "" && d.Pick.TargetModel != r.Model {
		if nb, ok := r.RewriteModel(x.body, d.Pick.TargetModel); ok {
			body = nb
		}
	}
	if r != nil {
		set = append(set, header("content-length", strconv.Itoa(len(body))))
	}
	mutation := &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: set}, ClearRouteCache: true}
	meta := destinationMetadata(dest)
	if d.Pick.Explain != "" {
		meta.Fields[ExplainNamespace] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			ExplainKey: structpb.NewStringValue(d.Pick.Explain)}})
		if x.s.cfg.ExplainHeader {
			x.explanation = d.Pick.Explain
		}
	}
	if r == nil {
		return x.send(&extprocv3.ProcessingResponse{DynamicMetadata: meta,
			Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: mutation}}})
	}
	if x.reqMode == Buffered {
		mutation.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}}
		return x.send(&extprocv3.ProcessingResponse{DynamicMetadata: meta,
			Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: mutation}}})
	}
	if err := x.send(&extprocv3.ProcessingResponse{DynamicMetadata: meta,
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: mutation}}}); err != nil {
		return err
	}
	for _, chunk := range chunks(body) {
		if err := x.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
			Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
				StreamedResponse: chunk}}}}}}); err != nil {
			return err
		}
	}
	x.body = nil
	return nil
}

// refuse answers the client in the picker's name (the protocol's
// ImmediateResponse: 429 for shedding, 503 with no endpoint, 404 for an
// unknown model), with the same OpenAI-style body the HTTP pick API uses.
func (x *exchange) refuse(d decision.Decision) error {
	x.routed, x.status = true, d.Status
	return x.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
		Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{header("content-type", "application/json")}},
		Body:    pickapi.ErrorBody(d.Status, d.ErrType, d.Message),
		Details: "meshllm_picker_" + strconv.Itoa(d.Status),
	}}})
}

func (x *exchange) send(r *extprocv3.ProcessingResponse) error {
	if err := x.srv.Send(r); err != nil {
		return status.Errorf(codes.Unavailable, "sending to the data plane: %v", err)
	}
	return nil
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

// destinationMetadata is {"envoy.lb": {"x-gateway-destination-endpoint": dest}}.
func destinationMetadata(dest string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			pickapi.HeaderDestinationEndpoint: structpb.NewStringValue(dest)}}),
	}}
}

// headerValue is the first value of header name (lower case) in hm.
func headerValue(hm *corev3.HeaderMap, name string) string {
	for _, h := range hm.GetHeaders() {
		if strings.EqualFold(h.GetKey(), name) {
			if len(h.GetRawValue()) > 0 {
				return string(h.GetRawValue())
			}
			return h.GetValue()
		}
	}
	return ""
}

// objective is the value of the first of pickapi.ObjectiveHeaders the
// request carries ("" for none). As upstream, a client may name any
// objective of the pool: a gateway that does not trust its clients with
// priorities sets or strips these headers before ext_proc.
func objective(hm *corev3.HeaderMap) string {
	for _, name := range pickapi.ObjectiveHeaders {
		if v := headerValue(hm, name); v != "" {
			return v
		}
	}
	return ""
}

// subsetHint reads the data plane's subset hint: nil when absent, the
// listed endpoints (each a literal ip:port) when present, even if none.
func subsetHint(md *corev3.Metadata) ([]string, error) {
	ns := md.GetFilterMetadata()[SubsetNamespace]
	v, ok := ns.GetFields()[SubsetKey]
	if !ok {
		return nil, nil
	}
	list := v.GetListValue()
	if list == nil {
		return nil, fmt.Errorf("%s.%s must be a list of ip:port strings", SubsetNamespace, SubsetKey)
	}
	out := make([]string, 0, len(list.GetValues()))
	for _, e := range list.GetValues() {
		if err := pickapi.ValidateEndpoint(e.GetStringValue()); err != nil {
			return nil, fmt.Errorf("%s.%s: %w", SubsetNamespace, SubsetKey, err)
		}
		out = append(out, e.GetStringValue())
	}
	return out, nil
}

// chunks splits body into streamed responses of at most chunkBytes, the
// last one ending the stream (one empty one for an empty body).
func chunks(body []byte) []*extprocv3.StreamedBodyResponse {
	var out []*extprocv3.StreamedBodyResponse
	for {
		n := min(len(body), chunkBytes)
		out = append(out, &extprocv3.StreamedBodyResponse{Body: body[:n], EndOfStream: n == len(body)})
		if body = body[n:]; len(body) == 0 {
			return out
		}
	}
}
