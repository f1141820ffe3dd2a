package llmapi

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"

	"github.com/meshllm/meshllm/internal/sse"
)

// Where a request's usage came from, or why there is none. These are the
// values of the access-log field llm_usage_source and of the usage_missing
// metric's reason tag (a bounded set).
const (
	SourceJSON = "json"
	SourceSSE  = "sse"

	MissingNotReported = "not_reported" // the body carried no usage
	MissingEncoded     = "encoded"      // compressed in a way the filter does not read
	MissingOversize    = "oversize"     // larger than the configured caps
	MissingUnparsable  = "unparsable"   // not JSON / broken gzip
	MissingTooDeep     = "too_deep"     // JSON nested deeper than max_json_depth
	MissingNoBody      = "no_body"      // the stream ended before a body
)

// ObserverLimits bound what a ResponseObserver keeps.
type ObserverLimits struct {
	MaxBody    int  // copy of a JSON body kept to read usage (and gunzip output cap)
	MaxEvent   int  // largest SSE event observed
	DecodeGzip bool // read gzip-encoded JSON bodies
	MaxDepth   int  // JSON nesting read (jsonscan); deeper bodies and events are not read
}

// ResponseObserver watches a response body chunk by chunk without holding it
// back. For SSE it frames events and, when Strip is set, drops the usage-only
// chunk that the filter caused by injecting include_usage.
type ResponseObserver struct {
	limits   ObserverLimits
	sse      bool
	strip    bool
	encoding string // "", "gzip" or another content coding

	framer *sse.Framer
	stream StreamState

	body    []byte // JSON mode: the copy kept to parse at the end
	tooBig  bool
	sawBody bool
	out     []byte // reused output buffer when stripping
}

// NewResponseObserver prepares to observe a response with the given headers.
// strip asks for the usage-only SSE chunk to be removed; it is honoured only
// for an unencoded event stream (StripActive tells).
func NewResponseObserver(contentType, contentEncoding string, strip bool, l ObserverLimits) *ResponseObserver {
	o := &ResponseObserver{limits: l, sse: IsEventStream(contentType)}
	o.stream.MaxDepth = l.MaxDepth
	enc := strings.ToLower(strings.TrimSpace(contentEncoding))
	if enc != "" && enc != "identity" {
		o.encoding = enc
	}
	if o.sse && o.encoding == "" {
		o.framer = sse.New(l.MaxEvent)
		o.strip = strip
	}
	return o
}

// StripActive reports whether the observer rewrites the stream; the caller
// must then drop Content-Length from the response headers.
func (o *ResponseObserver) StripActive() bool { return o.strip }

// Chunk observes one chunk of the body. If replace is true the caller must
// forward out instead of chunk (out may be empty); out is valid until the
// next call.
func (o *ResponseObserver) Chunk(chunk []byte, end bool) (out []byte, replace bool) {
	if len(chunk) > 0 {
		o.sawBody = true
	}
	switch {
	case o.framer != nil:
		if !o.strip {
			o.framer.Observe(chunk, o.observeEvent)
			if end {
				o.framer.Flush(nil, false, o.observeEvent)
			}
			return nil, false
		}
		o.out = o.framer.Rewrite(o.out[:0], chunk, o.keepEvent)
		if end {
			o.out = o.framer.Flush(o.out, true, o.keepEvent)
		}
		if bytes.Equal(o.out, chunk) {
			return nil, false
		}
		return o.out, true
	case o.sse:
		return nil, false // encoded event stream: nothing readable
	default:
		if !o.tooBig {
			if len(o.body)+len(chunk) > o.limits.MaxBody {
				o.tooBig, o.body = true, nil
			} else {
				o.body = append(o.body, chunk...)
			}
		}
		return nil, false
	}
}

func (o *ResponseObserver) observeEvent(ev []byte) bool {
	o.stream.ObserveData(sse.Data(ev))
	return true
}

func (o *ResponseObserver) keepEvent(ev []byte) bool {
	return !o.stream.ObserveData(sse.Data(ev))
}

// Outcome is what a finished response said.
type Outcome struct {
	Response
	// Source is SourceJSON or SourceSSE when usage was read, else "".
	Source string
	// Missing says why there is no usage ("" when Source is set).
	Missing string
	// Stream facts, for SSE responses.
	Done       bool
	Events     int
	Oversized  int
	BadEvents  int
	DeepEvents int // events nested deeper than the limit, not read
	EventBytes int // bytes still unframed at the end (a truncated stream)
}

// Finish ends observation. Call it once, after the last chunk.
func (o *ResponseObserver) Finish() Outcome {
	var oc Outcome
	switch {
	case o.framer != nil:
		oc.Response = o.stream.Response
		oc.Done, oc.Events, oc.BadEvents, oc.DeepEvents = o.stream.Done, o.stream.Events, o.stream.BadEvents, o.stream.DeepEvents
		oc.Oversized, oc.EventBytes = o.framer.Oversized, o.framer.Pending()
		oc.Source = SourceSSE
	case o.sse:
		oc.Missing = MissingEncoded
	case o.tooBig:
		oc.Missing = MissingOversize
	case !o.sawBody:
		oc.Missing = MissingNoBody
	default:
		body := o.body
		if o.encoding == "gzip" && o.limits.DecodeGzip {
			var why string
			if body, why = gunzip(body, o.limits.MaxBody); why != "" {
				oc.Missing = why
				break
			}
		} else if o.encoding != "" {
			oc.Missing = MissingEncoded
			break
		}
		r, err := ParseResponse(body, o.limits.MaxDepth)
		if err != nil {
			oc.Missing = MissingUnparsable
			if errors.Is(err, ErrTooDeep) {
				oc.Missing = MissingTooDeep
			}
			break
		}
		oc.Response = r
		oc.Source = SourceJSON
	}
	if oc.Missing == "" && !oc.Usage.Reported() {
		oc.Source, oc.Missing = "", MissingNotReported
	}
	o.body, o.out = nil, nil
	return oc
}

// gunzip decodes b, refusing output larger than limit (a gzip bomb guard).
// It returns why it failed, or "".
func gunzip(b []byte, limit int) ([]byte, string) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, MissingUnparsable
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	switch {
	case len(out) > limit:
		return nil, MissingOversize
	case err != nil:
		return nil, MissingUnparsable
	}
	return out, ""
}
