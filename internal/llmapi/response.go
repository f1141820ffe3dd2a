package llmapi

import (
	"bytes"
	"errors"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/internal/jsonscan"
)

// DefaultMaxDepth is the nesting limit readers use when given none.
const DefaultMaxDepth = jsonscan.DefaultMaxDepth

// Usage is what a response says it cost. "Not reported" is not zero: the Has
// flags tell whether each count was present at all.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	HasPrompt        bool
	HasCompletion    bool
}

// Reported reports whether any count was present.
func (u Usage) Reported() bool { return u.HasPrompt || u.HasCompletion }

// UsageOf reads a usage object: prompt_tokens / completion_tokens (chat,
// completions, embeddings) or input_tokens / output_tokens (Responses API).
// Negative or non-integer counts are treated as not reported.
func UsageOf(v gjson.Result) Usage {
	var u Usage
	if !v.IsObject() {
		return u
	}
	v.ForEach(func(k, n gjson.Result) bool {
		switch k.Str {
		case "prompt_tokens", "input_tokens":
			u.PromptTokens, u.HasPrompt = count(n)
		case "completion_tokens", "output_tokens":
			u.CompletionTokens, u.HasCompletion = count(n)
		}
		return true
	})
	return u
}

func count(n gjson.Result) (int64, bool) {
	if n.Type != gjson.Number || n.Num < 0 || n.Num > 1<<53 || n.Num != float64(int64(n.Num)) {
		return 0, false
	}
	return int64(n.Num), true
}

// Response is what the filter reads from a complete JSON response body.
type Response struct {
	Usage Usage
	// Model is the response's "model": the model or adapter that served it.
	Model string
	// ErrorType is set when the body is an error, in either vLLM format:
	// {"error":{"type":...}} (>= 0.10.1) or {"object":"error","type":...}.
	ErrorType string
	IsError   bool
}

// ParseResponse reads a complete JSON response body nested at most maxDepth
// deep. It fails with ErrTooDeep, ErrNotJSON or ErrNotObject.
func ParseResponse(body []byte, maxDepth int) (Response, error) {
	var r Response
	if _, err := readTop(body, maxDepth, &r); err != nil {
		return Response{}, err
	}
	r.Model = strings.Clone(r.Model)
	r.ErrorType = strings.Clone(r.ErrorType)
	return r, nil
}

// readTop checks b and reads the object it must be into r in the same pass
// (jsonscan.Members), with no recursion. It returns the first "choices"
// member's value. r's strings alias b.
func readTop(b []byte, maxDepth int, r *Response) (choices gjson.Result, err error) {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	var fields objectFields
	err = jsonscan.Members(b, maxDepth, func(key, value []byte) {
		k := unsafeString(key[1 : len(key)-1])
		if bytes.IndexByte(key, '\\') >= 0 {
			k = gjson.Parse(string(key)).Str // an escaped key, as gjson reads it
		}
		if k == "choices" && !choices.Exists() {
			choices = gjson.Parse(unsafeString(value))
		}
		fields.read(r, k, unsafeString(value), true)
	})
	switch {
	case errors.Is(err, jsonscan.ErrTooDeep):
		return gjson.Result{}, ErrTooDeep
	case err != nil:
		return gjson.Result{}, ErrNotJSON
	case b[firstNonSpace(b)] != '{': // valid JSON: not all space
		return gjson.Result{}, ErrNotObject
	}
	fields.finish(r)
	return choices, nil
}

// objectFields is what reading one object's members has seen so far.
type objectFields struct {
	kind    string // "object"
	errType string // "type"
}

// read takes one member of a response object or stream chunk, its value
// raw: only the members read are parsed. It descends into "response" (the
// Responses API's envelope) once, never further: no read recurses in
// proportion to the input.
func (f *objectFields) read(r *Response, key, raw string, envelope bool) {
	switch key {
	case "usage":
		if u := UsageOf(gjson.Parse(raw)); u.Reported() {
			r.Usage = u
		}
	case "model":
		if v := gjson.Parse(raw); v.Type == gjson.String {
			r.Model = v.Str
		}
	case "object":
		f.kind = gjson.Parse(raw).Str
	case "type":
		f.errType = gjson.Parse(raw).Str
	case "error":
		if v := gjson.Parse(raw); v.IsObject() {
			r.IsError = true
			r.ErrorType = v.Get("type").Str
			if r.ErrorType == "" {
				r.ErrorType = "error"
			}
		}
	case "response": // Responses API: usage and model sit in "response"
		if v := gjson.Parse(raw); envelope && v.IsObject() {
			var inner objectFields
			v.ForEach(func(k, v gjson.Result) bool {
				inner.read(r, k.Str, v.Raw, false)
				return true
			})
			inner.finish(r)
		}
	}
}

// finish applies what only the whole object says: {"object":"error"}.
func (f *objectFields) finish(r *Response) {
	if f.kind == "error" {
		r.IsError = true
		r.ErrorType = f.errType
		if r.ErrorType == "" {
			r.ErrorType = "error"
		}
	}
}

// StreamState accumulates what a stream's events say.
type StreamState struct {
	Response
	// Done is set once "data: [DONE]" arrived.
	Done bool
	// Events counts data events (chunks), [DONE] excluded.
	Events int
	// BadEvents counts data events that were not JSON objects.
	BadEvents int
	// DeepEvents counts data events nested deeper than MaxDepth (not read).
	DeepEvents int
	// MaxDepth bounds the nesting of an event that is read.
	MaxDepth int
}

var doneMarker = []byte("[DONE]")

// ObserveData takes the data of one SSE event and reports whether the event
// is a usage-only chunk (choices: [] and a usage object), the chunk vLLM adds
// for stream_options.include_usage.
func (s *StreamState) ObserveData(data []byte) (usageOnly bool) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return false
	}
	if bytes.Equal(data, doneMarker) {
		s.Done = true
		return false
	}
	var chunk Response
	choices, err := readTop(data, s.MaxDepth, &chunk)
	switch {
	case errors.Is(err, ErrTooDeep):
		s.DeepEvents++
		return false
	case err != nil:
		s.BadEvents++
		return false
	}
	s.Events++
	if chunk.Usage.Reported() {
		s.Usage = chunk.Usage // the last report is the total
	}
	if chunk.Model != "" && chunk.Model != s.Model {
		s.Model = strings.Clone(chunk.Model) // chunk.Model aliases the event
	}
	if chunk.IsError {
		s.IsError, s.ErrorType = true, strings.Clone(chunk.ErrorType)
	}
	if !chunk.Usage.Reported() {
		return false
	}
	return choices.IsArray() && len(choices.Raw) > 0 && isEmptyArray(choices.Raw)
}

func isEmptyArray(raw string) bool {
	for i := 1; i < len(raw)-1; i++ {
		if !isSpace(raw[i]) {
			return false
		}
	}
	return true
}
